"""Placement for a worker process: one pinned core each, parallelism by processes (the
one-thread policy itself is `ocrq.threads.limit_threads`, which `worker/__init__` runs
first thing)."""

from __future__ import annotations

import os

from ocrq.threads import allowed_cores


def pin_to_core(index: int, cores: list[int] | None = None) -> int | None:
    """Pin this process to one core, chosen by its index among its siblings."""
    if not hasattr(os, "sched_setaffinity"):
        return None  # macOS: no affinity API; the OS scheduler places processes
    cores = cores or allowed_cores()
    core = cores[index % len(cores)]
    os.sched_setaffinity(0, {core})
    return core
