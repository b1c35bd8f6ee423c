"""Celery configuration, derived from ocrq Settings (`ocrq/config.py` reads `OCRQ_*`).

Delivery guarantees: JSON only (no pickle on the wire), acks_late + reject_on_worker_lost
+ prefetch 1, so a job whose worker dies is redelivered; results are written
idempotently (storage replaces a job's rows), so redelivery never duplicates.
"""

from __future__ import annotations

from typing import Any

from ocrq.config import Settings
from ocrq.queue import queue_name
from ocrq.threads import allowed_cores


def celery_config(settings: Settings) -> dict[str, Any]:
    options = settings.worker
    soft: float | None = options.soft_limit
    hard = options.hard_limit if options.hard_limit is not None else options.soft_limit + 60.0
    if soft >= hard:
        # Celery's prefork pool arms the hard limit only once the soft one has fired, so a
        # soft limit at or above the hard one would leave the hard limit never enforced.
        soft = None
    # Longer than the longest task, or a slow task would be handed to a second worker.
    visibility = options.visibility_timeout or max(3 * hard, 600.0)
    memory_kb = int(options.max_memory_mb * 1024)
    return {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_soft_time_limit": soft,
        "task_time_limit": hard,
        "worker_concurrency": options.concurrency or len(allowed_cores()),
        "worker_max_memory_per_child": memory_kb,
        "task_default_queue": queue_name(settings.engine.engine),
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_transport_options": {
            "visibility_timeout": visibility,
            # sweep for messages of dead workers every `restore_interval` seconds
            "unacked_restore_interval": options.restore_interval,
            "unacked_restore_throttle": 1,
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 10,
        },
        # Reconnects where Celery's own consumer died on a kombu race (worker/consumer.py).
        "worker_consumer": "worker.consumer:OcrqConsumer",
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }
