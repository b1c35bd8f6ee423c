"""What `ocrq models export|quantize|verify` do, as plain functions (the CLI is a thin shell).

torch and transformers are imported by the functions of export/hf/reference that need
them (models/tooling/trocr/hf.py says why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models import cache
from models.mlx import files as mlx_files
from models.tooling.mlx.verify import verify_mlx
from models.tooling.parity import CHECK_TOKENS, ParityError, compare, summary, trim
from models.tooling.trocr.export import OPSET, copy_side_files, export_onnx
from models.tooling.trocr.hf import load_pretrained
from models.tooling.trocr.images import load_images, sample_lines
from models.tooling.trocr.quantize import quantize_model
from models.tooling.trocr.reference import torch_reference
from models.tooling.trocr.verify import THRESHOLDS, verify_onnx
from models.trocr.files import KIND, onnx_files
from models.trocr.preprocess import Preprocessor
from models.trocr.runtime import OnnxTrOCR, TokenIds, greedy
from ocrq.errors import ModelError

# The backend `verify` checks when none is given, by the model's manifest "kind".
BACKEND_OF_KIND = {KIND: "onnx", mlx_files.KIND: "mlx"}


def export_model(
    source: str,
    models_dir: Path,
    name: str | None = None,
    check: bool = True,
) -> Path:
    """Export SOURCE (hub id or directory) into `models_dir/name`; returns the directory.

    Written into a temporary sibling and renamed at the end, so a failed export never
    leaves a half model under the real name. With `check`, FP32 parity against PyTorch on
    rendered sample lines is measured, recorded in the manifest, and must pass.
    """
    model, tokenizer = load_pretrained(source)
    name = name or cache.default_name(source)
    final = cache.model_path(name, models_dir)
    with cache.staged(final) as tmp:
        graphs = export_onnx(model, tmp, OPSET)
        source_dir = Path(source) if Path(source).is_dir() else None
        side = copy_side_files(source_dir, tokenizer, model, tmp)
        src = str(Path(source).resolve()) if source_dir else source
        cache.write_manifest(tmp, cache.new_manifest(name, src, KIND, opset=OPSET))
        cache.add_files(tmp, [*graphs, *side])
        if check:
            pixel_values = Preprocessor.from_file(tmp / "preprocessor_config.json")(sample_lines(4))
            reference = torch_reference(source, pixel_values, CHECK_TOKENS, model=model)
            report = verify_onnx(tmp, pixel_values, reference, "fp32")
            cache.update_manifest(tmp, parity={"fp32": summary(report, "sample lines")})
            if not report["passed"]:
                raise ParityError(f"export of {source}: FP32 parity failed: {report['failures']}")
    return final


def quantize(
    model: str,
    models_dir: Path,
    mode: str,
    calibration: Path | None = None,
    reduce_range: bool | None = None,
) -> dict[str, Any]:
    """INT8 graphs for a cached model; records them and INT8-vs-FP32 agreement.
    `reduce_range` None: 7-bit weights if this CPU needs them (`models/cpu.py`)."""
    model_dir = cache.resolve_model(model, models_dir)
    crops = load_images(calibration) if calibration else None
    info = quantize_model(model_dir, mode, crops, reduce_range=reduce_range)
    if calibration:
        info["calibration"] = str(Path(calibration).resolve())
    cache.update_manifest(model_dir, quantization={"int8": info})
    cache.add_files(model_dir, info["files"])
    agreement = int8_vs_fp32(model_dir, crops[:16] if crops else sample_lines(8))
    cache.update_manifest(model_dir, parity={"int8_vs_fp32": agreement})
    return {"int8": info, "int8_vs_fp32": agreement}


def int8_vs_fp32(model_dir: Path, crops: list[np.ndarray]) -> dict[str, Any]:
    """What INT8 costs, measured against our own FP32 graphs (no PyTorch needed)."""
    ids = TokenIds.from_dir(model_dir)
    pixel_values = Preprocessor.from_file(model_dir / "preprocessor_config.json")(crops)
    fp32 = OnnxTrOCR(*onnx_files(model_dir, "fp32"), ids, threads=2)
    int8 = OnnxTrOCR(*onnx_files(model_dir, "int8"), ids, threads=2)
    ref_tokens = [trim(d.tokens, ids.eos, ids.pad) for d in greedy(fp32, pixel_values, 20)]
    prefix = np.full((len(crops), CHECK_TOKENS), ids.pad, np.int64)
    prefix[:, 0] = ids.start
    for row, tokens in zip(prefix, ref_tokens, strict=True):
        row[1 : 1 + min(len(tokens), CHECK_TOKENS - 1)] = tokens[: CHECK_TOKENS - 1]
    reference = {
        "logits": fp32.teacher_forced_logits(pixel_values, prefix),
        "greedy_tokens": ref_tokens,
    }
    ours = [trim(d.tokens, ids.eos, ids.pad) for d in greedy(int8, pixel_values, CHECK_TOKENS)]
    report = compare(
        int8.teacher_forced_logits(pixel_values, prefix), ours, reference, THRESHOLDS["int8"]
    )
    return summary(report, f"{len(crops)} crops")


def mlx_dir(model_dir: Path, models_dir: Path) -> Path | None:
    """The MLX conversion that belongs with a model: itself, or `<name>-mlx` beside it."""
    manifest = cache.read_manifest(model_dir)
    if manifest.get("kind") == mlx_files.KIND:
        return model_dir
    candidate = Path(models_dir) / f"{model_dir.name}{mlx_files.MLX_SUFFIX}"
    return candidate if (candidate / cache.MANIFEST).is_file() else None


def verify_model(
    model: str,
    models_dir: Path,
    images: Path | None = None,
    backend: str | None = None,
    source: str | None = None,
    max_new_tokens: int = CHECK_TOKENS,
    limit: int = 16,
) -> dict[str, dict[str, Any]]:
    """PyTorch vs each backend on the same inputs; results go into the manifest(s).

    `backend` is onnx, mlx or all; None: the one the model's manifest says it is made for
    (an ONNX export or an MLX conversion). Returns {"onnx-fp32": report, "onnx-int8":
    report, "mlx": report}, whichever ran.
    """
    model_dir = cache.resolve_model(model, models_dir)
    manifest = cache.read_manifest(model_dir)
    backend = backend or backend_of(model_dir.name, manifest)
    onnx_dir, mlx_target = _targets(model_dir, models_dir, manifest, backend)
    source = source or manifest.get("source")
    if not source:
        raise ModelError(f"{model_dir.name}: manifest has no source; pass --source")
    crops = load_images(images, limit) if images else sample_lines(min(limit, 8))
    on = f"{len(crops)} crops from {images}" if images else f"{len(crops)} sample lines"
    pixel_values = Preprocessor.from_file(model_dir / "preprocessor_config.json")(crops)
    reference = torch_reference(source, pixel_values, max_new_tokens)
    reports: dict[str, dict[str, Any]] = {}
    if onnx_dir is not None:
        reports.update(_verify_onnx_graphs(onnx_dir, manifest, pixel_values, reference, on))
    if mlx_target is not None:
        reports["mlx"] = verify_mlx(mlx_target, pixel_values, reference)
        cache.update_manifest(mlx_target, parity={"mlx": summary(reports["mlx"], on)})
    return reports


def _targets(
    model_dir: Path, models_dir: Path, manifest: dict[str, Any], backend: str
) -> tuple[Path | None, Path | None]:
    """(ONNX export, MLX conversion) that `backend` checks for this model, either None
    when there is none; a backend asked for by name must have its model."""
    is_onnx = manifest.get("kind") == KIND
    if backend == "onnx" and not is_onnx:
        raise ModelError(f"{model_dir.name} is not an ONNX export (kind {manifest.get('kind')})")
    mlx_target = mlx_dir(model_dir, models_dir) if backend in ("mlx", "all") else None
    if backend == "mlx" and mlx_target is None:
        raise ModelError(f"no MLX conversion of {model_dir.name}: run `ocrq models convert-mlx`")
    return (model_dir if is_onnx and backend in ("onnx", "all") else None), mlx_target


def backend_of(name: str, manifest: dict[str, Any]) -> str:
    """The backend a cached model is made for, from its manifest's "kind"."""
    backend = BACKEND_OF_KIND.get(manifest.get("kind", ""))
    if backend is None:
        raise ModelError(f"{name}: unknown model kind {manifest.get('kind')!r}; pass --backend")
    return backend


def _verify_onnx_graphs(
    model_dir: Path,
    manifest: dict[str, Any],
    pixel_values: np.ndarray,
    reference: dict[str, Any],
    on: str,
) -> dict[str, dict[str, Any]]:
    """FP32 and (when quantized) INT8 graphs against `reference`, recorded in the
    manifest."""
    precisions = ["fp32"] + (["int8"] if "int8" in manifest.get("quantization", {}) else [])
    reports = {f"onnx-{p}": verify_onnx(model_dir, pixel_values, reference, p) for p in precisions}
    cache.update_manifest(
        model_dir, parity={p: summary(reports[f"onnx-{p}"], on) for p in precisions}
    )
    return reports
