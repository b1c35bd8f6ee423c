"""Resume and retry through the real command line: an interrupted `ocrq submit` re-run
enqueues only what was never sent; `ocrq retry --failed` re-enqueues failed jobs only."""

from __future__ import annotations

import re

import pytest

from ocrq.config import EngineOptions
from ocrq.queue import Enqueuer, queue_name
from ocrq.storage import Store, model_key
from producer.collect import WalkRequest, collect
from producer.submit import plan_jobs, record_jobs
from tests.fault_helpers import audit, print_row
from tests.fixtures_text import write_pages
from tests.helpers import Worker, ocrq_cli, submit, wait_all_final, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C arriving while the producer is between two pipelined chunks."""


def _interrupted_submit(folder, db_url: str, broker_url: str, chunk: int) -> list[int]:
    """The producer's own steps (walk, hash, plan, record, enqueue), stopped by Ctrl-C
    after the first chunk was published and marked."""
    options = EngineOptions(precision="fp32")
    store = Store(db_url)
    found = collect(WalkRequest((folder,), ("*.png",)))
    plan = plan_jobs(store, found.files, model_key("ppocr", None, "fp32"), force=False)
    batch = store.create_batch([str(folder)], ["*.png"], options.as_dict())
    to_send = record_jobs(store, batch, plan, options)

    def progress(_n: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        Enqueuer(broker_url, queue_name("ppocr"), chunk=chunk).send(
            to_send, store, progress=progress
        )
    store.dispose()
    return to_send


def test_resubmit_after_interruption_and_retry_failed(tmp_path, redis_server, sqlite_url):
    redis, db_url = redis_server, sqlite_url
    folder = tmp_path / "scans"
    truth = write_pages(folder, 10)
    # two files that will fail: text saved with a .png name
    for name in ("bad_a.png", "bad_b.png"):
        (folder / name).write_text(f"meeting notes ({name}), not a scan\n")
    ids = _interrupted_submit(folder, db_url, redis.url, chunk=4)
    assert len(ids) == 12
    assert redis.queue_length() == 4  # only the first chunk got out

    out = ocrq_cli(["submit", str(folder), "-p", "*.png", "--db", db_url], redis.url)
    assert out.returncode == 0, out.stderr
    # 8 rows never published are sent now; the 4 already queued are left alone
    assert re.search(r"12 files, 8 queued \(8 resumed\)", out.stdout), out.stdout
    assert "4 still queued" in out.stdout, out.stdout
    assert redis.queue_length() == 12

    worker = Worker(db_url, redis.url, tmp_path / "worker.log", concurrency=2)
    try:
        wait_all_final(db_url, ids, timeout=240, workers=[worker])
        first = audit(db_url, ids)
        print_row("submit interrupted after 1 of 3 chunks, then re-run", first)
        assert first.done == 10 and first.failed == 2, first
        assert not first.lost and first.duplicated == 0
        # each job ran exactly once: the re-run did not publish the first chunk again
        assert set(first.attempts.values()) == {1}, first.attempts

        again = ocrq_cli(["submit", str(folder), "-p", "*.png", "--db", db_url], redis.url)
        assert "12 files, 0 queued" in again.stdout, again.stdout
        assert "10 already done" in again.stdout and "2 failed earlier" in again.stdout

        # fix the two bad files, then ask for the failed ones again
        from PIL import Image

        page = Image.open(next(iter(truth)))
        for name in ("bad_a.png", "bad_b.png"):
            page.save(folder / name)
        retried = ocrq_cli(["retry", "--failed", "--db", db_url], redis.url)
        assert retried.returncode == 0, retried.stderr
        assert "re-enqueued 2 failed ppocr jobs" in retried.stdout, retried.stdout
        wait_all_final(db_url, ids, timeout=240, workers=[worker])
    finally:
        worker.stop()
    final = audit(db_url, ids)
    print_row("ocrq retry --failed after fixing 2 bad files", final)
    assert final.done == 12 and not final.lost and final.duplicated == 0, final
    assert sorted(final.attempts.values()) == [1] * 10 + [2] * 2  # only the 2 re-ran


def test_requeue_lost_finds_a_message_taken_off_the_queue_and_never_recorded(
    tmp_path, redis_server, sqlite_url
):
    """The kombu window the soak test hit: BRPOP took the message, the worker died before
    it reached the unacked hash. Here we take it off ourselves; requeue_lost sends it
    again, and only it."""
    from ocrq.queue import broker_job_ids, nothing_can_be_lost, requeue_lost

    redis, db_url = redis_server, sqlite_url
    ids = submit(db_url, redis.url, sorted(write_pages(tmp_path / "scans", 6)))
    enqueuer = Enqueuer(redis.url, queue_name("ppocr"))
    store = Store(db_url, create=False)
    assert broker_job_ids(redis.url, enqueuer.queue) == set(ids)
    assert nothing_can_be_lost(store, redis.url, queue_name)  # the O(1) pre-check
    assert requeue_lost(store, enqueuer, grace_seconds=0) == []  # nothing lost yet
    with redis.client() as client:
        client.rpop(enqueuer.queue)  # the oldest message: job ids[0]
    assert not nothing_can_be_lost(store, redis.url, queue_name)  # 5 messages, 6 jobs
    assert broker_job_ids(redis.url, enqueuer.queue) == set(ids[1:])
    assert requeue_lost(store, enqueuer, grace_seconds=3600) == []  # too recent to judge
    assert requeue_lost(store, enqueuer, grace_seconds=0, recheck_after=0.5) == [ids[0]]
    assert redis.queue_length() == 6
    assert nothing_can_be_lost(store, redis.url, queue_name)
    worker = Worker(db_url, redis.url, tmp_path / "worker.log", concurrency=2)
    try:
        wait_all_final(db_url, ids, timeout=180, workers=[worker])
        # while a worker holds messages they sit in `unacked`: not reported lost
        wait_for(lambda: redis.unacked() == 0, 30, "acks")
        assert requeue_lost(store, enqueuer, grace_seconds=0) == []
    finally:
        worker.stop()
        store.dispose()
    result = audit(db_url, ids)
    print_row("a message lost between BRPOP and unacked, found by requeue_lost", result)
    assert result.done == 6 and not result.lost and result.duplicated == 0, result
    assert set(result.attempts.values()) == {1}


def test_worker_resends_lost_messages_by_itself(tmp_path, redis_server, sqlite_url):
    """The same loss with nobody at the keyboard: the worker's own periodic check
    (OCRQ_RECONCILE_INTERVAL) re-sends the job, which then completes once."""
    redis, db_url = redis_server, sqlite_url
    ids = submit(db_url, redis.url, sorted(write_pages(tmp_path / "scans", 4)))
    with redis.client() as client:
        client.rpop(queue_name("ppocr"))  # job ids[0]'s message is gone
    env = {"OCRQ_RECONCILE_INTERVAL": "2", "OCRQ_RECONCILE_GRACE": "1"}
    worker = Worker(db_url, redis.url, tmp_path / "worker.log", concurrency=2, **env)
    try:
        wait_all_final(db_url, ids, timeout=180, workers=[worker])
    finally:
        worker.stop()
    assert f"re-sent 1 jobs whose message was lost: [{ids[0]}]" in worker.text()
    result = audit(db_url, ids)
    print_row("a lost message re-sent by the worker's periodic check", result)
    assert result.done == 4 and not result.lost and result.duplicated == 0, result
    assert set(result.attempts.values()) == {1}


def test_a_message_in_transit_is_not_sent_twice(tmp_path, redis_server, sqlite_url):
    """The race CI hit: the checking worker's own BRPOP took a message off the queue and
    its event loop had not recorded it as unacked yet. One check sees it missing; the
    next, after kombu recorded it, must not publish a second copy. A message still
    missing at the second check is sent again, once."""
    import json

    from ocrq.queue import LostMessageCheck

    redis, db_url = redis_server, sqlite_url
    ids = submit(db_url, redis.url, sorted(write_pages(tmp_path / "scans", 3)))
    queue = queue_name("ppocr")
    store = Store(db_url, create=False)
    check = LostMessageCheck(Enqueuer(redis.url, queue), grace_seconds=0)
    with redis.client() as client:
        in_transit = client.rpop(queue)  # job ids[0], popped and not yet recorded
        client.rpop(queue)  # job ids[1], popped by a worker killed right then
    assert check.run(store) == []  # both only suspected so far
    assert check.suspects == {ids[0], ids[1]}
    with redis.client() as client:  # kombu's QoS.append lands the first one
        client.hset("unacked", "tag-0", json.dumps([json.loads(in_transit), "", queue]))
    assert check.run(store) == [ids[1]]
    assert redis.queue_length() == 2 and redis.unacked() == 1  # no second copy of ids[0]
    assert check.run(store) == [] and check.suspects == set()
    store.dispose()
