"""INT8 copies of the PP-OCR graphs, generated into the models cache on first use.

Each output has a manifest beside it (`<file>.json`: source name and sha256, output sha256,
method, settings), so a result's provenance names exactly what ran, and a changed source
(new rapidocr wheel) regenerates the file instead of silently running a stale one.

Method per graph (measured with scripts/eval_engine.py, see the engine's report):
- both graphs are mostly Conv. Dynamic quantization turns Conv into ConvInteger, which
  ORT runs slower than FP32 Conv on this CPU, so we use static QDQ quantization of Conv
  and MatMul (per-channel weights, activations calibrated with MinMax on rendered text),
  which ORT fuses into QLinearConv / integer MatMul.
- weights are 7-bit (`reduce_range`) on x86 CPUs without VNNI, whose INT8 kernels would
  saturate with 8-bit weights (`models/cpu.py`); the manifest records which, and a cache
  built on another kind of CPU is regenerated.
- the recognizer's depthwise convolutions stay FP32 (`fp32_depthwise`). Each has one
  3x3 filter per channel, so per-channel 8-bit weights and one activation scale per tensor
  fit it worst, and it is a small share of the multiply-adds. Measured on an AMD EPYC with
  VNNI, same detector boxes for both (receipts 3.54 -> 3.19 % CER against FP32's 3.15 %,
  book pages 1.22 -> 1.15 % against 1.13 %), and the recognizer ran faster, not slower:
  ORT's FP32 depthwise kernel beats its QLinearConv one. With 7-bit weights (CPUs without
  VNNI) receipts still read at 3.41 %.
- tried and not kept (Intel Xeon with AVX-512 VNNI and AMX, side by side on the eval
  sets): folding each convolution's bias `Add` into the Conv before quantizing (ORT fuses
  them in FP32 but not across Q/DQ) made the recognizer 1.13x faster but quantized each
  output over its per-channel bias offsets: CER tesseract_test 1.22 -> 1.47 %, receipts
  3.19 -> 3.44 %. Folding only the biases before a ReLU, so the stem runs in 8 bits
  end to end (AMD EPYC with VNNI): 1.03-1.06x, receipts 2.99 -> 3.13 %.
  Quantizing Add, Mul and Concat too was slower and less accurate. Keeping
  the stem and first stage FP32 read closer to FP32 but no faster, and its CER was higher
  on every page set (tesseract_test 1.21 -> 1.26 %, books 1.12 -> 1.16 %, receipts 3.26
  -> 3.39 %).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import onnx
from onnx import helper, numpy_helper, version_converter

from models.cpu import int8_needs_reduce_range
from models.ppocr import calibration, resources
from models.ppocr.head import classifier
from models.ppocr.recognizer import HEIGHT_METADATA
from ocrq.errors import ModelError

log = logging.getLogger(__name__)

QUANT_VERSION = 2  # bump when the recipe changes: regenerates cached files

RECIPES: dict[str, dict] = {
    # The detector's depthwise convolutions were measured both ways (its INT8 is opt-in):
    # FP32 ones took book pages from 1.52 to 1.17 % CER but tesseract_test from 1.28 to
    # 1.80 %, so this recipe stays as it was.
    "det": {"method": "static-qdq", "ops": ["Conv"], "per_channel": True, "calib": 12},
    # The classifier head stays FP32, so the engine can still narrow it to the decoded
    # characters at load (models/ppocr/head.py); quantized, it would run all 18,710.
    "rec": {
        "method": "static-qdq",
        "ops": ["Conv", "MatMul"],
        "per_channel": True,
        "calib": 16,
        "fp32_head": True,
        "fp32_depthwise": True,
    },
    "cls": {"method": "static-qdq", "ops": ["Conv"], "per_channel": True, "calib": 8},
}


def int8_dir(models_dir: Path) -> Path:
    return Path(models_dir) / "ppocr-int8"


def _calibration(kind: str, count: int, height: int = 48):
    # onnxruntime.quantization takes ~0.5 s to import and is needed only when an INT8
    # file is built (once per models folder), not at every engine load.
    from onnxruntime.quantization import CalibrationDataReader

    if kind == "det":
        source = calibration.detector_inputs(count)
    else:
        source = calibration.recognizer_inputs(count, height=height)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(source)

        def get_next(self):
            tensor = next(self.it, None)
            return None if tensor is None else {"x": tensor}

    return Reader()


def constants_to_initializers(model) -> None:
    """Move Constant nodes' tensors into initializers (the classifier stores its weights as
    Constant nodes, which the quantizer would treat as activations, not weights)."""
    keep = []
    for node in model.graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and value is not None and len(node.attribute) == 1:
            tensor = numpy_helper.from_array(
                numpy_helper.to_array(helper.get_attribute_value(value)), node.output[0]
            )
            model.graph.initializer.append(tensor)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def quantize_file(kind: str, source: Path, output: Path, recipe: dict) -> None:
    # Per-channel QDQ needs DequantizeLinear's `axis` (opset 13); the wheel's graphs are
    # opset 11, so convert first (a pure version bump for the ops these graphs use).
    model = onnx.load(str(source))
    constants_to_initializers(model)
    if max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < 13:
        model = version_converter.convert_version(model, 13)
    exclude = [_head_name(model, source)] if recipe.get("fp32_head") else []
    if recipe.get("fp32_depthwise"):
        exclude += depthwise_convs(model)
    staged = output.with_name(output.stem + ".opset13.onnx")
    onnx.save(model, str(staged))
    # A recognizer fine-tuned at another height is calibrated at that height.
    meta = {p.key: p.value for p in model.metadata_props}
    height = int(meta.get(HEIGHT_METADATA, 48))
    try:
        _quantize(kind, staged, output, recipe, exclude, height)
    finally:
        staged.unlink(missing_ok=True)


def depthwise_convs(model) -> list[str]:
    """Names of the Conv nodes with one filter per input channel (group == channels > 1)."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    names = []
    for node in model.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        weight = shapes.get(node.input[1]) if node.op_type == "Conv" else None
        if weight is not None and group > 1 and len(weight) == 4 and weight[1] == 1:
            names.append(node.name)
    return names


