"""Thread policy for a pinned worker process: one thread inside, parallelism by processes.

Set before numpy/onnxruntime create their pools; `worker/__init__` calls it first thing.
"""

from __future__ import annotations

import os

from ocrq.threads import THREAD_VARS


def limit_threads(threads: int = 1) -> None:
    for name in THREAD_VARS:
        os.environ[name] = str(threads)


def allowed_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]


def pin_to_core(index: int, cores: list[int] | None = None) -> int | None:
    """Pin this process to one core, chosen by its index among its siblings."""
    if not hasattr(os, "sched_setaffinity"):
        return None  # macOS: no affinity API; the OS scheduler places processes
    cores = cores or allowed_cores()
    core = cores[index % len(cores)]
    os.sched_setaffinity(0, {core})
    return core
