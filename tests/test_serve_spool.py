"""How long `ocrq serve` keeps uploads (server/retention.py): a real spool and a real
results database, jobs recorded as the server records them, their states set by hand.
Open documents keep their files; finished ones go after the keep time, or oldest
first while the spool is over its bytes; a blob goes with the last file linked to it."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from ocrq.config import EngineOptions, InputLimits
from ocrq.storage import DONE, FAILED, Job, Store
from producer.submit import HashedFile, plan_and_record
from server.retention import ORPHAN_GRACE, sweep
from server.uploads import Spool, Spooled
from tests.helpers import sqlite_file_url

DAY = 24 * 3600.0


@pytest.fixture
def spool(tmp_path):
    spool = Spool(tmp_path / "spool", InputLimits())
    yield spool
    spool.close()


@pytest.fixture
def store(tmp_path):
    store = Store(sqlite_file_url(tmp_path / "results.db"))
    yield store
    store.dispose()


def upload(spool: Spool, store: Store, data: bytes, name: str) -> tuple[Spooled, int]:
    """Spool `data` and record it as the server does (forced: a job of its own)."""
    kept = spool.store(io.BytesIO(data), name, 10**6)
    batch = store.create_batch([str(spool.root)], [], EngineOptions().as_dict())
    files = [HashedFile(kept.path, kept.sha256, kept.size, kept.pages)]
    _plan, job_ids = plan_and_record(store, batch, files, EngineOptions(), force=True)
    return kept, job_ids[0]


def finish(store: Store, job_id: int, at: float, status: str = DONE) -> None:
    with store.write() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(status=status, finished_at=at))


def blob(spool: Spool, kept: Spooled) -> Path:
    return spool.root / "blobs" / kept.sha256[:2] / kept.sha256


def test_finished_files_go_after_the_keep_time_open_ones_never(spool, store):
    now = time.time()
    a, a_job = upload(spool, store, b"A" * 1000, "a.png")
    b, b_job = upload(spool, store, b"B" * 1000, "b.png")
    c, _c_job = upload(spool, store, b"C" * 1000, "c.png")  # stays open
    d, d_job = upload(spool, store, b"A" * 1000, "again.png")  # a's bytes: the same blob
    finish(store, a_job, now - 2 * DAY)
    finish(store, b_job, now - 60, FAILED)  # failed counts as finished too

    result = sweep(spool.root, store, keep_seconds=DAY, max_bytes=10**9, now=now)
    assert not Path(a.path).exists() and not Path(a.path).parent.exists()
    assert blob(spool, a).exists()  # d, still open, links to it
    assert all(Path(x.path).exists() for x in (b, c, d))
    assert (result.removed, result.freed, result.total) == (1, 0, 3000)

    finish(store, d_job, now - 2 * DAY)
    result = sweep(spool.root, store, keep_seconds=DAY, max_bytes=10**9, now=now)
    assert not Path(d.path).exists() and not blob(spool, a).exists()
    assert (result.removed, result.freed, result.total) == (1, 1000, 2000)
    assert Path(b.path).exists() and Path(c.path).exists()


def test_over_the_bytes_oldest_finished_go_first(spool, store):
    now = time.time()
    old, old_job = upload(spool, store, b"1" * 1000, "old.png")
    mid, mid_job = upload(spool, store, b"2" * 1000, "mid.png")
    new, new_job = upload(spool, store, b"3" * 1000, "new.png")
    still, _ = upload(spool, store, b"4" * 1000, "open.png")
    finish(store, old_job, now - 300)
    finish(store, mid_job, now - 200)
    finish(store, new_job, now - 100)

    result = sweep(spool.root, store, keep_seconds=DAY, max_bytes=2500, now=now)
    assert [Path(x.path).exists() for x in (old, mid, new, still)] == [False, False, True, True]
    assert (result.removed, result.total, result.over) == (2, 2000, False)

    # the open document's file alone is over the bound: kept, and the server is told
    result = sweep(spool.root, store, keep_seconds=DAY, max_bytes=500, now=now)
    assert Path(still.path).exists() and not Path(new.path).exists()
    assert result.over and result.total == 1000


def test_files_no_job_names_go_after_a_grace(spool, store):
    stray = spool.store(io.BytesIO(b"never recorded"), "stray.png", 10**6)
    fresh = spool.store(io.BytesIO(b"being recorded"), "fresh.png", 10**6)
    (spool.root / "tmp" / "half-upload").write_bytes(b"x" * 10)
    old = time.time() - ORPHAN_GRACE - 10
    for path in (Path(stray.path).parent, spool.root / "tmp" / "half-upload"):
        os.utime(path, (old, old))

    lone = spool.root / "blobs" / "ff" / ("f" * 64)  # a blob no upload was linked to
    lone.parent.mkdir()
    lone.write_bytes(b"y" * 10)

    sweep(spool.root, store, keep_seconds=DAY, max_bytes=10**9)
    assert not Path(stray.path).exists() and not blob(spool, stray).exists()
    assert not (spool.root / "tmp" / "half-upload").exists()
    assert Path(fresh.path).exists() and blob(spool, fresh).exists() and lone.exists()
    os.utime(lone, (old, old))
    sweep(spool.root, store, keep_seconds=DAY, max_bytes=10**9)
    assert not lone.exists() and blob(spool, fresh).exists()
