"""Faults injected for real: kill -9 of worker children and of whole workers, a Redis
killed and restarted mid-run, a locked results database. Real redis-server (our own,
on a free port), real `celery -A worker worker` processes, real OCR; each test counts
what came out: every job final exactly once, none lost, no duplicated region rows.

Run with `-s` to see the report rows (`FAULT-TABLE | fault | submitted | done | ...`).
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from tests.fault_helpers import FAST_RECOVERY, audit, kill9, max_cer, print_row, running_jobs
from tests.fixtures_text import write_pages, write_slow_pages
from tests.helpers import Worker, add_jobs, enqueue, submit, wait_all_final, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# Clean rendered text: PP-OCRv6 reads it almost perfectly. A lost or doubled line on a
# 12-line page alone is > 8 % CER, so 5 % catches both without flaking on a digit slip.
MAX_CER = 0.05


def _pid_of(job: dict) -> int:
    # worker column: host:pid:coreN
    return int(job["worker"].split(":")[1])


def test_kill9_worker_child_mid_task(tmp_path, durable_redis_server, sqlite_url):
    redis, db_url = durable_redis_server, sqlite_url
    truth = write_slow_pages(tmp_path / "scans", 4, lines=12)
    ids = submit(db_url, redis.url, sorted(truth))
    worker = Worker(db_url, redis.url, tmp_path / "worker.log", concurrency=2, **FAST_RECOVERY)
    try:
        victims = wait_for(lambda: running_jobs(db_url), 120, "a running job")
        victim = victims[0]
        kill9(_pid_of(victim))
        killed_at = time.monotonic()
        wait_all_final(db_url, ids, timeout=180, workers=[worker])
        recovery = time.monotonic() - killed_at
        worker.check_alive()  # the main process replaced its child and kept serving
    finally:
        worker.stop()
    result = audit(db_url, ids)
    print_row(f"kill -9 one worker child mid-task (all final {recovery:.0f} s after)", result)
    assert result.done == len(ids) and not result.lost and result.duplicated == 0, result
    assert result.attempts[victim["id"]] >= 2  # it really was interrupted and run again
    assert max_cer(db_url, truth) < MAX_CER
    # the killed child's message was requeued at once (reject_on_worker_lost), not after
    # the visibility timeout: 4 pages at ~1-2 s each on 2 children
    assert recovery < 120, recovery


def test_kill9_whole_worker_then_new_worker(tmp_path, durable_redis_server, sqlite_url):
    redis, db_url = durable_redis_server, sqlite_url
    truth = write_slow_pages(tmp_path / "scans", 4, lines=12)
    ids = submit(db_url, redis.url, sorted(truth))
    first = Worker(db_url, redis.url, tmp_path / "first.log", concurrency=2, **FAST_RECOVERY)
    try:
        wait_for(lambda: running_jobs(db_url), 120, "a running job")
        interrupted = {j["id"] for j in running_jobs(db_url)}
        first.kill_all()
    finally:
        first.stop()
    killed_at = time.monotonic()
    # The messages the dead worker held are parked in Redis's unacked hash, not lost.
    assert redis.unacked() >= 1
    second = Worker(db_url, redis.url, tmp_path / "second.log", concurrency=2, **FAST_RECOVERY)
    try:
        wait_all_final(db_url, ids, timeout=240, workers=[second], broker=redis)
        recovery = time.monotonic() - killed_at
    finally:
        second.stop()
    result = audit(db_url, ids)
    print_row(f"kill -9 whole worker, new one started (all final {recovery:.0f} s after)", result)
    assert result.done == len(ids) and not result.lost and result.duplicated == 0, result
    assert all(result.attempts[i] >= 2 for i in interrupted), (interrupted, result.attempts)
    assert max_cer(db_url, truth) < MAX_CER
    assert redis.unacked() == 0 and redis.queue_length() == 0
    # bound: visibility timeout (8 s) + restore sweep (1 s) + the remaining work
    assert recovery < 8 + 1 + 120, recovery


def test_redis_killed_and_restarted_mid_run(tmp_path, durable_redis_server, sqlite_url):
    redis, db_url = durable_redis_server, sqlite_url
    truth = write_pages(tmp_path / "scans", 16)
    store, ids = add_jobs(db_url, sorted(truth))
    worker = Worker(db_url, redis.url, tmp_path / "worker.log", concurrency=2, **FAST_RECOVERY)
    worker.wait_children(2)
    chunks = []
    restarted = threading.Event()

    def outage() -> None:
        redis.restart(down_seconds=3.0)
        restarted.set()

    def progress(n: int) -> None:
        # after the first chunk is in: Redis dies (kill -9) and is back 3 s later
        chunks.append(n)
        if len(chunks) == 1:
            redis.kill()
            threading.Thread(target=outage, daemon=True).start()

    try:
        started = time.monotonic()
        enqueue(store, redis.url, ids, chunk=4, progress=progress)
        enqueue_seconds = time.monotonic() - started
        assert restarted.wait(30)
        wait_all_final(db_url, ids, timeout=240, workers=[worker])
        worker.check_alive()
    finally:
        worker.stop()
        store.dispose()
    result = audit(db_url, ids)
    print_row("Redis kill -9 mid-run, back after 3 s (AOF fsync always)", result)
    assert enqueue_seconds >= 2.5  # the producer waited the outage out (backoff retries)
    assert sum(chunks) == len(ids)
    assert result.done == len(ids) and not result.lost and result.duplicated == 0, result
    assert max_cer(db_url, truth) < MAX_CER
    log = worker.text()
    assert "Connection to broker lost" in log or "Cannot connect to redis" in log, worker.tail()


def test_results_db_locked_for_longer_than_busy_timeout(tmp_path, durable_redis_server, sqlite_url):
    redis, db_url = durable_redis_server, sqlite_url
    truth = write_pages(tmp_path / "scans", 6)
    ids = submit(db_url, redis.url, sorted(truth))
    worker = Worker(db_url, redis.url, tmp_path / "worker.log", concurrency=2, **FAST_RECOVERY)
    db_file = db_url.removeprefix("sqlite:///")
    try:
        wait_for(lambda: audit(db_url, ids).done >= 1, 120, "a first job done")
        # Another process holds the write lock for 14 s: longer than the 10 s busy
        # timeout, so workers get "database is locked" and must retry, not drop jobs.
        lock = sqlite3.connect(db_file, timeout=30, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        locked_at = time.monotonic()
        time.sleep(14)
        lock.execute("ROLLBACK")
        lock.close()
        assert time.monotonic() - locked_at >= 14
        wait_all_final(db_url, ids, timeout=240, workers=[worker])
    finally:
        worker.stop()
    result = audit(db_url, ids)
    print_row("results DB exclusively locked 14 s (busy timeout 10 s)", result)
    assert result.done == len(ids) and not result.lost and result.duplicated == 0, result
    assert "database unavailable" in worker.text(), worker.tail()  # the retry path ran
    assert max_cer(db_url, truth) < MAX_CER
