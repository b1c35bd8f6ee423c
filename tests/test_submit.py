"""Submission planning (dedupe, resume, force) and pipelined enqueue into a real Redis."""

from __future__ import annotations

import base64
import json
import os

import pytest

from ocrq.config import EngineOptions
from ocrq.queue import Enqueuer, queue_name
from ocrq.storage import DONE, DUPLICATE, QUEUED, Store, options_key
from producer.submit import HashedFile, plan_jobs, record_jobs

OPTS = EngineOptions(precision="fp32")
KEY = options_key(OPTS)


def _files(*specs: tuple[str, str]) -> list[HashedFile]:
    return [HashedFile(path, sha * 64, 10) for path, sha in specs]


def _submit(store: Store, files, force=False):
    plan = plan_jobs(store, files, KEY, force)
    batch = store.create_batch([], [], OPTS.as_dict())
    return plan, record_jobs(store, batch, plan, OPTS)


def test_same_content_twice_is_one_job_and_one_duplicate(sqlite_url):
    store = Store(sqlite_url)
    plan, to_send = _submit(
        store, _files(("/a.png", "a"), ("/copy-of-a.png", "a"), ("/b.png", "b"))
    )
    assert len(to_send) == 2
    jobs = list(store.iter_jobs())
    dup = next(j for j in jobs if j["path"] == "/copy-of-a.png")
    original = next(j for j in jobs if j["path"] == "/a.png")
    assert dup["status"] == DUPLICATE and dup["duplicate_of"] == original["id"]


def test_resubmit_skips_done_and_resends_unpublished(sqlite_url):
    store = Store(sqlite_url)
    files = _files(("/a.png", "a"), ("/b.png", "b"), ("/c.png", "c"))
    _, ids = _submit(store, files)
    a, b, c = ids
    store.mark_enqueued([a, b])  # the submit was interrupted before c was published
    store.start_job(a, "w")
    store.finish_job(a, [], pages=1, timings={}, provenance={}, options=OPTS.as_dict())
    plan, to_send = _submit(store, files)
    assert to_send == [c]  # only the never-published job goes out again
    assert plan.done_already == 1 and plan.in_flight == 1 and plan.resend == [c]


def test_done_content_under_a_new_path_is_a_duplicate(sqlite_url):
    store = Store(sqlite_url)
    _, (a,) = _submit(store, _files(("/a.png", "a")))
    store.start_job(a, "w")
    store.finish_job(a, [], pages=1, timings={}, provenance={}, options=OPTS.as_dict())
    plan, to_send = _submit(store, _files(("/elsewhere/a.png", "a")))
    assert to_send == [] and plan.new_jobs[0].duplicate_of == a


def test_force_runs_again(sqlite_url):
    store = Store(sqlite_url)
    _, (a,) = _submit(store, _files(("/a.png", "a")))
    store.start_job(a, "w")
    store.finish_job(a, [], pages=1, timings={}, provenance={}, options=OPTS.as_dict())
    _, to_send = _submit(store, _files(("/a.png", "a")), force=True)
    assert len(to_send) == 1 and to_send[0] != a
    assert store.get_job(to_send[0])["status"] == QUEUED
    assert store.counts()[DONE] == 1


@pytest.mark.integration
def test_enqueue_publishes_json_celery_messages(sqlite_url, redis_client):
    store = Store(sqlite_url)
    _, ids = _submit(store, _files(*[(f"/{i}.png", f"{i:x}") for i in range(250)]))
    enqueuer = Enqueuer(os.environ["OCRQ_BROKER_URL"], queue_name("ppocr"), chunk=100)
    enqueuer.check_broker()
    enqueuer.send(ids, store)
    queue = queue_name("ppocr")
    assert redis_client.llen(queue) == 250
    raw = json.loads(redis_client.rpop(queue))
    assert raw["content-type"] == "application/json"
    assert raw["headers"]["task"] == "ocrq.ocr_job"
    body = json.loads(base64.b64decode(raw["body"]))
    assert body[0] == [ids[0], store.identity]  # args: the job id and its database
    assert all(j["enqueued_at"] is not None for j in store.iter_jobs())


def test_unreachable_broker_is_a_clear_error_without_the_password():
    from ocrq.errors import BrokerUnavailable

    enqueuer = Enqueuer("redis://:hunter2@127.0.0.1:1/0", queue_name("ppocr"))
    with pytest.raises(BrokerUnavailable, match="Start Redis") as info:
        enqueuer.check_broker()
    assert "hunter2" not in str(info.value) and "127.0.0.1:1" in str(info.value)
