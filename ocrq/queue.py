"""The queue protocol, shared by both sides: the task's name, one queue per engine,
publishing job ids in pipelined chunks, and the check that finds jobs whose message Redis
lost and sends them again.

It sits below both the producer and the worker, so neither imports the other: the
producer publishes by task name through a Celery app of its own (`send_task`), and the
worker's Celery app (`worker/celery.py`) registers the task under the same name.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Sequence

import redis
from celery import Celery
from sqlalchemy import func, select

from ocrq.config import redact_url
from ocrq.errors import BrokerUnavailable
from ocrq.storage import QUEUED, RUNNING, Job, Store

TASK_NAME = "ocrq.ocr_job"

Progress = Callable[[int], None]


def queue_name(engine: str) -> str:
    """One queue per engine: a worker only ever receives jobs for the model it holds warm."""
    return f"ocrq.{engine}"


def is_redis(broker_url: str) -> bool:
    """Whether the broker is Redis, whose keys the lost-message checks and the queue
    depths read (TCP, TLS or a unix socket); other brokers have none of them."""
    return broker_url.startswith(("redis://", "rediss://", "unix://"))


def producer_app(broker_url: str) -> Celery:
    """A Celery app that only publishes: JSON on the wire, as the workers accept."""
    app = Celery("ocrq-producer", broker=broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True)
    return app


class Enqueuer:
    """Publishes job ids through Celery in pipelined chunks (kombu's Redis publish batch:
    one round trip per chunk, not per message)."""

    def __init__(self, broker_url: str, queue: str, chunk: int = 1000, retries: int = 6) -> None:
        self.app = producer_app(broker_url)
        self.broker_url = broker_url
        self.queue = queue
        self.chunk = chunk
        self.retries = retries

    def check_broker(self) -> None:
        url = self.broker_url
        try:
            with self.app.connection_for_write(url) as conn:
                conn.ensure_connection(max_retries=1, timeout=3)
        except Exception as exc:
            raise BrokerUnavailable(
                f"cannot reach the broker at {redact_url(url)} ({type(exc).__name__}). "
                "Start Redis (`redis-server`, or `docker compose up -d redis`) or set "
                "OCRQ_BROKER_URL; or run without Redis: `ocrq run DIR`."
            ) from exc

    def send(
        self,
        job_ids: Sequence[int],
        store: Store,
        progress: Progress | None = None,
        again: bool = False,
    ) -> list[int]:
        """Publish the jobs of `store` no one has published yet (each chunk claimed in the
        database first, so a second producer racing over the same jobs skips them), or
        with `again` every one of `job_ids` (messages that were lost). Each message
        carries the database's identity. Returns the ids published."""
        sent: list[int] = []
        for start in range(0, len(job_ids), self.chunk):
            chunk = list(job_ids[start : start + self.chunk])
            mine = chunk if again else store.claim_unsent(chunk)
            try:
                self._publish_with_retry(mine, store.identity)
            except Exception:
                if not again:
                    store.unclaim(mine)  # a resumed submit publishes them
                raise
            if again:
                store.mark_enqueued(mine)
            sent += mine
            if progress:
                progress(len(chunk))
        return sent

    def _publish_with_retry(self, chunk: list[int], database: str) -> None:
        # A chunk that failed part-way is sent again whole: a job delivered twice is
        # harmless (the worker skips a finished job and replaces rows on rerun).
        for attempt in range(self.retries + 1):
            try:
                self._publish(chunk, database)
                return
            except Exception:
                if attempt == self.retries:
                    raise
                time.sleep(min(0.5 * 2**attempt, 10.0))

    def _publish(self, chunk: Iterable[int], database: str) -> None:
        # a fresh connection per chunk: after a broker restart the retry starts clean
        with (
            self.app.connection_for_write(self.broker_url) as conn,
            conn.Producer() as producer,
            producer.batch(self.chunk),
        ):
            for job_id in chunk:
                # No time limits in the message: Celery would stamp this process's
                # task_(soft_)time_limit into every header and the worker would obey them
                # over its own OCRQ_TASK_*_LIMIT. The worker's settings must decide.
                self.app.send_task(
                    TASK_NAME,
                    (job_id, database),
                    producer=producer,
                    queue=self.queue,
                    retry=False,
                    ignore_result=True,
                    time_limit=None,
                    soft_time_limit=None,
                )


# ---- lost messages ---------------------------------------------------------------------
#
# kombu's Redis transport takes a message off the queue (BRPOP) and only then records it
# in the `unacked` hash; a worker main process killed between the two loses that message
# for good (seen in the soak test: 1 of ~415 deliveries under repeated kill -9). The job
# row still says queued, so nothing else would ever send it again. `requeue_lost` finds
# such jobs by comparing the database with what Redis holds and publishes them again; a
# job sent twice by a race here is harmless (a finished job is skipped, rows replaced).

