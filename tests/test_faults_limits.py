"""Guards that keep one job from holding a worker: soft and hard task time limits, and the
per-child memory limit. A pathological but valid image (a long page of many text lines,
seconds of OCR) against tiny limits; real celery workers, real Redis of our own."""

from __future__ import annotations

import pytest

from tests.fault_helpers import FAST_RECOVERY, audit, print_row
from tests.fixtures_text import write_pages, write_slow_page
from tests.helpers import QUEUE, Worker, submit, wait_all_final

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.mark.parametrize(
    ("kind", "limits"),
    [
        # soft: SoftTimeLimitExceeded is raised inside the child, the task fails the job
        ("soft", {"OCRQ_TASK_SOFT_LIMIT": "4", "OCRQ_TASK_HARD_LIMIT": "60"}),
        # hard: the pool kills the child (SIGKILL) and starts a new one
        ("hard", {"OCRQ_TASK_SOFT_LIMIT": "600", "OCRQ_TASK_HARD_LIMIT": "4"}),
    ],
)
def test_time_limit_fails_the_job_and_worker_keeps_serving(
    tmp_path, redis_server, sqlite_url, kind, limits
):
    redis, db_url = redis_server, sqlite_url
    # One page of 6 columns x 60 lines (a job is one page): about 8 s of OCR on an idle
    # core, well over the 4 s limit (a 100-line page no longer was, once the recognizer
    # got faster); the pool gives a child a few seconds between TERM and KILL, and the
    # job must still be running then. The small pages take about a second each even on
    # a loaded machine.
    small = sorted(write_pages(tmp_path / "small", 3))
    slow = [write_slow_page(tmp_path / "slow" / "broadsheet.png")]
    slow_ids = submit(db_url, redis.url, slow)
    small_ids = submit(db_url, redis.url, small)
    env = {**FAST_RECOVERY, "OCRQ_VISIBILITY_TIMEOUT": "120", **limits}
    worker = Worker(db_url, redis.url, tmp_path / "worker.log", concurrency=1, **env)
    try:
        wait_all_final(db_url, slow_ids + small_ids, timeout=180, workers=[worker])
        worker.check_alive()
    finally:
        worker.stop()
    result = audit(db_url, slow_ids + small_ids)
    what = "6-column page"
    print_row(f"{kind} time limit 4 s on a {what} (+3 normal pages)", result)
    assert not result.lost and result.duplicated == 0, result
    slow_job = _job(db_url, slow_ids[0])
    assert slow_job["status"] == "failed", slow_job
    assert "time limit" in slow_job["error"], slow_job["error"]
    assert result.regions.get(slow_ids[0], 0) == 0  # no partial rows left behind
    assert all(_job(db_url, i)["status"] == "done" for i in small_ids), result
    if kind == "hard":
        assert "Hard time limit" in worker.text()
        assert "hard limit" in slow_job["error"]


def test_memory_guard_replaces_child_and_work_continues(tmp_path, redis_server, sqlite_url):
    redis, db_url = redis_server, sqlite_url
    truth = write_pages(tmp_path / "scans", 5)
    ids = submit(db_url, redis.url, sorted(truth))
    # 50 MB is far below a warm child (the engine alone is larger), so the pool retires
    # the child after every task, as it would a leaking one.
    env = {**FAST_RECOVERY, "OCRQ_MAX_MEMORY_MB": "50"}
    worker = Worker(db_url, redis.url, tmp_path / "worker.log", concurrency=1, **env)
    try:
        wait_all_final(db_url, ids, timeout=240, workers=[worker])
        worker.check_alive()
    finally:
        worker.stop()
    result = audit(db_url, ids)
    print_row("memory guard 50 MB per child (every task retires its child)", result)
    assert result.done == len(ids) and not result.lost and result.duplicated == 0, result
    pids = {w.split(":")[1] for w in result.workers}
    assert len(pids) >= 3, result.workers  # children were replaced along the way
    assert all(n == 1 for n in result.attempts.values()), result.attempts  # no job re-run


def _job(db_url: str, job_id: int) -> dict:
    from ocrq.storage import Store

    store = Store(db_url, create=False)
    try:
        job = store.get_job(job_id)
        assert job is not None
        return job
    finally:
        store.dispose()


def test_config_keeps_hard_limit_enforceable(monkeypatch):
    """Celery arms the hard timer only after the soft one fires: a soft limit at or above
    the hard one is dropped so the hard limit still applies."""
    from ocrq.config import settings_from_env
    from worker.config import celery_config

    monkeypatch.setenv("OCRQ_TASK_SOFT_LIMIT", "600")
    monkeypatch.setenv("OCRQ_TASK_HARD_LIMIT", "4")
    conf = celery_config(settings_from_env())
    assert conf["task_soft_time_limit"] is None and conf["task_time_limit"] == 4
    monkeypatch.setenv("OCRQ_TASK_SOFT_LIMIT", "3")
    conf = celery_config(settings_from_env())
    assert conf["task_soft_time_limit"] == 3 and conf["task_time_limit"] == 4
    monkeypatch.delenv("OCRQ_TASK_SOFT_LIMIT")
    monkeypatch.delenv("OCRQ_TASK_HARD_LIMIT")
    conf = celery_config(settings_from_env())
    assert (conf["task_soft_time_limit"], conf["task_time_limit"]) == (300, 360)
    assert conf["broker_transport_options"]["visibility_timeout"] == 1080


def test_producer_messages_carry_no_time_limits(tmp_path, redis_server, sqlite_url):
    """The worker's limits decide: a message stamped with the producer's would override
    them (this is how OCRQ_TASK_*_LIMIT on workers came to be ignored)."""
    import json

    submit(sqlite_url, redis_server.url, [str(tmp_path / "x.png")])
    with redis_server.client() as client:
        (raw,) = client.lrange(QUEUE, 0, -1)
    assert json.loads(raw)["headers"]["timelimit"] == [None, None]
