"""The environment variables that size math libraries' thread pools, and the cores this
process may run on (stdlib only, so a process can set them before numpy, onnxruntime or
Tesseract's OpenMP start)."""

from __future__ import annotations

import os

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OMP_THREAD_LIMIT",
)


def allowed_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]


def limit_threads(threads: int = 1) -> None:
    """Size every math library's pool to `threads`: in this process if called before the
    library starts, and in every process it spawns afterwards."""
    for name in THREAD_VARS:
        os.environ[name] = str(threads)
