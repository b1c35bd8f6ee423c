"""The one task: OCR a job by id. The message carries only the id (JSON); the job row
says what to read and with which engine options."""

from __future__ import annotations

import logging
import os

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from ocrq.errors import DatabaseUnavailable
from ocrq.process import Outcome, process_job
from worker import warm
from worker.app import app

log = logging.getLogger("ocrq.worker")

TASK_NAME = "ocrq.ocr_job"
MAX_ATTEMPTS = int(os.environ.get("OCRQ_MAX_ATTEMPTS", "3"))


@app.task(name=TASK_NAME, bind=True, max_retries=8)
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
            max_attempts=MAX_ATTEMPTS + self.request.retries,
        )
    except SoftTimeLimitExceeded:
        limit = app.conf.task_soft_time_limit
        reason = f"time limit: still running after {limit:.0f} s"
        state.store.fail_job(int(job_id), reason)
        outcome = Outcome(int(job_id), "failed", error=reason)
    except (OperationalError, DatabaseUnavailable) as exc:
        # The results DB is locked or briefly away: try again later, nothing is lost
        # (the message is acked only when the retry has been published).
        countdown = min(2 ** self.request.retries, 60)
        log.warning("job %s: database unavailable (%s); retry in %ss", job_id, exc, countdown)
        raise self.retry(exc=exc, countdown=countdown) from exc
    return {"job_id": outcome.job_id, "status": outcome.status, "error": outcome.error}
