"""Run one runner over a set's items in N pinned, single-threaded, warm processes.

Workers start one at a time (so a first-use cache, such as INT8 model files, is built
once), each pinned to its own core, load the runner, then pull items from one shared
queue until it is empty. The clock for throughput starts when every worker is warm and
stops at the last result, so load time is reported apart from pages/s. Each worker
reports its own peak RSS and that of the programs it ran (Tesseract).

Stdlib-only imports at module level: a spawned worker sets its thread limits before
numpy or onnxruntime are imported.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from ocrq.threads import THREAD_VARS, allowed_cores, limit_threads


@dataclass
class ItemResult:
    index: int
    seconds: float = 0.0
    text: str = ""
    boxes: list = field(default_factory=list)
    lines: int = 0
    error: str | None = None
    worker: int = -1


@dataclass
class PoolResult:
    items: list[ItemResult] = field(default_factory=list)
    wall_seconds: float = 0.0  # first item handed out (all warm) -> last result
    total_seconds: float = 0.0  # including process start and model load
    load_seconds: list[float] = field(default_factory=list)  # per worker
    peak_rss_mb: list[float] = field(default_factory=list)  # per worker process tree
    cores: list[int | None] = field(default_factory=list)
    error: str | None = None  # the runner could not start at all


def peak_rss_mb() -> float:
    """Peak RSS of this process or of any program it ran and waited for, in MB."""
    import resource
    import sys

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * scale / 1e6


@contextmanager
def single_threaded_env():
    """Children inherit the environment at spawn: one thread for every math library."""
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: "1" for k in THREAD_VARS})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _worker(
    index: int,
    core: int | None,
    factory: tuple,
    warmup: tuple | None,
    tasks: mp.Queue,
    out: mp.Queue,
) -> None:
    limit_threads(1)
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    started = time.perf_counter()
    try:
        module, name, args = factory
        import importlib

        read = getattr(importlib.import_module(module), name)(*args)
        if warmup is not None:
            read(*warmup)  # first calls pay for lazy allocations: keep them off the clock
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, not raised
        out.put(("failed", index, f"{type(exc).__name__}: {exc}"))
        return
    out.put(("ready", index, time.perf_counter() - started, core))
    parent = os.getppid()
    while True:
        try:
            task = tasks.get(timeout=5)
        except queue.Empty:
            if os.getppid() != parent:  # the bench was killed: do not linger as an orphan
                return
            continue
        if task is None:
            break
        item_index, path, line_image = task
        t0 = time.perf_counter()
        try:
            got = read(path, line_image)
            result = ItemResult(
                item_index, time.perf_counter() - t0, got.text, got.boxes, got.lines
            )
        except Exception as exc:  # noqa: BLE001 - one bad item fails alone
            result = ItemResult(item_index, time.perf_counter() - t0, error=f"{exc}"[:300])
        result.worker = index
        out.put(("item", index, result))
    out.put(("done", index, peak_rss_mb()))


def run_pool(
    factory: tuple[str, str, tuple],
    tasks: Sequence[tuple[str, bool]],
    processes: int,
    *,
    warmup: tuple[str, bool] | None = None,
    item_timeout: float = 900.0,
    progress: Callable[[int], None] | None = None,
) -> PoolResult:
    """Run `factory` = (module, function, args) -> reader in `processes` pinned workers
    over `tasks` = [(image path, line_image)]; results come back in task order.

    `warmup` is one task each worker reads once after loading, off the clock."""
    ctx = mp.get_context("spawn")  # no inherited sessions, locks or thread pools
    task_q: mp.Queue = ctx.Queue()
    out_q: mp.Queue = ctx.Queue()
    cores = allowed_cores()
    result = PoolResult()
    procs: list = []
    begin = time.perf_counter()
    try:
        for index in range(processes):
            core = cores[index % len(cores)]
            with single_threaded_env():
                proc = ctx.Process(
                    target=_worker,
                    args=(index, core, factory, warmup, task_q, out_q),
                    name=f"ocrq-bench-{index}",
                    daemon=True,
                )
                proc.start()
            procs.append(proc)
            event = _get(out_q, procs, timeout=item_timeout)
            if event[0] != "ready":
                result.error = event[2] if event[0] == "failed" else str(event)
                return result
            result.load_seconds.append(event[2])
            result.cores.append(event[3])
        by_index: dict[int, ItemResult] = {}
        started = time.perf_counter()
        for i, (path, line_image) in enumerate(tasks):
            task_q.put((i, path, line_image))
        for _ in procs:
            task_q.put(None)
        last = started
        while len(by_index) < len(tasks):
            event = _get(out_q, procs, timeout=item_timeout)
            if event[0] == "item":
                by_index[event[2].index] = event[2]
                last = time.perf_counter()
                if progress:
                    progress(1)
            elif event[0] == "done":
                result.peak_rss_mb.append(event[2])
        result.wall_seconds = last - started
        while len(result.peak_rss_mb) < len(procs):
            event = _get(out_q, procs, timeout=60)
            if event[0] == "done":
                result.peak_rss_mb.append(event[2])
        result.items = [by_index[i] for i in range(len(tasks))]
    except RuntimeError as exc:
        result.error = str(exc)
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        result.total_seconds = time.perf_counter() - begin
    return result


def _get(out_q: mp.Queue, procs: list, timeout: float) -> tuple:
    """The next event; RuntimeError when a worker died or nothing came for `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return out_q.get(timeout=0.5)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(
                    f"worker {dead[0].name} died (exit code {dead[0].exitcode})"
                ) from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"no result for {timeout:.0f} s") from None
