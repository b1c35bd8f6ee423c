"""The hostile-and-odd corpus (`tests/corpus.py`) pushed through the real queue: one job per
case (even those the walker would skip: a message can name anything), real Redis of our
own, a real 2-child celery worker confined to the corpus by OCRQ_INPUT_ROOTS. Every case
fails its own job with its expected reason or succeeds with its expected page count; no
worker crashes; the normal pages queued behind the corpus all complete."""

from __future__ import annotations

import os

import pytest

from ocrq.scoring import cer
from ocrq.storage import Store, encode_path
from tests.corpus import make_corpus, restore_permissions
from tests.fault_helpers import audit, job_texts, print_row
from tests.fixtures_text import write_pages
from tests.helpers import Worker, submit, wait_all_final

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# Paths no job may read with the corpus as the only input root.
ESCAPES = ("/etc/passwd", "{root}/../outside.png", "{root}/x.jpg/../../outside.png")


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    expect = make_corpus(root)
    yield root, expect
    restore_permissions(root)


def test_hostile_corpus_through_the_real_queue(tmp_path, corpus, redis_server, sqlite_url):
    redis, db_url = redis_server, sqlite_url
    root, expect = corpus
    (tmp_path / "outside.png").write_bytes((root / "text_hello.png").read_bytes())
    cases = {rel: os.path.join(str(root), rel) for rel in expect}
    escapes = [e.format(root=root) for e in ESCAPES]
    normal = sorted(write_pages(root / "zz_normal", 4))  # inside the root, after the corpus
    worker = Worker(
        db_url, redis.url, tmp_path / "worker.log", concurrency=2, OCRQ_INPUT_ROOTS=str(root)
    )
    try:
        case_ids = submit(db_url, redis.url, list(cases.values()) + escapes)
        normal_ids = submit(db_url, redis.url, normal)
        all_ids = case_ids + normal_ids
        wait_all_final(db_url, all_ids, timeout=300, workers=[worker], broker=redis)
        worker.check_alive()
    finally:
        worker.stop()
    result = audit(db_url, all_ids)
    print_row(f"hostile corpus ({len(cases)} cases + {len(escapes)} escapes) + 4 pages", result)
    assert not result.lost and result.duplicated == 0, result

    jobs = _jobs_by_path(db_url)
    pages_of = _pages_by_path(db_url)
    outcome, wrong = {}, []
    for rel, path in cases.items():
        pages = pages_of[encode_path(path)]  # one job per page
        job = next((j for j in pages if j["status"] != "done"), pages[0])
        want = expect[rel]
        if want.loads:
            ok = all(j["status"] == "done" for j in pages) and len(pages) == want.pages
            got = f"done, {len(pages)} pages" if job["status"] == "done" else job["error"]
        else:
            reason = want.reason_for(rooted=True)
            ok = job["status"] == "failed" and reason in (job["error"] or "")
            got = job["error"] or job["status"]
        outcome[rel] = got
        if not ok:
            wrong.append((rel, want, job["status"], job["error"]))
    assert not wrong, wrong
    for path in escapes:
        job = jobs[path]
        assert job["status"] == "failed", job
        assert "outside the configured input roots" in job["error"], job["error"]
    # the pages queued behind the corpus were not held up or lost
    assert all(jobs[p]["status"] == "done" for p in normal)

    # the valid text images were really read
    texts = job_texts(db_url)
    for rel, want in expect.items():
        if want.text:
            got = texts[encode_path(cases[rel])]
            assert cer(got, " ".join(want.text)) < 0.1, (rel, got)

    # no child died on any of it (a crash would show as a lost worker and a redelivery)
    log = worker.text()
    assert "WorkerLostError" not in log and "exited with" not in log, worker.tail()
    assert all(n == 1 for n in result.attempts.values()), result.attempts
    print("\nCORPUS-OUTCOME")
    for rel, got in sorted(outcome.items()):
        print(f"  {rel!r}: {got}")


def _pages_by_path(db_url: str) -> dict[str, list[dict]]:
    store = Store(db_url, create=False)
    try:
        found: dict[str, list[dict]] = {}
        for job in store.iter_jobs():
            found.setdefault(job["path"], []).append(job)
        return found
    finally:
        store.dispose()


def _jobs_by_path(db_url: str) -> dict[str, dict]:
    store = Store(db_url, create=False)
    try:
        return {job["path"]: job for job in store.iter_jobs()}
    finally:
        store.dispose()
