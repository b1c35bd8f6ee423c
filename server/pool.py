"""The local pinned pool of `ocrq run`, kept running in the server's background.

`worker.local.LocalPool.run` takes a fixed list of jobs and stops its children when they
are done; a server receives jobs for as long as it runs, so `ServedPool` keeps the same
children (one per core, each warm, each pinned) and the same bookkeeping (a dead child is
replaced on its core and its job handed out again, a job over the hard limit has its
child killed) in a loop of its own, in a thread, and takes new job ids at any time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ocrq.config import Settings
from worker.local import LocalPool, LocalSummary, WorkerStartFailed

IDLE_RESEND = 30.0  # s without any event while every child is idle: hand the rest out again


@dataclass(frozen=True)
class ChildState:
    """One pool child, for the status page."""

    index: int
    pid: int | None
    core: int | None
    ready: bool
    alive: bool
    job: int | None
    busy_seconds: float


class ServedPool(LocalPool):
    """`LocalPool` that runs until stopped. `submit` may be called from any thread;
    `on_event` is called (from the pool's thread) after each event from a child."""

    def __init__(
        self,
        settings: Settings,
        workers: int,
        on_event: Callable[[], None] | None = None,
        hard_limit: float = 600.0,
    ) -> None:
        super().__init__(settings, workers, hard_limit=hard_limit)
        self.on_event = on_event
        self.summary = LocalSummary()
        self.error: str | None = None  # why the pool stopped (an engine that cannot load)
        self._remaining: set[int] = set()
        self._retries: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._cores: dict[int, int | None] = {}  # pid -> core, from the children's "ready"

    # ---- from the server ---------------------------------------------------------------

    def start(self) -> None:
        for index in range(self.workers):
            self._spawn(index)
        self._thread = threading.Thread(target=self._loop, name="ocrq-serve-pool", daemon=True)
        self._thread.start()

    def submit(self, job_ids: Sequence[int]) -> None:
        if self.error:
            raise WorkerStartFailed(self.error)
        with self._lock:
            for job_id in job_ids:
                if job_id not in self._remaining:
                    self._remaining.add(job_id)
                    self.tasks.put(job_id)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)

    def close(self) -> None:
        """Release the queues (after `stop`)."""
        for q in (self.tasks, self.events):
            q.close()
            q.join_thread()

    def waiting(self) -> int:
        """Jobs handed to the pool that no child has started yet."""
        with self._lock:
            busy = sum(1 for child in self.children.values() if child.job is not None)
            return max(0, len(self._remaining) - busy)

    def ready_count(self) -> int:
        return sum(1 for child in self.children.values() if child.ready)

    def states(self) -> list[ChildState]:
        now = time.monotonic()
        out = []
        for index, child in sorted(self.children.items()):
            pid = child.process.pid
            out.append(
                ChildState(
                    index=index,
                    pid=pid,
                    core=self._cores.get(pid) if pid else None,
                    ready=child.ready,
                    alive=child.process.is_alive(),
                    job=child.job,
                    busy_seconds=now - child.started if child.job is not None else 0.0,
                )
            )
        return out

    # ---- the pool's own thread -----------------------------------------------------------

    def _loop(self) -> None:
        last_event = time.monotonic()
        try:
            while not self._stopping.is_set():
                event = self._next_event()
                with self._lock:
                    self._handle(event, self._remaining, self._retries, self.summary, None)
                    self._reap(self._remaining, self.summary, None)
                    if event is not None:
                        last_event = time.monotonic()
                        if event[0] == "ready":
                            self._cores[event[2]] = event[3]
                    elif (
                        self._remaining
                        and time.monotonic() - last_event > IDLE_RESEND
                        and self._all_idle()
                    ):
                        # a child died between taking a job and announcing it (as in
                        # `LocalPool.run`): a finished job is skipped when run again
                        for job_id in self._remaining:
                            self.tasks.put(job_id)
                        last_event = time.monotonic()
                if event is not None and self.on_event is not None:
                    self.on_event()
        except WorkerStartFailed as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - said on /health, the server goes on
            self.error = f"pool stopped: {type(exc).__name__}: {exc}"
        finally:
            self._stop()
            if self.on_event is not None:
                self.on_event()

    def _stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # queues closed at interpreter exit
            super()._stop()
