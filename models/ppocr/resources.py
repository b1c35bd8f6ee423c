"""Where the PP-OCR ONNX files come from: the installed `rapidocr` wheel, never the network.

Hashes are computed once per process and cached: a warm worker hashes ~31 MB at load,
then never again.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from ocrq import hashing
from ocrq.errors import ModelError

DET_FILE = "PP-OCRv6_det_small.onnx"
REC_FILE = "PP-OCRv6_rec_small.onnx"
CLS_FILE = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"


@lru_cache(maxsize=1)
def package_models_dir() -> Path:
    """The `models/` folder inside the installed rapidocr package (found without importing
    rapidocr, whose import pulls in its own config machinery)."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the rapidocr package is not installed: pip install rapidocr==3.10.0")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_path(filename: str) -> Path:
    path = package_models_dir() / filename
    if not path.is_file():
        raise ModelError(f"{filename} is missing from the rapidocr package ({path.parent})")
    return path


@lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return hashing.sha256_file(path)


def sha256_file(path: Path) -> str:
    """sha256 of a file, cached per (path, size, mtime) for the life of the process."""
    st = path.stat()
    return _sha256_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)
