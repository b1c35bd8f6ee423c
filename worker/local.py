"""Embedded mode (`ocrq run`): the same job code as the Celery task, no broker.

A pool of pinned worker processes, one per core, each warm (engine loaded once in
`worker.warm.init_process`, exactly as a Celery child). The parent hands out job ids
one at a time and watches the children: a child that dies is replaced on the same
core and its job handed out again; a job over the hard time limit has its child killed
and fails with that reason. Both are counted against the job's attempts, so a poison
image cannot loop forever.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ocrq.config import Settings
from ocrq.errors import ModelError
from ocrq.storage import Store
from worker import warm
from worker.heap import release_free_memory, trim_before_large_page
from worker.pipeline import process_job

Event = tuple  # (kind, worker_index, *payload)


class WorkerStartFailed(ModelError):
    """A pool child could not load its engine (the message says why)."""


@dataclass
class LocalSummary:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    restarts: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0
    workers: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, core)


def _child_main(index: int, settings: Settings, tasks: mp.Queue, events: mp.Queue) -> None:
    try:
        state = warm.init_process(index, settings)
    except Exception as exc:  # a missing model or bad option: every child would fail alike
        events.put(("fatal", index, type(exc).__name__, str(exc)))
        return
    events.put(("ready", index, os.getpid(), state.core))
    while True:
        job_id = tasks.get()
        if job_id is None:
            return
        events.put(("start", index, job_id))
        try:
            outcome = process_job(
                state.store,
                state.engine,
                settings.engine,
                settings.limits,
                job_id,
                state.worker_id,
                max_attempts=settings.worker.max_attempts,
                before_page=trim_before_large_page,
            )
        except Exception as exc:  # a database fault: the parent retries the job later
            events.put(("retry", index, job_id, f"{type(exc).__name__}: {exc}"))
            continue
        finally:
            release_free_memory(release_caches=state.engine.release_memory)
        events.put(("end", index, job_id, outcome.status, outcome.error))


@dataclass
class _Child:
    index: int
    process: mp.process.BaseProcess
    job: int | None = None
    started: float = 0.0
    ready: bool = False


class LocalPool:
    def __init__(
        self,
        settings: Settings,
        workers: int,
        hard_limit: float = 600.0,
        max_retries: int = 5,
    ) -> None:
        self.settings = settings
        self.workers = max(1, workers)
        self.hard_limit = hard_limit
        self.max_retries = max_retries
        self.ctx = mp.get_context("spawn")  # no inherited DB connections, locks or threads
        self.tasks: mp.Queue = self.ctx.Queue()
        self.events: mp.Queue = self.ctx.Queue()
        self.children: dict[int, _Child] = {}
        self.start_failures = 0

    def _spawn(self, index: int) -> None:
        process = self.ctx.Process(
            target=_child_main,
            args=(index, self.settings, self.tasks, self.events),
            name=f"ocrq-local-{index}",
            daemon=True,
        )
        process.start()
        self.children[index] = _Child(index, process)

    def run(self, job_ids: Sequence[int], progress: Callable[[int], None] | None = None):
        summary = LocalSummary()
        started = time.perf_counter()
        pending = list(job_ids)
        retries: dict[int, int] = {}
        for job_id in pending:
            self.tasks.put(job_id)
        remaining = set(pending)
        for index in range(min(self.workers, max(len(pending), 1))):
            self._spawn(index)
        last_event = time.monotonic()
        try:
            while remaining:
                event = self._next_event()
                if event is not None:
                    last_event = time.monotonic()
                self._handle(event, remaining, retries, summary, progress)
                self._reap(remaining, summary, progress)
                if time.monotonic() - last_event > 30 and self._all_idle():
                    # a child died between taking a job and announcing it: hand the
                    # unfinished ones out again (a finished job is skipped on rerun)
                    for job_id in remaining:
                        self.tasks.put(job_id)
                    last_event = time.monotonic()
        finally:
            self._stop()
        summary.seconds = time.perf_counter() - started
        return summary

    def _all_idle(self) -> bool:
        return all(child.job is None for child in self.children.values())

    def _next_event(self) -> Event | None:
        try:
            return self.events.get(timeout=0.5)
        except queue.Empty:
            return None

    def _handle(self, event, remaining, retries, summary, progress) -> None:
        if event is None:
            return
        kind, index = event[0], event[1]
        child = self.children.get(index)
        if kind == "fatal":
            raise WorkerStartFailed(f"worker could not start: {event[3]}")
        if kind == "ready":
            summary.workers.append((event[2], event[3]))
            if child is not None:
                child.ready = True
        elif kind == "start" and child is not None:
            child.job, child.started = event[2], time.monotonic()
        elif kind == "retry":
            job_id = event[2]
            if child is not None:
                child.job = None
            retries[job_id] = retries.get(job_id, 0) + 1
            if retries[job_id] > self.max_retries:
                summary.errors.append((job_id, event[3]))
                remaining.discard(job_id)
                if progress:
                    progress(1)
            else:
                time.sleep(min(0.2 * 2 ** retries[job_id], 5.0))
                self.tasks.put(job_id)
        elif kind == "end":
            job_id, status, error = event[2], event[3], event[4]
            if child is not None:
                child.job = None
            if job_id in remaining:
                remaining.discard(job_id)
                if status == "done":
                    summary.done += 1
                elif status == "failed":
                    summary.failed += 1
                    summary.errors.append((job_id, error or ""))
                else:
                    summary.skipped += 1
                if progress:
                    progress(1)

    def _reap(self, remaining, summary, progress) -> None:
        """Replace dead children (on the same core) and kill ones over the time limit."""
        now = time.monotonic()
        for index, child in list(self.children.items()):
            overdue = child.job is not None and now - child.started > self.hard_limit
            if overdue:
                child.process.kill()
                child.process.join(5)
                self._fail_overdue(child.job)
            elif child.process.is_alive() or not remaining:
                continue
            if not child.ready and not overdue:
                self.start_failures += 1
                if self.start_failures >= 3:  # dying while loading, with nothing said
                    raise WorkerStartFailed(
                        "worker processes keep dying while loading the engine "
                        f"(exit code {child.process.exitcode})"
                    )
            lost = child.job
            summary.restarts += 1
            self._spawn(index)
            if lost is not None and not overdue:
                self.tasks.put(lost)  # attempts in the DB bound how often this happens

    def _fail_overdue(self, job_id: int) -> None:
        store = Store(self.settings.db_url, create=False)
        try:
            store.fail_job(job_id, f"time limit: still running after {self.hard_limit:.0f} s")
        finally:
            store.dispose()
        self.events.put(("end", -1, job_id, "failed", "time limit"))

    def _stop(self) -> None:
        for _ in self.children:
            self.tasks.put(None)
        deadline = time.monotonic() + 10
        for child in self.children.values():
            child.process.join(max(0.1, deadline - time.monotonic()))
            if child.process.is_alive():
                child.process.kill()
                child.process.join(5)
