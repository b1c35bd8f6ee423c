"""INT8 versions of the exported graphs.

- dynamic: weights INT8 per output channel, activations quantized on the fly per call
  (`quantize_dynamic`, QInt8, MatMul only). Fastest here: DESIGN.md measured 13.8 / 3.9
  lines/s (small / base) against 7.9 / 1.7 in FP32, and it needs no calibration data.
- static: QDQ with activation ranges calibrated (MinMax) on real crops: the encoder sees
  the crops, the decoder sees the step inputs that FP32 greedy decoding of those crops
  produces. Limited to MatMul: QDQ over every op wrecked the base model (logit cosine
  0.967) while MatMul-only kept accuracy (DESIGN.md).
Per-channel weight scales: the projection matrices' rows differ in range by an order of
magnitude, and one scale per tensor costs measurable logit cosine.
7-bit weights (`reduce_range`) on x86 without VNNI, where 8-bit ones saturate ORT's
INT8 kernels (`models/cpu.py`); the manifest records which.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from models.cpu import int8_needs_reduce_range
from models.trocr.files import DECODER, ENCODER
from models.trocr.preprocess import Preprocessor
from models.trocr.runtime import OnnxTrOCR, TokenIds
from ocrq.errors import ModelError, UsageError

MODES = ("dynamic", "static")
ENCODER_INT8 = "encoder.int8.onnx"
DECODER_INT8 = "decoder.int8.onnx"
OP_TYPES = ["MatMul"]
# The fused MultiHeadAttention nodes (com.microsoft) defeat ONNX shape inference, so the
# quantizer cannot type the MatMuls after them without being told they are FLOAT.
EXTRA_OPTIONS = {"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT}


def decoder_feeds(
    model: OnnxTrOCR, pixel_values: np.ndarray, steps: int
) -> Iterator[dict[str, np.ndarray]]:
    """Decoder inputs of `steps` greedy steps (EOS not honoured: later positions count too)."""
    cross = model.encode(pixel_values)
    past = model.empty_past(len(pixel_values))
    ids = np.full((len(pixel_values), 1), model.ids.start, np.int64)
    for _ in range(steps):
        feed = {"input_ids": ids}
        feed.update(zip(model.past_names, past, strict=True))
        feed.update(zip(model.cross_names, cross, strict=True))
        yield feed
        logits, past = model.step(ids, past, cross)
        ids = logits[:, -1].argmax(-1)[:, None].astype(np.int64)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizer logs a pre-processing hint on the root logger every call;
    our graphs come straight from the exporter with shapes, so the hint is noise."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class _Feeds:
    """onnxruntime CalibrationDataReader over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # not used by MinMax; present for the interface
        pass


def _static(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], reduce_range: bool) -> None:
    reader = type("Reader", (_Feeds, CalibrationDataReader), {})(feeds)
    with _quiet():
        quantize_static(
            str(src),
            str(dst),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=OP_TYPES,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options=EXTRA_OPTIONS,
        )


def quantize_model(
    model_dir: Path,
    mode: str = "dynamic",
    calibration: list[np.ndarray] | None = None,
    calibration_steps: int = 16,
    batch: int = 8,
    reduce_range: bool | None = None,
) -> dict[str, Any]:
    """Write encoder.int8.onnx and decoder.int8.onnx; returns the manifest's int8 entry.

    `reduce_range` (7-bit weights) defaults to what this CPU needs (`models/cpu.py`):
    on x86 without VNNI, 8-bit weights saturate ORT's INT8 kernels."""

    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    enc, dec = model_dir / ENCODER, model_dir / DECODER
    for path in (enc, dec):
        if not path.is_file():
            raise ModelError(f"{path} missing: run `ocrq models export` first")
    if reduce_range is None:
        reduce_range = int8_needs_reduce_range()
    info: dict[str, Any] = {
        "mode": mode,
        "per_channel": True,
        "weight_type": "QInt8",
        "reduce_range": reduce_range,
        "op_types": OP_TYPES,
        "files": [ENCODER_INT8, DECODER_INT8],
    }
    if mode == "dynamic":
        with _quiet():
            for src, dst in ((enc, ENCODER_INT8), (dec, DECODER_INT8)):
                quantize_dynamic(
                    str(src),
                    str(model_dir / dst),
                    op_types_to_quantize=OP_TYPES,
                    per_channel=True,
                    reduce_range=reduce_range,
                    weight_type=QuantType.QInt8,
                    extra_options=EXTRA_OPTIONS,
                )
        return info
    if not calibration:
        raise UsageError("static quantization needs calibration crops (--calibration DIR)")
    prep = Preprocessor.from_file(model_dir / "preprocessor_config.json")
    fp32 = OnnxTrOCR(enc, dec, TokenIds.from_dir(model_dir), threads=2)
    enc_feeds, dec_feeds = [], []
    for i in range(0, len(calibration), batch):
        pixel_values = prep(calibration[i : i + batch])
        enc_feeds.append({"pixel_values": pixel_values})
        dec_feeds.extend(decoder_feeds(fp32, pixel_values, calibration_steps))
    _static(enc, model_dir / ENCODER_INT8, enc_feeds, reduce_range)
    _static(dec, model_dir / DECODER_INT8, dec_feeds, reduce_range)
    info.update(activation_type="QUInt8", format="QDQ", calibration_crops=len(calibration))
    return info
