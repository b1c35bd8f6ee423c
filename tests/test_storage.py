"""Storage against real SQLite files and the real PostgreSQL on this machine."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from sqlalchemy import text

from ocrq.errors import DatabaseUnavailable, UnknownJob
from ocrq.results import RegionResult
from ocrq.storage import (
    DONE,
    FAILED,
    QUEUED,
    NewJob,
    Store,
    decode_path,
    encode_path,
    model_key,
)

OPTIONS = {"engine": "ppocr", "model": None, "precision": "fp32"}
KEY = model_key("ppocr", None, "fp32")
QUAD = [[10, 10], [110, 10], [110, 30], [10, 30]]


def _one_job(store: Store, path: str = "/data/a.png", sha: str = "a" * 64) -> int:
    batch = store.create_batch(["/data"], ["*.png"], OPTIONS)
    return store.add_jobs(batch, [NewJob(path, sha, 10)], OPTIONS, KEY)[0]


def _regions(n: int, text: str = "line") -> list[RegionResult]:
    return [RegionResult(0, i, QUAD, f"{text} {i}", 0.9) for i in range(n)]


def test_job_lifecycle_and_counts(db_url):
    store = Store(db_url)
    job_id = _one_job(store)
    assert store.counts()[QUEUED] == 1
    job = store.start_job(job_id, "host:1:core0")
    assert job is not None and job["attempts"] == 1
    store.finish_job(
        job_id, _regions(3), pages=1, timings={"total": 0.5}, provenance={"m": 1}, options=OPTIONS
    )
    counts = store.counts()
    assert counts[DONE] == 1 and counts[QUEUED] == 0
    regions = store.regions_for([job_id])[job_id]
    assert [r["text"] for r in regions] == ["line 0", "line 1", "line 2"]
    assert regions[0]["x0"] == 10 and regions[0]["y1"] == 30


def test_redelivered_job_is_skipped_and_rewrite_never_duplicates(db_url):
    store = Store(db_url)
    job_id = _one_job(store)
    store.start_job(job_id, "w1")
    store.finish_job(
        job_id, _regions(2, "first"), pages=1, timings={}, provenance={}, options=OPTIONS
    )
    # a redelivery of a finished job is recognised and does nothing
    assert store.start_job(job_id, "w2") is None
    # a rerun that writes again (e.g. killed before ack, then forced) replaces, not appends
    store.finish_job(
        job_id, _regions(4, "second"), pages=1, timings={}, provenance={}, options=OPTIONS
    )
    regions = store.regions_for([job_id])[job_id]
    assert len(regions) == 4 and all(r["text"].startswith("second") for r in regions)


def test_a_job_this_database_does_not_hold_is_named_as_such(db_url, tmp_path, monkeypatch):
    """A message from a producer on another database: neither a redelivery (None) nor
    written anywhere; the error says which database this is, so the mix-up is plain."""
    store = Store(db_url)
    job_id = _one_job(store)
    with pytest.raises(UnknownJob) as raised:
        store.start_job(job_id + 1000, "w1")
    message = str(raised.value)
    assert f"job {job_id + 1000} is not in this worker's results database" in message
    assert "OCRQ_DB_URL" in message and "ocrq retry --lost" in message
    assert store.counts()[QUEUED] == 1  # nothing was claimed or changed
    if db_url.startswith("sqlite"):
        assert f"the SQLite file {tmp_path / 'results.db'}" in message
    else:
        assert "postgresql" in message
    # a relative SQLite URL is named by the file it opens from this folder
    monkeypatch.chdir(tmp_path)
    relative = Store("sqlite:///relative.db")
    assert relative.where() == f"the SQLite file {tmp_path / 'relative.db'}"
    relative.dispose()


def test_failed_job_keeps_reason_and_retry_requeues(db_url):
    store = Store(db_url)
    job_id = _one_job(store)
    store.start_job(job_id, "w1")
    store.fail_job(job_id, "truncated JPEG")
    job = store.get_job(job_id)
    assert job["status"] == FAILED and job["error"] == "truncated JPEG"
    assert store.requeue_failed() == [job_id]
    job = store.get_job(job_id)
    assert job["status"] == QUEUED and job["error"] is None and job["enqueued_at"] is None
    assert store.pending_unsent() == [job_id]


def test_known_jobs_by_content_and_model(db_url):
    store = Store(db_url)
    job_id = _one_job(store, sha="b" * 64)
    found = store.known_jobs(KEY, ["b" * 64, "c" * 64])
    assert [j["id"] for j in found["b" * 64]] == [job_id]
    assert "c" * 64 not in found
    assert store.known_jobs(model_key("trocr-onnx", "x", "int8"), ["b" * 64]) == {}


def test_iter_jobs_streams_in_chunks(db_url):
    store = Store(db_url)
    batch = store.create_batch([], [], OPTIONS)
    jobs = [NewJob(f"/d/{i}.png", f"{i:064d}", 1) for i in range(23)]
    store.add_jobs(batch, jobs, OPTIONS, KEY)
    paths = [j["path"] for j in store.iter_jobs(chunk=5)]
    assert paths == [j.path for j in jobs]


def test_non_utf8_path_roundtrip(db_url):
    raw = "/data/caf\udce9.png"  # b'caf\xe9.png' decoded with surrogateescape
    store = Store(db_url)
    job_id = _one_job(store, path=encode_path(raw))
    assert decode_path(store.get_job(job_id)["path"]) == raw
    assert encode_path("/data/ünïcødé.png") == "/data/ünïcødé.png"


def test_unreachable_database_is_a_clear_error(tmp_path):
    with pytest.raises(DatabaseUnavailable, match="cannot reach results database"):
        Store("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    with pytest.raises(DatabaseUnavailable) as info:
        Store("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    assert "secret" not in str(info.value)


def test_sqlite_is_wal_with_busy_timeout(sqlite_url):
    store = Store(sqlite_url)
    with store.read() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10000


def _writer(url: str, job_ids: list[int], rounds: int) -> None:
    store = Store(url, create=False)
    for r in range(rounds):
        for job_id in job_ids:
            store.start_job(job_id, "w") if r == 0 else None
            store.finish_job(
                job_id, _regions(3, f"r{r}"), pages=1, timings={}, provenance={}, options=OPTIONS
            )


def test_two_writer_processes_never_lock_or_duplicate(sqlite_url):
    """Two processes rewriting the same jobs concurrently: no 'database is locked',
    and every job ends with exactly its 3 regions."""
    store = Store(sqlite_url)
    batch = store.create_batch([], [], OPTIONS)
    ids = store.add_jobs(
        batch, [NewJob(f"/d/{i}", f"{i:064d}", 1) for i in range(20)], OPTIONS, KEY
    )
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(sqlite_url, ids, 5)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    regions = store.regions_for(ids)
    assert all(len(regions[i]) == 3 for i in ids)


def test_requeue_failed_only_for_the_engine_asked(db_url):
    store = Store(db_url)
    batch = store.create_batch([], [], OPTIONS)
    (ppocr,) = store.add_jobs(batch, [NewJob("/a", "a" * 64, 1)], OPTIONS, KEY)
    trocr_opts = {"engine": "trocr-onnx", "model": "m", "precision": "int8"}
    (trocr,) = store.add_jobs(
        batch, [NewJob("/b", "b" * 64, 1)], trocr_opts, model_key("trocr-onnx", "m", "int8")
    )
    for job_id in (ppocr, trocr):
        store.start_job(job_id, "w")
        store.fail_job(job_id, "bad")
    assert store.requeue_failed(engine="ppocr") == [ppocr]
    assert store.get_job(trocr)["status"] == FAILED
