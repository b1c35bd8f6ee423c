"""The default offline engine: PP-OCRv6 small detector + recognizer from the rapidocr
wheel, run by our own pre/post-processing (models.ppocr.det_pre / .det_post / .scales /
.recognizer)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import onnxruntime as ort

from models.base import Engine
from models.cpu import int8_preferred
from models.onnx_session import GraphEdit, open_session
from models.orientation import AngleClassifier
from models.ppocr import resources
from models.ppocr.classifier import AngleCorrectingRecognizer
from models.ppocr.det_pre import DetectorConfig
from models.ppocr.detector import DetPredictor
from models.ppocr.head import narrow_classifier
from models.ppocr.pools import expose_pools
from models.ppocr.quantize import ensure_int8, read_manifest
from models.ppocr.recognizer import (
    PPOCRRecognizer,
    RecognizerConfig,
    allowed_classes,
    charset_from_metadata,
    config_from_metadata,
    free_input_height,
)
from models.ppocr.scales import TwoPassDetector
from ocrq.config import EngineOptions, check_precision, check_small_caps
from ocrq.errors import ModelError

NAME = "ppocr"
PRECISIONS = ("fp32", "int8")


# EngineOptions.small_caps -> RecognizerConfig.small_caps
RECOGNIZER_SMALL_CAPS = {"keep": "capitals", "lower": "lower"}


@dataclass(frozen=True)
class PPOCRConfig:
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    use_angle_cls: bool = False  # 0/180 classifier before recognition
    # precision "int8" quantizes the recognizer; the detector stays FP32 unless this is set:
    # static INT8 of the detector made each eval set only 1.11-1.16x faster (VNNI CPU; no
    # faster without VNNI) and cost box accuracy (tesseract_test 1.26 -> 1.80 % CER).
    int8_detector: bool = False
    # Zero the wheel detector's 256k denormal weights at load (`models/denormals.py`):
    # identical output, 2.3x faster detection. Off only to measure what it buys.
    flush_denormals: bool = True


def resolve_precision(precision: str) -> str:
    """`auto` -> int8 where this CPU runs 8-bit INT8 weights (there it ties FP32's accuracy
    and is faster, `models/cpu.py`), fp32 elsewhere; fp32 and int8 stay as asked."""
    if precision != "auto":
        return precision
    return "int8" if int8_preferred() else "fp32"


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ModelError(
            f"ppocr precision must be one of {', '.join(PRECISIONS)}, not {precision!r}"
        )


# `--model NAME`: the wheel's recognizer read another way. "fast" reads it at 32 rows
# instead of 48 (0.63x the multiply-adds of a line), its crops scaled to 1.2x the width
# that keeps their aspect so that narrow letters keep their CTC steps: 1.2 is the least
# at which rendered held-out lines read as well as at 48 px (docs/speed.md). The
# recognizer runs 1.4-1.6x faster; CER rises by 0.05-0.5 points (still below Tesseract's).
VARIANTS: dict[str, dict[str, float | int]] = {"fast": {"height": 32, "width_scale": 1.2}}


def rec_source(model: str | None) -> Path:
    """The recognizer to run: the wheel's (no `--model`, or a name in VARIANTS), or a
    PP-OCR CTC recognizer file given by path, e.g. one fine-tuned at a lower height
    (models/tooling/ppocr)."""
    if model is None or model in VARIANTS:
        return resources.model_path(resources.REC_FILE)
    path = Path(model).expanduser()
    if path.suffix != ".onnx" or not path.is_file():
        raise ModelError(
            f"ppocr --model must be {' or '.join(map(repr, VARIANTS))} or a PP-OCR "
            f"recognizer .onnx file: {model}"
        )
    return path


def model_file(kind: str, precision: str, models_dir: Path, rec: str | None = None) -> Path:
    """Path of the det/rec/cls graph to run: the wheel's FP32 file (or the recognizer file
    `rec` names), or our INT8 copy (generated into `models_dir` on first use)."""
    name = {"det": resources.DET_FILE, "rec": resources.REC_FILE, "cls": resources.CLS_FILE}[kind]
    source = rec_source(rec) if kind == "rec" else resources.model_path(name)
    if precision == "fp32":
        return source
    return ensure_int8(kind, source, Path(models_dir))


def _open_without_arena(
    path: Path, threads: int, flush: bool = True, edit: GraphEdit | None = None
) -> ort.InferenceSession:
    """Crop batches change shape with every run: with ORT's arena and memory patterns a
    worker passed 2.3 GB RSS within 29 pages (measured), so the recognizer and classifier
    allocate per run instead."""
    return open_session(path, threads, arena=False, flush_denormals=flush, edit=edit)


def _describe(path: Path) -> dict:
    """File and sha256; for an INT8 file also its weights' width (7-bit on CPUs where
    8-bit would saturate, `models/cpu.py`), from the manifest written beside it."""
    out = {"file": path.name, "sha256": resources.sha256_file(path)}
    manifest = read_manifest(path) if path.name.endswith(".int8.onnx") else None
    if manifest is not None:
        out["weight_bits"] = 7 if manifest.get("reduce_range") else 8
    return out


def load_detector(
    models_dir: Path | None = None,
    threads: int = 1,
    precision: str = "fp32",
    config: DetectorConfig | None = None,
    flush_denormals: bool = True,
) -> TwoPassDetector:
    """The PP-OCR text-line detector alone, its two-pass scale policy around one session
    (the TrOCR engines reuse it)."""
    _check_precision(precision)
    path = model_file("det", precision, Path(models_dir or "."))
    # Unlike the recognizer, the detector keeps ORT's arena (without memory patterns): a
    # page's activations are a few large blocks, and allocating them fresh on every run
    # (arena off) cost 1.09-1.20x in s/page per eval set, for the same boxes (measured side
    # by side; the recognizer, one small crop per run, gained under 2 %). The arena keeps
    # what the page needed until `DetPredictor.release_memory` hands it back after the
    # job (worker/heap.py).
    # Its pools are exposed (models/ppocr/pools.py) so a large fine pass can run in bands.
    session = open_session(
        path, threads, flush_denormals=flush_denormals, mem_pattern=False, edit=expose_pools
    )
    return TwoPassDetector(DetPredictor(session), config)


def load_recognizer(
    models_dir: Path | None = None,
    threads: int = 1,
    precision: str = "fp32",
    config: RecognizerConfig | None = None,
    flush_denormals: bool = True,
    model: str | None = None,
) -> PPOCRRecognizer:
    _check_precision(precision)
    path = model_file("rec", precision, Path(models_dir or "."), model)
    config = config or RecognizerConfig()
    narrowed: list[str] = []
    variant = VARIANTS.get(model or "")

    def narrow_head(graph) -> bool:
        """Slice the classifier to the decodable characters; remember which they are."""
        meta = {p.key: p.value for p in graph.metadata_props}
        charset = charset_from_metadata(meta.get("character", ""))
        keep = allowed_classes(charset, config.charset)
        if keep is None or not narrow_classifier(graph, keep, len(charset)):
            return False
        narrowed.extend(charset[i] for i in keep)
        return True

    def edit(graph) -> bool:
        changed = config.narrow_head and narrow_head(graph)
        # a variant feeds the wheel's graph another height than the 48 it pins
        return (variant is not None and free_input_height(graph)) or changed

    session = _open_without_arena(path, threads, flush_denormals, edit)
    meta = session.get_modelmeta().custom_metadata_map
    character = meta.get("character")
    if not character:
        raise ModelError(f"{path.name} has no 'character' metadata: not a PP-OCR recognizer")
    config = config_from_metadata(meta, config)
    if variant is not None:
        config = replace(config, **variant)
    return PPOCRRecognizer(session, narrowed or charset_from_metadata(character), config)


def load(
    options: EngineOptions,
    models_dir: Path,
    threads: int = 1,
    config: PPOCRConfig | None = None,
) -> Engine:
    config = config or PPOCRConfig()
    check_precision(options.precision)
    check_small_caps(options, supported=True)
    precision = resolve_precision(options.precision)
    rec_cfg = replace(
        config.recognizer,
        batch_size=options.batch_size,
        # "auto" leaves the config's mode (itself "auto" unless set to measure another)
        small_caps=RECOGNIZER_SMALL_CAPS.get(options.small_caps, config.recognizer.small_caps),
    )
    det_precision = "int8" if precision == "int8" and config.int8_detector else "fp32"
    flush = config.flush_denormals
    detector = load_detector(models_dir, threads, det_precision, config.detector, flush)
    recognizer = load_recognizer(models_dir, threads, precision, rec_cfg, flush, options.model)
    rec_cfg = recognizer.config  # at the height the recognizer's file names
    files = {
        "det": model_file("det", det_precision, models_dir),
        "rec": model_file("rec", precision, models_dir, options.model),
    }
    engine_recognizer = recognizer
    if config.use_angle_cls:
        files["cls"] = model_file("cls", "fp32", models_dir)
        engine_recognizer = AngleCorrectingRecognizer(
            _open_without_arena(files["cls"], threads, flush), recognizer
        )
    provenance = {
        "engine": NAME,
        "source": "rapidocr wheel (PP-OCRv6 small, Apache-2.0)",
        "precision": precision,
        "precision_asked": options.precision,
        "precision_per_model": {"det": det_precision, "rec": precision},
        "models": {kind: _describe(path) for kind, path in files.items()},
        "angle_cls": config.use_angle_cls,
        "onnxruntime": ort.__version__,
        "denormal_weights": "flushed to zero at load" if flush else "kept",
        "detector": asdict(config.detector),
        "recognizer": asdict(rec_cfg),
    }
    # The 0/180 line classifier (FP32: 0.6 MB, ~0.5 ms a piece) finds turned pages.
    classifier = AngleClassifier(
        _open_without_arena(model_file("cls", "fp32", models_dir), threads, flush)
    )
    provenance["orientation"] = {"classifier": _describe(model_file("cls", "fp32", models_dir))}
    return Engine(
        name=NAME,
        detector=detector,
        recognizer=engine_recognizer,
        provenance=provenance,
        classifier=classifier,
    )
