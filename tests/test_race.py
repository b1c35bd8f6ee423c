"""Two `ocrq submit` of the same folder at the same time (cron and a terminal): each file
is recorded once and published once, on SQLite and on PostgreSQL.

Before planning and recording shared one locked transaction, two real producers racing
on 300 files recorded them all twice on PostgreSQL (3 of 3 trials) and on SQLite (1 of 4).
Real producer processes, real Redis, real databases; several trials each."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from ocrq.queue import queue_name
from ocrq.storage import Base, Store
from tests.helpers import REPO

pytestmark = pytest.mark.integration

FILES = 120
TRIALS = 4


def _folder(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(FILES):  # distinct small images: hashing, not OCR, is what races here
        pixels = rng.integers(0, 255, (24, 24), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"scan_{i:03d}.png")
    return folder


def _race(folder, db_url: str, broker_url: str) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "OCRQ_BROKER_URL": broker_url, "OCRQ_DB_URL": db_url}
    argv = [sys.executable, "-m", "producer.cli", "submit", str(folder), "--chunk", "20"]
    procs = [
        subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    return [
        subprocess.CompletedProcess(p.args, p.wait(120), p.stdout.read(), p.stderr.read())
        for p in procs
    ]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_producers_record_and_publish_each_file_once(
    database, tmp_path, redis_url, redis_client, request
):
    folder = _folder(tmp_path)
    db_url = request.getfixturevalue("postgres_url" if database == "postgresql" else "sqlite_url")
    for trial in range(TRIALS):
        store = Store(db_url)  # made empty before the race: only the race is tested
        Base.metadata.drop_all(store.engine)
        store.create_tables()
        redis_client.flushdb()
        results = _race(folder, db_url, redis_url)
        for result in results:
            assert result.returncode == 0, result.stderr.decode()[-2000:]
        paths = Counter(job["path"] for job in store.iter_jobs())
        assert len(paths) == FILES and set(paths.values()) == {1}, (trial, paths.most_common(3))
        assert redis_client.llen(queue_name("ppocr")) == FILES, trial  # published once each
        # the loser reports the files as queued already, not as new ones
        outputs = [r.stdout.decode() for r in results]
        queued = [int(out.split(" queued")[0].split()[-1]) for out in outputs]
        assert sum(queued) == FILES, outputs
        store.dispose()
