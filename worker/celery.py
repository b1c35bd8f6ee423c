"""The Celery app. `celery -A worker worker` finds it here, at `worker.celery:app`
(Celery's own layout: a package's `celery` module holds its app).

Only a worker process imports this module: the producer publishes by task name through
`ocrq.queue`, so submitting never builds this app.
"""

from __future__ import annotations

import logging
import os
import signal

from billiard.process import current_process
from celery import Celery, bootsteps
from celery.platforms import EX_FAILURE
from celery.signals import worker_init, worker_process_init, worker_process_shutdown
from celery.worker import state as worker_state

from ocrq.config import settings_from_env
from ocrq.errors import ModelError
from ocrq.queue import Enqueuer, LostMessageCheck, nothing_can_be_lost, queue_name
from ocrq.storage import Store
from worker import warm
from worker.config import celery_config

log = logging.getLogger("ocrq.worker")

settings = settings_from_env()
app = Celery("ocrq", broker=settings.broker_url, include=["worker.tasks"])
app.conf.update(celery_config(settings))


# Celery's own shutdown signals all exit 0 (even SIGQUIT's cold shutdown: WorkerTerminate
# drops its code), and a supervisor would take a worker without an engine for a clean
# stop. A child that cannot load the engine sends this one instead: the main process
# asks for a warm shutdown with exit code 1, which the event loop raises as SystemExit(1).
ENGINE_FAILED = signal.SIGUSR2


@worker_process_init.connect
def _init_child(**_kwargs: object) -> None:
    # billiard numbers pool children 0..N-1 and reuses a dead child's index for its
    # replacement, so each child keeps its own core across restarts.
    logging.basicConfig(level=logging.INFO)
    try:
        warm.init_process(getattr(current_process(), "index", 0), settings)
    except ModelError as exc:
        # Every child would fail alike (a missing model, a bad option): say it once,
        # plainly, and stop the whole worker rather than leave it up with no pool.
        log.critical("cannot load the engine: %s; stopping the worker", exc)
        os.kill(os.getppid(), ENGINE_FAILED)
        raise


def _engine_failed(_signum: int, _frame: object) -> None:
    worker_state.should_stop = EX_FAILURE


@worker_init.connect
def _init_main(**_kwargs: object) -> None:
    signal.signal(ENGINE_FAILED, _engine_failed)


@worker_process_shutdown.connect
def _shutdown_child(**_kwargs: object) -> None:
    warm.reset()


class RequeueLost(bootsteps.StartStopStep):
    """Every `reconcile_interval` seconds (OCRQ_RECONCILE_INTERVAL, default 300; 0 turns
    it off) the worker's main process publishes again the jobs whose message vanished
    from Redis (kombu takes a message off the queue before recording it as unacked: a
    worker killed in between loses it; the soak test lost 2 of 3,000 under repeated kill
    -9), once a job was missing in two rounds in a row (see LostMessageCheck). Runs on the
    worker's own timer in its event loop, so no thread is alive when the pool forks a
    child."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, parent, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(parent, **kwargs)
        self.interval = settings.worker.reconcile_interval
        self.tref = None
        engine = settings.engine.engine
        enqueuer = Enqueuer(settings.broker_url, queue_name(engine))
        # one check for the worker's life: it remembers last round's suspects
        self.check = LostMessageCheck(enqueuer, settings.worker.reconcile_grace, engine=engine)

    def start(self, parent):  # type: ignore[no-untyped-def]
        if self.interval > 0:
            self.tref = parent.timer.call_repeatedly(self.interval, self.run)

    def stop(self, parent):  # type: ignore[no-untyped-def]
        if self.tref is not None:
            self.tref.cancel()

    def run(self) -> None:
        store = Store(settings.db_url, create=False)
        try:
            if nothing_can_be_lost(store, settings.broker_url, queue_name):
                self.check.forget()
                return
            lost = self.check.run(store)
            if lost:
                log.warning("re-sent %d jobs whose message was lost: %s", len(lost), lost[:20])
        except Exception as exc:  # broker or DB away: the next round tries again
            log.warning("lost-message check failed: %s", exc)
        finally:
            store.dispose()


app.steps["worker"].add(RequeueLost)
