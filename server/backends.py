"""Where recorded jobs go: the Celery workers through Redis (`QueueBackend`), or the
local pinned pool in this process (`LocalBackend`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from ocrq.config import Settings, redact_url
from ocrq.queue import Enqueuer, producer_app, queue_depths, queue_name
from ocrq.storage import Store
from server.pool import ServedPool

LOCAL, QUEUE = "local", "queue"


class LocalBackend:
    mode = LOCAL

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.workers = workers
        self.pool: ServedPool | None = None

    def start(self, notify: Callable[[], None]) -> None:
        self.pool = ServedPool(self.settings, self.workers, on_event=notify)
        self.pool.start()

    def stop(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.stop()
            pool.close()

    def send(self, store: Store, job_ids: Sequence[int]) -> None:
        if self.pool is None:
            raise RuntimeError("the local pool is stopped")
        mine = store.claim_unsent(list(job_ids))  # marks them published, as `ocrq run` does
        self.pool.submit(mine)

    def problem(self) -> str | None:
        """Why nothing can run now (None: it can)."""
        if self.pool is None:
            return "the local pool is not running"
        return self.pool.error

    def depth(self) -> int:
        return self.pool.waiting() if self.pool else 0

    def describe(self) -> str:
        plural = "es" if self.workers != 1 else ""
        return f"local mode: {self.workers} pinned worker process{plural} in this process"

    def health(self) -> dict:
        pool = self.pool
        ready = pool.ready_count() if pool else 0
        return {"workers": self.workers, "workers_ready": ready}

    def worker_states(self, activity: dict[str, dict]) -> list[dict]:
        out = []
        for child in self.pool.states() if self.pool else []:
            ident = next((w for w in activity if f":{child.pid}:" in w), None)
            seen = activity.get(ident, {}) if ident else {}
            state = "busy" if child.job is not None else "idle"
            if not child.alive:
                state = "down"
            elif not child.ready:
                state = "starting"
            out.append(
                {
                    "name": f"local-{child.index}",
                    "pid": child.pid,
                    "core": child.core,
                    "state": state,
                    "job": seen.get("job") or ({"id": child.job} if child.job else None),
                    "busy_seconds": round(child.busy_seconds, 1),
                    "pages_recent": seen.get("pages_recent", 0),
                    "last_finished": seen.get("last_finished"),
                }
            )
        return out


class QueueBackend:
    mode = QUEUE

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queue = queue_name(settings.engine.engine)
        # few retries: a request should not hang for half a minute on a broker that is gone
        self.enqueuer = Enqueuer(settings.broker_url, self.queue, retries=2)
        self._checked = 0.0
        self._problem: str | None = None
        self._depth: int | None = None
        self._lock = threading.Lock()

    def start(self, notify: Callable[[], None]) -> None:
        pass

    def stop(self) -> None:
        pass

    def send(self, store: Store, job_ids: Sequence[int]) -> None:
        self.enqueuer.send(list(job_ids), store)

    def _look(self) -> None:
        """The broker's queue depth, at most once a second."""
        with self._lock:
            if time.monotonic() - self._checked < 1.0:
                return
            depths = queue_depths(self.settings.broker_url)
            self._checked = time.monotonic()
            if depths is None:
                self._problem = f"broker {redact_url(self.settings.broker_url)} unreachable"
                self._depth = None
            else:
                self._problem = None
                self._depth = depths.get(self.queue, 0)

    def problem(self) -> str | None:
        self._look()
        return self._problem

    def depth(self) -> int | None:
        self._look()
        return self._depth

    def describe(self) -> str:
        return (
            f"queue mode: jobs go to {redact_url(self.settings.broker_url)} queue {self.queue} "
            "for the Celery workers (`celery -A worker worker`)"
        )

    def health(self) -> dict:
        return {"broker": redact_url(self.settings.broker_url), "queue": self.queue}

    def worker_states(self, activity: dict[str, dict]) -> list[dict]:
        out = []
        for ident, seen in sorted(activity.items()):
            out.append(
                {
                    "name": ident,
                    "pid": None,
                    "core": None,
                    "state": "busy" if seen.get("job") else "idle",
                    "job": seen.get("job"),
                    "busy_seconds": (seen.get("job") or {}).get("seconds") or 0.0,
                    "pages_recent": seen.get("pages_recent", 0),
                    "last_finished": seen.get("last_finished"),
                }
            )
        return out

    def ping_workers(self, timeout: float = 1.5) -> int | None:
        """How many Celery workers answer a ping now (None: the broker cannot be asked)."""
        try:
            app = producer_app(self.settings.broker_url)
            return len(app.control.ping(timeout=timeout) or [])
        except Exception:  # noqa: BLE001 - only for the start-up line
            return None
