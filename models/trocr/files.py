"""The files of an exported TrOCR model that the engine runs, named here so the runtime
needs nothing from the export tooling (models/tooling/trocr writes them)."""

from __future__ import annotations

from pathlib import Path

from models.cache import read_manifest
from ocrq.errors import ModelError

KIND = "trocr"  # manifest "kind" of an exported ONNX TrOCR
ENCODER = "encoder.onnx"
DECODER = "decoder.onnx"


def onnx_files(model_dir: Path, precision: str) -> tuple[Path, Path]:
    """(encoder, decoder) graphs of `precision`: the exported FP32 pair, or the INT8 pair
    the manifest records (`ocrq models quantize`)."""
    if precision == "fp32":
        return model_dir / ENCODER, model_dir / DECODER
    if precision != "int8":
        raise ModelError(f"precision must be fp32 or int8, not {precision!r}")
    files = read_manifest(model_dir).get("quantization", {}).get("int8", {}).get("files")
    if not files:
        raise ModelError(f"{model_dir.name} has no INT8 graphs: run `ocrq models quantize` first")
    return model_dir / files[0], model_dir / files[1]