def _head_name(model, source: Path) -> str:
    """The classifier MatMul the recipe keeps in FP32 (so it can be narrowed at load)."""
    head = classifier(model)
    if head is None:
        raise ModelError(f"{source.name}: no MatMul + Add + Softmax head to keep in FP32")
    return head.matmul.name


def _quantize(
    kind: str,
    source: Path,
    output: Path,
    recipe: dict,
    exclude: list[str] | None = None,
    height: int = 48,
) -> None:
    # Imported here for start-up time, as in `_calibration`.
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    if recipe["method"] == "dynamic":
        quantize_dynamic(
            str(source),
            str(output),
            weight_type=QuantType.QInt8,
            per_channel=recipe["per_channel"],
            reduce_range=recipe.get("reduce_range", False),
            op_types_to_quantize=recipe["ops"],
        )
        return
    quantize_static(
        str(source),
        str(output),
        _calibration(kind, recipe["calib"], height),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=recipe["ops"],
        per_channel=recipe["per_channel"],
        reduce_range=recipe.get("reduce_range", False),
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=exclude or [],
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )


def ensure_int8(kind: str, source: Path, models_dir: Path, recipe: dict | None = None) -> Path:
    """Path of the INT8 graph for `source`, generating it (and its manifest) if missing or
    stale. Safe when several workers start at once: each writes a temp file and renames."""
    recipe = recipe or RECIPES[kind]
    if "reduce_range" not in recipe:  # by this CPU; a cache built elsewhere is rebuilt
        recipe = {**recipe, "reduce_range": int8_needs_reduce_range()}
    out_dir = int8_dir(models_dir)
    source_sha = resources.sha256_file(source)
    # The source's hash in the name: two custom graphs both called rec.onnx (say, from two
    # folders) would otherwise take turns rebuilding one cache file at every worker start.
    output = out_dir / f"{source.stem}-{source_sha[:12]}.int8.onnx"
    wanted = {
        "source": source.name,
        "source_sha256": source_sha,
        "version": QUANT_VERSION,
        **recipe,
    }
    if _is_current(output, wanted):
        return output
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = open(output.with_suffix(".lock"), "w")  # noqa: SIM115 - held until return
    except OSError as exc:
        raise ModelError(f"cannot write INT8 model into {out_dir}: {exc}") from exc
    with lock:
        # One process quantizes; the others wait here and then find a current file.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_current(output, wanted):
            return output
        # Once per models folder and kind of CPU; a worker's first start waits for it.
        log.warning("building the INT8 %s graph for this CPU in %s (once, ~1 min)", kind, out_dir)
        started = time.perf_counter()
        _generate(kind, source, output, wanted, recipe)
        log.warning("INT8 %s graph ready in %.0f s", kind, time.perf_counter() - started)
    return output


def manifest_path(output: Path) -> Path:
    return output.with_suffix(".json")


def read_manifest(output: Path) -> dict | None:
    """The manifest written beside an INT8 file (`<file>.json`), or None if unreadable."""
    try:
        return json.loads(manifest_path(output).read_text())
    except (OSError, ValueError):
        return None


def _is_current(output: Path, wanted: dict) -> bool:
    manifest = read_manifest(output) if output.is_file() else None
    if manifest is None:
        return False
    return all(manifest.get(k) == v for k, v in wanted.items()) and manifest.get(
        "output_sha256"
    ) == resources.sha256_file(output)


def _generate(kind: str, source: Path, output: Path, wanted: dict, recipe: dict) -> None:
    out_dir = output.parent
    try:
        fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=out_dir)
        os.close(fd)
        quantize_file(kind, source, Path(tmp_name), recipe)
        os.replace(tmp_name, output)
    except OSError as exc:
        raise ModelError(f"cannot write INT8 model into {out_dir}: {exc}") from exc
    finally:
        if "tmp_name" in locals() and os.path.exists(tmp_name):
            os.unlink(tmp_name)
    manifest = {**wanted, "output": output.name, "output_sha256": resources.sha256_file(output)}
    final = manifest_path(output)
    tmp_manifest = final.with_suffix(f".{os.getpid()}.tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp_manifest, final)
