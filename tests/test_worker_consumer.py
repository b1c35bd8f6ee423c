"""worker.consumer: a lost broker connection whose dead channel cannot even be closed must
not end the worker.

The race, rebuilt on a real Redis: the worker's channel holds a delivered, unacked
message; Redis dies while Celery's collect() closes that channel (injected: both closes
collect() tries raise the connection error a killed Redis gives), so the channel stays
open while the transport drops its client; Celery's last close then reads the dead
client's address. Seen in CI as `AttributeError: 'NoneType' object has no attribute
'hostname'` and a worker that exited 1 instead of reconnecting."""

from __future__ import annotations

import pytest
import redis
from celery import Celery
from celery.worker.consumer import Consumer
from kombu import Queue

from worker.consumer import OcrqConsumer

pytestmark = pytest.mark.integration

DB = 14  # a database of its own: the unacked message is flushed away after


@pytest.fixture
def broker_url(redis_url):
    url = redis_url.rsplit("/", 1)[0] + f"/{DB}"
    yield url
    redis.Redis.from_url(url).flushdb()


def _consumer_mid_race(cls, url: str):
    app = Celery("t", broker=url)
    app.conf.worker_enable_prefetch_count_reduction = False  # needs a started consumer
    consumer = object.__new__(cls)  # only what the connection-error path reads
    consumer.app = app
    consumer.connection = app.connection_for_read()
    channel = consumer.connection.default_channel
    queue = Queue("ocrq-test-race", channel=channel)
    queue.declare()
    consumer.connection.Producer(channel).publish({"job": 1}, routing_key=queue.name)
    assert queue.get(no_ack=False) is not None  # delivered, not acked: as a running job

    real_close, calls = channel.close, []

    def close_while_redis_dies() -> None:
        calls.append(1)
        if len(calls) <= 2:  # collect() closes it twice (channel, then transport's channels)
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        real_close()

    channel.close = close_while_redis_dies
    return consumer


def test_celerys_own_consumer_dies_on_the_race(broker_url):
    consumer = _consumer_mid_race(Consumer, broker_url)
    with pytest.raises(AttributeError, match="hostname"):
        consumer.on_connection_error_after_connected(ConnectionError("lost"))


def test_ours_lets_the_worker_reconnect(broker_url, caplog):
    consumer = _consumer_mid_race(OcrqConsumer, broker_url)
    consumer.on_connection_error_after_connected(ConnectionError("lost"))
    assert consumer.connection is None  # ready for blueprint.restart() to reconnect
    assert "closing its dead channel failed" in caplog.text


def test_the_worker_app_runs_our_consumer():
    from worker.celery import app

    assert app.conf.worker_consumer == "worker.consumer:OcrqConsumer"
