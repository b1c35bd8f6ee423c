"""Embedded mode (`ocrq run`, and `ocrq serve`'s local pool): the same job code as the
Celery task, no broker.

A pool of pinned worker processes, one per core, each warm (engine loaded once in
`worker.warm.init_process`, exactly as a Celery child). The parent hands out job ids
one at a time and watches the children: a child that dies is replaced on the same
core and its job handed out again; a job over the hard time limit has its child killed
and fails with that reason. Both are counted against the job's attempts, so a poison
image cannot loop forever.

`LocalPool.run` takes a fixed list of jobs and stops when they are done (`ocrq run`).
A caller that takes jobs for as long as it lives (the server) drives the same pool
through its public steps: `start`, `submit` (from any thread), `step` in a loop of its
own, `stop`; `states`, `waiting` and `ready_count` say what the children are doing.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ocrq.config import Settings
from ocrq.errors import ModelError
from ocrq.storage import Store
from worker import warm
from worker.heap import release_free_memory, trim_before_large_page
from worker.pipeline import process_job

Event = tuple  # (kind, worker_index, *payload)
IDLE_RESEND = 30.0  # s without any event while every child is idle: hand the rest out again


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


@dataclass(frozen=True)
class ChildState:
    """One pool child as it is now (for a status page)."""

    index: int
    pid: int | None
    core: int | None
    ready: bool
    alive: bool
    job: int | None
    busy_seconds: float


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
    core: int | None = None


class LocalPool:
    def __init__(
        self,
        settings: Settings,
        workers: int,
        hard_limit: float = 600.0,
        max_retries: int = 5,
        on_finished: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.workers = max(1, workers)
        self.hard_limit = hard_limit
        self.max_retries = max_retries
        self.on_finished = on_finished  # called with 1 for each job finished (a progress bar)
        self.ctx = mp.get_context("spawn")  # no inherited DB connections, locks or threads
        self.tasks: mp.Queue = self.ctx.Queue()
        self.events: mp.Queue = self.ctx.Queue()
        self.children: dict[int, _Child] = {}
        self.start_failures = 0
        self.summary = LocalSummary()
        self.outstanding: set[int] = set()  # handed out and not finished
        self._retries: dict[int, int] = {}
        self._last_event = time.monotonic()
        self._lock = threading.Lock()  # `submit` may come from other threads than `step`

    # ---- the public steps ----------------------------------------------------------------

    def run(self, job_ids: Sequence[int], progress: Callable[[int], None] | None = None):
        """Run `job_ids` to the end and stop the children: `ocrq run`."""
        self.on_finished = progress
        started = time.perf_counter()
        self.submit(job_ids)
        self.start(min(self.workers, max(len(job_ids), 1)))
        try:
            while self.outstanding:
                self.step()
        finally:
            self.stop()
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    def start(self, count: int | None = None) -> None:
        """Start `count` children (default: `workers`), each pinned to its own core."""
        for index in range(self.workers if count is None else count):
            self._spawn(index)

    def submit(self, job_ids: Iterable[int]) -> None:
        """Hand out jobs (any thread); one already handed out and not finished is not
        handed out twice."""
        with self._lock:
            for job_id in job_ids:
                if job_id not in self.outstanding:
                    self.outstanding.add(job_id)
                    self.tasks.put(job_id)

    def step(self, timeout: float = 0.5) -> Event | None:
        """Wait up to `timeout` s for one event from the children and act on it; replace
        dead children, kill ones over the time limit. Returns the event (None: none came).
        Raises `WorkerStartFailed` when the children cannot load the engine."""
        event = self._next_event(timeout)
        with self._lock:
            if event is not None:
                self._last_event = time.monotonic()
            self._handle(event)
            self._reap()
            if event is None and self._stalled():
                # a child died between taking a job and announcing it: hand the unfinished
                # ones out again (a finished job is skipped when run again)
                for job_id in self.outstanding:
                    self.tasks.put(job_id)
                self._last_event = time.monotonic()
        return event

    def stop(self) -> None:
        """Stop the children (a job they are running is finished first, up to 10 s)."""
        for _ in self.children:
            self.tasks.put(None)
        deadline = time.monotonic() + 10
        for child in self.children.values():
            child.process.join(max(0.1, deadline - time.monotonic()))
            if child.process.is_alive():
                child.process.kill()
                child.process.join(5)

    def close(self) -> None:
        """Release the queues (after `stop`)."""
        for q in (self.tasks, self.events):
            q.close()
            q.join_thread()

    def waiting(self) -> int:
        """Jobs handed out that no child has started yet."""
        with self._lock:
            busy = sum(1 for child in self.children.values() if child.job is not None)
            return max(0, len(self.outstanding) - busy)

    def ready_count(self) -> int:
        return sum(1 for child in list(self.children.values()) if child.ready)

    def states(self) -> list[ChildState]:
        now = time.monotonic()
        with self._lock:
            children = sorted(self.children.items())
        return [
            ChildState(
                index=index,
                pid=child.process.pid,
                core=child.core,
                ready=child.ready,
                alive=child.process.is_alive(),
                job=child.job,
                busy_seconds=now - child.started if child.job is not None else 0.0,
            )
            for index, child in children
        ]

    # ---- bookkeeping -----------------------------------------------------------------------

    def _spawn(self, index: int) -> None:
        process = self.ctx.Process(
            target=_child_main,
            args=(index, self.settings, self.tasks, self.events),
            name=f"ocrq-local-{index}",
            daemon=True,
        )
        process.start()
        self.children[index] = _Child(index, process)

    def _stalled(self) -> bool:
        idle = all(child.job is None for child in self.children.values())
        return bool(self.outstanding) and idle and time.monotonic() - self._last_event > IDLE_RESEND

    def _next_event(self, timeout: float) -> Event | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def _handle(self, event: Event | None) -> None:
        if event is None:
            return
        kind, index = event[0], event[1]
        child = self.children.get(index)
        if kind == "fatal":
            raise WorkerStartFailed(f"worker could not start: {event[3]}")
        if kind == "ready":
            self.summary.workers.append((event[2], event[3]))
            if child is not None:
                child.ready, child.core = True, event[3]
        elif kind == "start" and child is not None:
            child.job, child.started = event[2], time.monotonic()
        elif kind == "retry":
            self._retry(child, event[2], event[3])
        elif kind == "end":
            if child is not None:
                child.job = None
            self._finish(event[2], event[3], event[4])

    def _retry(self, child: _Child | None, job_id: int, reason: str) -> None:
        if child is not None:
            child.job = None
        self._retries[job_id] = self._retries.get(job_id, 0) + 1
        if self._retries[job_id] > self.max_retries:
            self.summary.errors.append((job_id, reason))
            self._discard(job_id)
        else:
            time.sleep(min(0.2 * 2 ** self._retries[job_id], 5.0))
            self.tasks.put(job_id)

    def _finish(self, job_id: int, status: str, error: str | None) -> None:
        if job_id not in self.outstanding:
            return
        if status == "done":
            self.summary.done += 1
        elif status == "failed":
            self.summary.failed += 1
            self.summary.errors.append((job_id, error or ""))
        else:
            self.summary.skipped += 1
        self._discard(job_id)

    def _discard(self, job_id: int) -> None:
        self.outstanding.discard(job_id)
        self._retries.pop(job_id, None)
        if self.on_finished:
            self.on_finished(1)

    def _reap(self) -> None:
        """Replace dead children (on the same core) and kill ones over the time limit."""
        now = time.monotonic()
        for index, child in list(self.children.items()):
            overdue = child.job is not None and now - child.started > self.hard_limit
            if overdue:
                child.process.kill()
                child.process.join(5)
                self._fail_overdue(child.job)
            elif child.process.is_alive() or not self.outstanding:
                continue
            if not child.ready and not overdue:
                self.start_failures += 1
                if self.start_failures >= 3:  # dying while loading, with nothing said
                    raise WorkerStartFailed(
                        "worker processes keep dying while loading the engine "
                        f"(exit code {child.process.exitcode})"
                    )
            lost = child.job
            self.summary.restarts += 1
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