_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")  # kombu's priority lists


def _job_id_of(payload: dict, database: str | None = None) -> int | None:
    """The job id an ocrq message names, if it is for `database` (or names none: the
    older shape, job id alone); None for any other message."""
    headers = payload.get("headers") or {}
    if headers.get("task") != TASK_NAME or payload.get("content-type") != "application/json":
        return None
    try:
        body = payload["body"]
        if (payload.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        if database is not None and len(args) > 1 and args[1] != database:
            return None
        return int(args[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def broker_job_ids(broker_url: str, queue: str, database: str | None = None) -> set[int] | None:
    """Ids of jobs that have a message in Redis, waiting in `queue` or delivered and not
    yet acknowledged, for `database` (messages of another results database behind the
    same Redis are not its jobs); None when the broker is not Redis."""
    if not is_redis(broker_url):
        return None

    client = redis.Redis.from_url(broker_url)
    try:
        with client.pipeline(transaction=True) as pipe:  # one consistent snapshot
            for suffix in _PRIORITY_SUFFIXES:
                pipe.lrange(queue + suffix, 0, -1)
            pipe.hvals("unacked")
            *lists, unacked = pipe.execute()
    finally:
        client.close()
    ids: set[int] = set()
    for raw in (m for items in lists for m in items):
        job_id = _job_id_of(json.loads(raw), database)
        if job_id is not None:
            ids.add(job_id)
    for raw in unacked:
        job_id = _job_id_of(json.loads(raw)[0], database)
        if job_id is not None:
            ids.add(job_id)
    return ids


def nothing_can_be_lost(store: Store, broker_url: str, queue_of: Callable[[str], str]) -> bool:
    """The periodic check's cheap first step: True when Redis holds at least as many ocrq
    messages (waiting in each engine's queue, or delivered and unacknowledged) as the
    database has published, unfinished jobs, so no job can be missing its message.

    LLEN and HLEN are O(1); the full comparison (`broker_job_ids`) reads and parses every
    message, which with 100,000 jobs waiting is ~100 MB from Redis every round on every
    worker. A stale extra message (a job sent twice, its first copy already done) can mask
    a loss until it is consumed; the check finds it then."""
    if not is_redis(broker_url):
        return False
    query = (
        select(Job.engine, func.count())
        .where(Job.status.in_((QUEUED, RUNNING)), Job.enqueued_at.is_not(None))
        .group_by(Job.engine)
    )
    with store.read() as conn:
        unfinished = dict(conn.execute(query).all())
    if not unfinished:
        return True
    client = redis.Redis.from_url(broker_url)
    try:
        with client.pipeline(transaction=True) as pipe:
            for engine in unfinished:
                for suffix in _PRIORITY_SUFFIXES:
                    pipe.llen(queue_of(engine) + suffix)
            pipe.hlen("unacked")
            messages = sum(pipe.execute())
    finally:
        client.close()
    return messages >= sum(unfinished.values())


class LostMessageCheck:
    """Finds the jobs of `engine` (whose queue `enqueuer` sends to) that are queued or
    running, were published more than `grace_seconds` ago, and have no message left in
    Redis, and publishes them again once they were missing in two checks in a row.

    One check is not enough: kombu pops a message (BRPOP) before it records it as
    unacked, and the worker running the check is the one whose event loop delivers its
    own popped message, so a message in that gap is seen missing although nothing is
    lost. Re-sending it made a second message (CI saw one left in the queue after all
    jobs were done); a message in transit has landed by the next check."""

    def __init__(
        self,
        enqueuer: Enqueuer,
        grace_seconds: float = 60.0,
        batch_id: int | None = None,
        engine: str = "ppocr",
    ) -> None:
        self.enqueuer = enqueuer
        self.grace_seconds = grace_seconds
        self.batch_id = batch_id
        self.engine = engine
        self.suspects: set[int] = set()

    def run(self, store: Store) -> list[int]:
        """One check: returns the ids published again (missing now and last time)."""
        missing = self._missing(store)
        lost = sorted(missing & self.suspects)
        self.suspects = missing - set(lost)
        if lost:
            self.enqueuer.send(lost, store, again=True)
            count_recovery(self.enqueuer.broker_url, store.identity, RESENT, len(lost))
        return lost

    def forget(self) -> None:
        """Nothing can be missing right now (the cheap pre-check said so)."""
        self.suspects = set()

    def _missing(self, store: Store) -> set[int]:
        found = missing_job_ids(
            store,
            self.enqueuer.broker_url,
            self.enqueuer.queue,
            self.engine,
            self.grace_seconds,
            self.batch_id,
        )
        return found or set()


def missing_job_ids(
    store: Store,
    broker_url: str,
    queue: str,
    engine: str,
    grace_seconds: float,
    batch_id: int | None = None,
) -> set[int] | None:
    """One look: the jobs of `engine` that are queued or running, were published more
    than `grace_seconds` ago, and have no message in `queue` or among the unacked ones;
    None when the broker is not Redis. A message being handed to a worker can look
    missing for a moment (`LostMessageCheck` looks twice)."""
    # Redis first, then the database: a job acked in between is final in the
    # database already (acks_late acks after the result is written), so it is
    # not picked up.
    present = broker_job_ids(broker_url, queue, store.identity)
    if present is None:
        return None
    query = select(Job.id).where(
        Job.status.in_((QUEUED, RUNNING)),
        Job.enqueued_at.is_not(None),
        Job.enqueued_at < time.time() - grace_seconds,
        Job.engine == engine,  # other engines' jobs wait in other queues
    )
    if batch_id is not None:
        query = query.where(Job.batch_id == batch_id)
    with store.read() as conn:
        return {job_id for (job_id,) in conn.execute(query) if job_id not in present}


def stranded_jobs(
    store: Store,
    broker_url: str,
    grace_seconds: float = 10.0,
    batch_id: int | None = None,
    recheck_after: float = 1.0,
) -> int:
    """How many queued or running jobs have had no message in Redis for two looks
    `recheck_after` s apart (0 when the broker is not Redis): jobs no worker will run
    until they are sent again (`ocrq retry --lost`). A worker reading another results
    database takes their messages and drops them (`UnknownJob`)."""
    engines = store.pending_engines(batch_id)
    first = {
        engine: missing_job_ids(
            store, broker_url, queue_name(engine), engine, grace_seconds, batch_id
        )
        for engine in engines
    }
    if not any(first.values()):
        return 0
    time.sleep(recheck_after)
    count = 0
    for engine, ids in first.items():
        if ids:
            again = missing_job_ids(
                store, broker_url, queue_name(engine), engine, grace_seconds, batch_id
            )
            count += len(ids & (again or set()))
    return count


def requeue_lost(
    store: Store,
    enqueuer: Enqueuer,
    grace_seconds: float = 60.0,
    batch_id: int | None = None,
    engine: str = "ppocr",
    recheck_after: float = 2.0,
) -> list[int]:
    """The operator's one-shot `LostMessageCheck`: checks, and when something looks
    missing checks again `recheck_after` seconds later. Returns the ids published again."""
    check = LostMessageCheck(enqueuer, grace_seconds, batch_id, engine)
    check.run(store)
    if not check.suspects:
        return []
    time.sleep(recheck_after)
    return check.run(store)


def queue_depths(broker_url: str) -> dict[str, int] | None:
    """Messages waiting in each non-empty ocrq queue of a Redis broker; None when the
    broker is not Redis or cannot be read right now."""
    if not is_redis(broker_url):
        return None
    try:
        client = redis.Redis.from_url(broker_url, socket_connect_timeout=1, socket_timeout=2)
        try:
            depths = {
                key.decode(): client.llen(key)
                for key in client.scan_iter(match="ocrq.*", count=100)
                if client.type(key) == b"list"
            }
        finally:
            client.close()
    except redis.RedisError:
        return None
    return {name: n for name, n in sorted(depths.items()) if n}


# ---- what recovery did, for `ocrq status` -------------------------------------------------
#
# Counted in Redis, under each results database's identity: a worker that refuses another
# database's message cannot write into that database, and the producer's status reads
# both. A Redis that is flushed or restarted without persistence starts the counts again.

RECOVERY_KEY = "ocrq:recovery:"  # + database identity: a hash of counts
REFUSED = "refused"  # messages a worker on another results database handed back
RESENT = "resent"  # lost messages published again
RECOVERY_KINDS = (REFUSED, RESENT)


def count_recovery(broker_url: str, database: str, kind: str, n: int = 1) -> None:
    """Add `n` to `database`'s count of `kind` (nothing where the broker is not Redis)."""
    if not is_redis(broker_url) or n <= 0:
        return
    client = redis.Redis.from_url(broker_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.hincrby(RECOVERY_KEY + database, kind, n)
    finally:
        client.close()


def recovery_counts(broker_url: str, database: str) -> dict[str, int] | None:
    """`database`'s recovery counts; None where the broker is not Redis or cannot be read."""
    if not is_redis(broker_url):
        return None
    try:
        client = redis.Redis.from_url(broker_url, socket_connect_timeout=1, socket_timeout=2)
        try:
            raw = client.hgetall(RECOVERY_KEY + database)
        finally:
            client.close()
    except redis.RedisError:
        return None
    return {kind: int(raw.get(kind.encode(), 0)) for kind in RECOVERY_KINDS}
