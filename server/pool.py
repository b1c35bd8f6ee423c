"""The local pinned pool of `ocrq run`, kept running in the server's background.

`worker.local.LocalPool.run` takes a fixed list of jobs and stops its children when they
are done; a server receives jobs for as long as it runs, so `ServedPool` starts the same
pool (one child per core, each warm, each pinned; a dead child replaced on its core and
its job handed out again, a job over the hard limit has its child killed) and drives its
public steps in a thread of its own, taking new job ids from any thread at any time.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence

from ocrq.config import Settings
from worker.local import ChildState, LocalPool, WorkerStartFailed

__all__ = ["ChildState", "ServedPool"]


class ServedPool:
    """A `LocalPool` that runs until stopped. `on_event` is called (from the pool's
    thread) after each event from a child, and once when the pool stops."""

    def __init__(
        self,
        settings: Settings,
        workers: int,
        on_event: Callable[[], None] | None = None,
        hard_limit: float = 600.0,
    ) -> None:
        self.pool = LocalPool(settings, workers, hard_limit=hard_limit)
        self.workers = self.pool.workers
        self.on_event = on_event
        self.error: str | None = None  # why the pool stopped (an engine that cannot load)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.pool.start()
        self._thread = threading.Thread(target=self._loop, name="ocrq-serve-pool", daemon=True)
        self._thread.start()

    def submit(self, job_ids: Sequence[int]) -> None:
        if self.error:
            raise WorkerStartFailed(self.error)
        self.pool.submit(job_ids)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)

    def close(self) -> None:
        """Release the queues (after `stop`)."""
        self.pool.close()

    def waiting(self) -> int:
        return self.pool.waiting()

    def ready_count(self) -> int:
        return self.pool.ready_count()

    def states(self) -> list[ChildState]:
        return self.pool.states()

    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                event = self.pool.step()
                if event is not None and self.on_event is not None:
                    self.on_event()
        except WorkerStartFailed as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - said on /health, the server goes on
            self.error = f"pool stopped: {type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(OSError, ValueError):  # queues closed at interpreter exit
                self.pool.stop()
            if self.on_event is not None:
                self.on_event()
