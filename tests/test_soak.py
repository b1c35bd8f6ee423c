"""Soak (`make soak`, not in the default suite): thousands of tiny jobs through a real
Redis and real celery workers while worker children are killed with SIGKILL at random and,
now and then, the whole worker with them; then the counts must add up.

Size and pace from the environment: OCRQ_SOAK_JOBS (default 3000), OCRQ_SOAK_KILL_EVERY
(mean seconds between kills, default 3), OCRQ_SOAK_WHOLE_EVERY (every Nth kill takes the
whole worker, default 6), OCRQ_SOAK_SEED.
"""

from __future__ import annotations

import contextlib
import os
import random
import time

import pytest
from PIL import Image

from ocrq.queue import Enqueuer, requeue_lost
from ocrq.storage import FAILED, Store
from tests.fault_helpers import FAST_RECOVERY, audit, print_row
from tests.helpers import QUEUE, Worker, add_jobs, enqueue, wait_for

pytestmark = [pytest.mark.soak, pytest.mark.integration]

WORDS = ("amber", "basil", "cedar", "delta", "ember", "fjord", "gamma", "hazel", "indigo")


def _tiny_images(folder, count: int) -> list[str]:
    """One short rendered line each, every file different (no dedupe)."""
    from tests.fixtures_text import render_line

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        text = f"{WORDS[i % 9]} {i}"
        path = folder / f"t{i:05d}.png"
        # 24 px: a strip the detector reads at native scale (~0.1 s a job here); a 32 px
        # line is upscaled to the 736 px page minimum and takes ~20x longer
        Image.fromarray(render_line(text, height=24)).save(path)
        paths.append(str(path))
    return paths


def test_soak_random_kills(tmp_path, durable_redis_server, sqlite_url):
    redis, db_url = durable_redis_server, sqlite_url
    jobs = int(os.environ.get("OCRQ_SOAK_JOBS", "3000"))
    kill_every = float(os.environ.get("OCRQ_SOAK_KILL_EVERY", "3"))
    whole_every = int(os.environ.get("OCRQ_SOAK_WHOLE_EVERY", "6"))
    rng = random.Random(int(os.environ.get("OCRQ_SOAK_SEED", "5")))
    paths = _tiny_images(tmp_path / "tiny", jobs)
    store, ids = add_jobs(db_url, paths)
    started = time.monotonic()
    enqueue(store, redis.url, ids)
    enqueue_s = time.monotonic() - started
    store.dispose()

    # the workers' own lost-message check runs every 5 s for jobs published > 15 s ago
    env = {
        **FAST_RECOVERY,
        "OCRQ_VISIBILITY_TIMEOUT": "10",
        "OCRQ_RECONCILE_INTERVAL": "5",
        "OCRQ_RECONCILE_GRACE": "15",
    }
    generation = 0

    def new_worker() -> Worker:
        nonlocal generation
        generation += 1
        w = Worker(db_url, redis.url, tmp_path / f"worker{generation}.log", 2, **env)
        # Celery gives up ("Could not start worker processes") when a child dies before
        # the pool first came up, so the kills start once the worker is ready. (A
        # supervisor restart policy covers that case in production.)
        wait_for(lambda: " ready." in w.text() or w.proc.poll() is not None, 120, "ready")
        return w

    worker = new_worker()
    child_kills = whole_kills = worker_exits = 0
    deadline = time.monotonic() + 3600
    check = Store(db_url, create=False)
    enqueuer = Enqueuer(redis.url, QUEUE)
    recovered: list[int] = []
    finished, progress_at = -1, time.monotonic()
    try:
        while True:
            counts = check.counts()
            if counts["done"] + counts["failed"] >= jobs:
                break
            assert time.monotonic() < deadline, counts
            if counts["done"] + counts["failed"] != finished:
                finished, progress_at = counts["done"] + counts["failed"], time.monotonic()
            elif time.monotonic() - progress_at > 60:
                # Still stuck although the workers check every 5 s: the operator's
                # `requeue_lost` as a last resort; anything it finds is counted (and
                # means the workers' own check missed it).
                recovered += requeue_lost(check, enqueuer, grace_seconds=10)
                progress_at = time.monotonic()
            time.sleep(rng.expovariate(1 / kill_every))
            if (child_kills + whole_kills + 1) % whole_every == 0:
                worker.kill_all()
                whole_kills += 1
                worker = new_worker()
                continue
            if worker.proc.poll() is not None:  # counted, and replaced like a supervisor would
                worker_exits += 1
                worker = new_worker()
                continue
            kids = worker.children()
            if kids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rng.choice(kids), 9)
                child_kills += 1
        elapsed = time.monotonic() - started
    finally:
        check.dispose()
        worker.stop()
    resent_by_workers = sum(
        log.read_text(errors="replace").count("whose message was lost")
        for log in tmp_path.glob("worker*.log")
    )
    result = audit(db_url, ids)
    print_row(
        f"soak: {jobs} tiny jobs, {child_kills} child kill -9, {whole_kills} whole-worker "
        f"kill -9, {worker_exits} worker exits, {resent_by_workers} lost-message re-sends by "
        f"workers, {len(recovered)} by hand ({elapsed:.0f} s, enqueue {jobs / enqueue_s:,.0f}/s)",
        result,
    )
    assert result.done + result.failed == jobs, result
    assert not result.lost and result.duplicated == 0, result
    # A job may only fail here because it was interrupted on every attempt.
    store = Store(db_url, create=False)
    reasons = {j["error"] for j in store.iter_jobs() if j["status"] == FAILED}
    store.dispose()
    assert all(r.startswith("gave up after") for r in reasons), reasons
    assert result.failed <= jobs // 100, result
    assert child_kills > 0 and whole_kills > 0
    assert not recovered  # the workers' own check found every lost message
