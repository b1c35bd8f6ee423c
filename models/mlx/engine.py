"""`--engine trocr-mlx`: the PP-OCR detector + a TrOCR recognizer running on MLX.

MLX is for Apple Silicon (Metal GPU, unified memory); on Linux `mlx[cpu]` runs the same
code for testing, several times slower than onnxruntime (see scripts/bench_mlx.py).
The model is loaded once per worker process (warm); crops are preprocessed as the saved
`preprocessor_config.json` says and decoded in batches of `options.batch_size`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from models import cache
from models.base import Engine
from models.mlx.files import KIND, MLX_SUFFIX, WEIGHTS_FILE
from models.ppocr.engine import load_detector
from ocrq.config import EngineOptions, check_precision, check_small_caps
from ocrq.errors import ModelError

NAME = "trocr-mlx"


def resolve(model: str | None, models_dir: Path) -> Path:
    """The converted model directory for `--model`: a directory, a cache name, or the
    name of the ONNX export of the same source (its MLX twin is `<name>-mlx`)."""
    if not model:
        raise ModelError(f"{NAME} needs --model (convert one with `ocrq models convert-mlx`)")
    candidates = [model] if model.endswith(MLX_SUFFIX) else [model, model + MLX_SUFFIX]
    errors = []
    for name in candidates:
        try:
            path = cache.resolve_model(name, models_dir)
        except ModelError as exc:
            errors.append(str(exc))
            continue
        if cache.read_manifest(path).get("kind") == KIND:
            return path
        errors.append(f"{path} is not an MLX model")
    raise ModelError(errors[-1] + " (convert one with `ocrq models convert-mlx SOURCE`)")


def _generation_defaults(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "generation_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def load(options: EngineOptions, models_dir: Path, threads: int = 1) -> Engine:
    check_precision(options.precision)
    check_small_caps(options, supported=False)
    if options.precision == "int8":
        raise ModelError(
            f"{NAME} runs the dtype chosen at conversion (convert-mlx --dtype); "
            f"precision {options.precision!r} is not available"
        )
    # MLX's CPU matmuls go through BLAS; keep its pool to our thread budget (only effective
    # before the BLAS library starts, hence mlx and the modules importing it are imported
    # here, after this line, and not at the top).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(max(1, threads)))
    import mlx.core as mx

    from models.mlx.recognizer import DecodeOptions, MLXRecognizer

    model_dir = resolve(options.model, Path(models_dir))
    cache.verify_files(model_dir, [WEIGHTS_FILE])
    gen = _generation_defaults(model_dir)
    decode = DecodeOptions(
        batch_size=options.batch_size,
        max_new_tokens=options.max_new_tokens,
        num_beams=options.num_beams,
        length_penalty=float(gen.get("length_penalty") or 1.0),
        early_stopping=gen.get("early_stopping") is True,
    )
    recognizer = MLXRecognizer(model_dir, decode)
    detector = load_detector(models_dir, threads)
    manifest = cache.read_manifest(model_dir)
    provenance = {
        "engine": NAME,
        "model": model_dir.name,
        "source": manifest.get("source"),
        "precision": manifest.get("mlx", {}).get("dtype"),
        "sha256": manifest["files"][WEIGHTS_FILE]["sha256"],
        "mlx": mx.__version__,
        "device": str(mx.default_device()),
        "decode": {
            "max_new_tokens": decode.max_new_tokens,
            "num_beams": decode.num_beams,
            "batch_size": decode.batch_size,
        },
        "detector": "ppocr (PP-OCRv6 small det, rapidocr wheel)",
    }
    return Engine(name=NAME, detector=detector, recognizer=recognizer, provenance=provenance)
