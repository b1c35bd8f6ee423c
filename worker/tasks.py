"""The one task: OCR a job by id. The message carries the id and the identity of the
results database it belongs to (JSON); the job row says what to read and with which
engine options."""

from __future__ import annotations

import logging
import time

from celery.exceptions import Reject, SoftTimeLimitExceeded, TimeLimitExceeded
from sqlalchemy.exc import OperationalError

from ocrq.errors import DatabaseUnavailable
from ocrq.queue import REFUSED, TASK_NAME, count_recovery
from ocrq.storage import Store
from worker import warm
from worker.celery import app, settings
from worker.heap import release_free_memory, trim_before_large_page
from worker.pipeline import Outcome, process_job

log = logging.getLogger("ocrq.worker")


class OcrTask(app.Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):  # type: ignore[no-untyped-def]
        # Called in the worker's main process when the pool killed a child at the hard
        # time limit: the child never got to write anything and Celery acks the message,
        # so without this the job row would stay "running" forever.
        if isinstance(exc, TimeLimitExceeded) and args:
            limit = self.time_limit or app.conf.task_time_limit
            reason = f"time limit: killed after {limit:.0f} s (hard limit)"
            log.error("job %s: %s", args[0], reason)
            # a short-lived handle: no open DB connection is inherited by later forks
            store = Store(settings.db_url, create=False)
            try:
                store.fail_job(int(args[0]), reason)
            finally:
                store.dispose()


# Seconds a refused message waits before it goes back to the queue: with no worker of its
# own database running it comes straight back, and this bounds how often.
REFUSE_PAUSE = 1.0


def _refuse(job_id: int, database: str, store: Store) -> None:
    """Hand a message of another results database back to the queue (to the end of it),
    for a worker that reads that database; counted for the producer's `ocrq status`."""
    log.error(
        "job %s belongs to the results database %s, not this worker's (%s, %s): handed back "
        "for a worker of that database. Start this worker with the producer's OCRQ_DB_URL, "
        "or give each project its own Redis database (OCRQ_BROKER_URL=redis://host:6379/N).",
        job_id,
        database,
        store.identity,
        store.where(),
    )
    count_recovery(settings.broker_url, database, REFUSED)
    time.sleep(REFUSE_PAUSE)
    raise Reject(f"job {job_id} is for results database {database}", requeue=True)


@app.task(name=TASK_NAME, bind=True, max_retries=8, base=OcrTask)
def ocr_job(self, job_id: int, database: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    """Run job `job_id` of the results database whose identity is `database` (messages
    published before identities existed carry none and are run as before)."""
    state = warm.state()
    if database is not None and database != state.store.identity:
        _refuse(int(job_id), database, state.store)
    try:
        outcome = process_job(
            state.store,
            state.engine,
            state.settings.engine,
            state.settings.limits,
            int(job_id),
            state.worker_id,
            max_attempts=settings.worker.max_attempts + self.request.retries,
            before_page=trim_before_large_page,
        )
    except SoftTimeLimitExceeded:
        limit = app.conf.task_soft_time_limit
        reason = f"time limit: still running after {limit:.0f} s"
        state.store.fail_job(int(job_id), reason)
        outcome = Outcome(int(job_id), "failed", error=reason)
    except (OperationalError, DatabaseUnavailable) as exc:
        # The results DB is locked or briefly away: try again later, nothing is lost
        # (the message is acked only when the retry has been published).
        countdown = min(2**self.request.retries, 60)
        log.warning("job %s: database unavailable (%s); retry in %ss", job_id, exc, countdown)
        raise self.retry(exc=exc, countdown=countdown) from exc
    finally:
        release_free_memory(release_caches=state.engine.release_memory)
    return {"job_id": outcome.job_id, "status": outcome.status, "error": outcome.error}
