"""The Celery app: `celery -A worker worker` finds it as `worker.app`."""

from __future__ import annotations

import logging

from billiard.process import current_process
from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from ocrq.config import settings_from_env
from worker import warm
from worker.config import celery_config

settings = settings_from_env()
app = Celery("ocrq", broker=settings.broker_url, include=["worker.tasks"])
app.conf.update(celery_config(settings))


@worker_process_init.connect
def _init_child(**_kwargs: object) -> None:
    # billiard numbers pool children 0..N-1 and reuses a dead child's index for its
    # replacement, so each child keeps its own core across restarts.
    logging.basicConfig(level=logging.INFO)
    warm.init_process(getattr(current_process(), "index", 0))


@worker_process_shutdown.connect
def _shutdown_child(**_kwargs: object) -> None:
    warm.reset()
