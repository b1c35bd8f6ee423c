"""Give the heap a job freed back to the OS when it is large, so a warm worker's RSS
between jobs stays within a fixed distance of its loaded size, whatever the largest page
it has read.

glibc's malloc keeps freed memory for reuse, and after a large block is freed it raises
its mmap threshold, so later large tensors come from the heap and stay mapped; the
detector's ONNX Runtime arena likewise keeps what a job's pages needed, until it is
emptied after the job (below). Measured with scripts/memory_curve.py
over the same 90 pages (lines, receipts, book pages): RSS between pages 261-321 MB without a
trim, 184-196 MB with one after each page.

A trim is not free: the next job faults its pages back in. Trimming after every job cost
line images 15 % of their throughput through `ocrq run` (9.1 and 8.7 against 10.7 and
10.5 lines/s, alternating runs), and a page read right after a trim took 2-6 % longer
than one read on a warm heap (13 receipts and book pages, same process). So the trim is
a ceiling, not a habit: a job is followed by one only when it left the process more than
`SLACK_MB` above its loaded size, or took `TRIM_AFTER_SECONDS` or more (large pages;
over memory_curve's 1,000 pages those trims cost no measurable time), and a page of 1 Mpx
or more is read on a trimmed heap (`trim_before_large_page`). With 128 MB, 22 of
the first 25 pages of memory_curve's mix were trimmed for; with 192 MB, RSS between jobs
stays under loaded + 192 MB (about 370 MB for PP-OCR, under the 400 MB a worker is meant
to stay below) and only the pages that would have left more pay: 6 trims in 1,000 pages,
244-358 MB between pages. The detector's arena is emptied after every job (one 32x32
run), not under the rule. Side by side over the same 1,000 pages of
scripts/memory_curve.py (FP32, AVX2 EPYC, banded detection, 2026-11-30, both cores at
once): emptied under the rule, 86 trims, 188-365 MB between pages, 589 MB high-water;
emptied after every job, 8 trims, 291-340 MB between pages, 518 MB high-water, in the
same time (573 and 581 s). With it emptied after every job, a 96 MB slack did not lower
the high-water (498 against 504 MB over 400 pages, with 63 trims against 4): that mark
is reached inside the largest pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable
from functools import lru_cache

SLACK_MB = 192.0
# A job this long after the previous release is followed by a trim whatever its slack:
# the trim's few ms and the next job's page faults are a small share of it, and large
# pages are what leave freed memory in the heap that the next one's detector arena (mapped
# apart from the heap) cannot reuse. Line images (0.1 s) stay under it. Measured with
# scripts/memory_curve.py over the same 1,000 pages (AVX2 EPYC, FP32, 2026-11-30): 476 ->
# 440 MB high-water, RSS between pages 307-324 -> 212-302 MB at every 100th page, 0 -> 116
# trims, in the same time (513 and 511 s); through the queue (`ocrq bench -r queue`,
# alternating with the rule off) receipts 0.97 and 0.87 against 0.88 and 0.86 pages/s,
# book pages 0.40 and 0.34 against 0.34 and 0.36.
TRIM_AFTER_SECONDS = 0.5

# A page this large (pixels) is read on a trimmed heap (`trim_before_large_page`).
LARGE_PAGE_PIXELS = 1_000_000

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 0.0
_loaded: float | None = None  # RSS after the trim that followed loading, MB
_released_at: float | None = None  # time.monotonic() of the previous release


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


def rss_mb() -> float:
    """Resident set size: from /proc where there is one (cheap), else from psutil (macOS,
    where an MLX worker's detector arena must still be emptied under the slack rule)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE_MB
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def release_free_memory(
    force: bool = False, release_caches: Callable[[], None] | None = None
) -> bool:
    """After a job: run `release_caches` (an engine's `release_memory`, which empties the
    detector's ONNX Runtime arena: one tiny run), then return free heap pages to the OS
    (glibc `malloc_trim(0)`) if the process is `SLACK_MB` above its loaded size or the
    previous release was `TRIM_AFTER_SECONDS` ago (a long job, or an idle worker), or
    always with `force`, which also takes the loaded size (call it once the warm state is
    loaded). True if the heap was trimmed (never where there is no glibc heap)."""
    global _loaded, _released_at
    if release_caches is not None:
        release_caches()
    now, since = time.monotonic(), _released_at
    _released_at = now
    long_job = since is not None and now - since >= TRIM_AFTER_SECONDS
    if not force and not long_job and _loaded is not None and rss_mb() - _loaded < SLACK_MB:
        return False
    trimmed = _trim()
    if force or _loaded is None:
        _loaded = rss_mb()  # also where nothing could be released, so the rule has a base
    return trimmed


def trim_before_large_page(pixels: int) -> bool:
    """Before a page of `pixels` is read: if it is large, give back the free heap the jobs
    before it left (small jobs stay under the slack rule, so up to `SLACK_MB` of it), which
    the detector's arena for a large page, mapped apart from the heap, cannot reuse.
    Measured with scripts/memory_curve.py (Xeon, INT8, lines, receipts and book pages in
    turn, 2026-11-30): over 1,000 pages the high-water fell 430 -> 408 MB in the same time
    (310 and 304 s); over 150 pages, two runs each, 416 and 418 -> 405 and 408 MB. A large
    page that follows another one finds the heap already trimmed after that job (it took
    over `TRIM_AFTER_SECONDS`), so this costs it nothing more. True if the heap was
    trimmed."""
    return pixels >= LARGE_PAGE_PIXELS and _trim()


def _trim() -> bool:
    """Return all free heap pages to the OS (glibc); False where there is no such heap."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    return trim is not None
