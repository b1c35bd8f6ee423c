"""The one task: OCR a job by id. The message carries only the id (JSON); the job row
says what to read and with which engine options."""

from __future__ import annotations

import logging

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from sqlalchemy.exc import OperationalError

from ocrq.errors import DatabaseUnavailable
from ocrq.queue import TASK_NAME
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


@app.task(name=TASK_NAME, bind=True, max_retries=8, base=OcrTask)
def ocr_job(self, job_id: int) -> dict:  # type: ignore[no-untyped-def]
    state = warm.state()
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
