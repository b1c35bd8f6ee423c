"""Celery's consumer, made to survive one kombu race when the broker connection is lost.

On a lost Redis connection Celery collects the connection, then closes it inside
`ignore_errors`, which ignores connection errors only. When the collect left the default
channel behind without its client (seen here when Redis was killed mid-run), the channel's
close reads the client's address and raises AttributeError, which ended the whole worker
(exit 1) instead of reconnecting. The channel is dead either way: its unacked messages go
back to the queue by the visibility timeout sweep, as for any dead worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery.worker.consumer import Consumer

log = logging.getLogger("ocrq.worker")


class OcrqConsumer(Consumer):
    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        connection = self.connection
        if connection is not None:
            connection.close = _tolerant_close(connection.close)  # what Celery calls below
        super().on_connection_error_after_connected(exc)


def _tolerant_close(close: Callable[[], object]) -> Callable[[], None]:
    """`close`, with the race's AttributeError logged instead of raised."""

    def close_dead_connection() -> None:
        try:
            close()
        except AttributeError as err:
            log.warning("broker connection lost; closing its dead channel failed (%s)", err)

    return close_dead_connection
