"""The "trocr-onnx" engine: PP-OCR's line detector + a TrOCR recognizer on ONNX Runtime.

Loaded once per pinned worker: two sessions (encoder, decoder step), the tokenizer
(`tokenizers`, no transformers import) and the saved preprocessor config.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from models import cache
from models.base import Engine, TextLine
from models.cpu import int8_needs_reduce_range
from models.ppocr import resources
from models.ppocr.engine import load_detector, model_file
from models.trocr.files import KIND, onnx_files
from models.trocr.preprocess import Preprocessor
from models.trocr.runtime import Decoded, OnnxTrOCR, TokenIds, beam_search, greedy
from ocrq.config import EngineOptions, check_precision, check_small_caps
from ocrq.errors import ModelError

NAME = "trocr-onnx"


@dataclass(frozen=True)
class DecodeOptions:
    batch_size: int = 16
    max_new_tokens: int = 64
    num_beams: int = 1
    length_penalty: float = 1.0


class TrOCRRecognizer:
    """crops -> TextLine(text, confidence), `batch_size` crops per encoder call."""

    def __init__(
        self,
        model: OnnxTrOCR,
        preprocess: Preprocessor,
        tokenizer: Any,
        options: DecodeOptions,
    ):
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.options = options

    def decode_batch(self, pixel_values: np.ndarray) -> list[Decoded]:
        o = self.options
        if o.num_beams > 1:
            return beam_search(
                self.model, pixel_values, o.max_new_tokens, o.num_beams, o.length_penalty
            )
        return greedy(self.model, pixel_values, o.max_new_tokens)

    def text(self, tokens: list[int]) -> str:
        ids = [t for t in tokens if t != self.model.ids.eos]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def recognize(self, crops: Sequence[np.ndarray]) -> list[TextLine]:
        lines: list[TextLine] = []
        size = max(1, self.options.batch_size)
        for i in range(0, len(crops), size):
            decoded = self.decode_batch(self.preprocess(crops[i : i + size]))
            lines.extend(TextLine(self.text(d.tokens), d.confidence) for d in decoded)
        return lines


def load_tokenizer(model_dir: Path) -> Any:
    # `tokenizers` is an optional extra (ocrq[trocr]): imported when a model is loaded, so
    # this module imports (and reports a missing package) without it.
    from tokenizers import Tokenizer

    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ModelError(f"{model_dir} has no tokenizer.json (re-run `ocrq models export`)")
    return Tokenizer.from_file(str(path))


def load_recognizer(
    model: str | Path,
    models_dir: Path,
    precision: str = "fp32",
    threads: int = 1,
    options: DecodeOptions | None = None,
    check_files: bool = True,
) -> tuple[TrOCRRecognizer, dict[str, Any]]:
    """The recognizer and its provenance (model name, source, precision, file sha256s)."""
    model_dir = cache.resolve_model(str(model), models_dir)
    manifest = cache.read_manifest(model_dir)
    if manifest.get("kind") != KIND:
        raise ModelError(f"{model_dir.name} is not a TrOCR ONNX export")
    encoder, decoder = onnx_files(model_dir, precision)
    names = [encoder.name, decoder.name]
    if check_files:  # a corrupt or swapped file must not produce silently wrong text
        cache.verify_files(model_dir, names)
    onnx = OnnxTrOCR(encoder, decoder, TokenIds.from_dir(model_dir), threads)
    recognizer = TrOCRRecognizer(
        onnx,
        Preprocessor.from_file(model_dir / "preprocessor_config.json"),
        load_tokenizer(model_dir),
        options or DecodeOptions(),
    )
    quantization = manifest.get("quantization", {}).get("int8")
    if precision == "int8":
        _warn_if_saturating(model_dir.name, quantization or {})
    files = manifest.get("files", {})
    provenance = {
        "model": manifest.get("name", model_dir.name),
        "source": manifest.get("source"),
        "precision": precision,
        "quantization": quantization if precision == "int8" else None,
        "files": {n: files.get(n, {}).get("sha256") for n in names},
    }
    return recognizer, provenance


def _warn_if_saturating(name: str, quantization: dict[str, Any]) -> None:
    if not quantization.get("reduce_range") and int8_needs_reduce_range():
        logging.getLogger(__name__).warning(
            "%s: INT8 weights are 8-bit, and this CPU (x86 without VNNI) saturates them: "
            "expect lost accuracy; re-run `ocrq models quantize %s` here (7-bit weights)",
            name,
            name,
        )


def load(options: EngineOptions, models_dir: Path, threads: int = 1) -> Engine:
    check_precision(options.precision)
    check_small_caps(options, supported=False)
    if not options.model:
        raise ModelError("engine trocr-onnx needs a model: --model NAME (or OCRQ_MODEL)")
    decode = DecodeOptions(
        batch_size=options.batch_size,
        max_new_tokens=options.max_new_tokens,
        num_beams=options.num_beams,
    )
    # `auto` is FP32 here: TrOCR's INT8 is an export-time choice with its own parity report.
    precision = "fp32" if options.precision == "auto" else options.precision
    recognizer, rec_provenance = load_recognizer(
        options.model, models_dir, precision, threads, decode
    )
    # The detector stays FP32: it is small, and its INT8 variant is the ppocr engine's call.
    detector = load_detector(models_dir, threads, "fp32")
    provenance = {
        "engine": NAME,
        "recognizer": rec_provenance,
        "detector": {
            "engine": "ppocr",
            "precision": "fp32",
            "sha256": resources.sha256_file(model_file("det", "fp32", models_dir)),
        },
        "decode": {
            "max_new_tokens": decode.max_new_tokens,
            "num_beams": decode.num_beams,
            "batch_size": decode.batch_size,
        },
        "onnxruntime": ort.__version__,
        "denormal_weights": "flushed to zero at load",
    }
    return Engine(name=NAME, detector=detector, recognizer=recognizer, provenance=provenance)
