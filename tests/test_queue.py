"""End to end through the real queue: `ocrq submit` -> real Redis -> a real
`celery -A worker worker` with 2 pinned children -> SQLite -> export."""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from ocrq.queue import TASK_NAME, producer_app
from ocrq.scoring import cer_counts
from ocrq.storage import Job, Store
from ocrq.threads import allowed_cores
from producer.cli import cli
from tests.fixtures_text import write_pages
from tests.helpers import Worker, work_through

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# Rendered DejaVu text at 36 px is clean print: PP-OCRv6 reads it almost perfectly.
# 3 % CER leaves room for a digit or punctuation slip per page without hiding a
# broken pipeline (a lost line alone is >15 % on these pages).
MAX_CER = 0.03


def test_submit_to_two_pinned_workers_end_to_end(tmp_path, redis_url, redis_client, sqlite_url):
    db_url = sqlite_url
    truth = write_pages(tmp_path / "scans", 12)
    log = tmp_path / "worker.log"
    runner = CliRunner()
    result = runner.invoke(
        cli, ["submit", str(tmp_path / "scans"), "--pattern", "*.png", "--db", db_url]
    )
    assert result.exit_code == 0, result.output
    assert "12 queued" in result.output
    counts = work_through(db_url, redis_url, 12, log, concurrency=2, timeout=240)
    assert counts["done"] == 12, counts

    out = tmp_path / "out.jsonl"
    result = runner.invoke(cli, ["export", "--db", db_url, "--format", "jsonl", "-o", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 12
    dist = total = 0
    for record in records:
        d, n = cer_counts(record["text"], truth[record["path"]])
        dist, total = dist + d, total + n
    assert dist / total < MAX_CER, [r["text"] for r in records]

    # two children, each pinned to its own core, each loaded the engine exactly once
    status = runner.invoke(cli, ["status", "--db", db_url])
    assert "done 12" in status.output
    workers = _workers(db_url)
    cores = {w.split(":")[2] for w in workers}
    if len(allowed_cores()) >= 2:
        assert len(workers) == 2 and len(cores) == 2, workers
    assert all(loads == {1} for loads in workers.values()), workers

    csv_out = tmp_path / "regions.csv"
    runner.invoke(cli, ["export", "--db", db_url, "--per", "region", "-o", str(csv_out)])
    rows = list(csv.DictReader(csv_out.open()))
    assert len(rows) >= 12 * 3 and all(0 <= float(r["confidence"]) <= 1 for r in rows)


def _workers(db_url: str) -> dict[str, set[int]]:
    from ocrq.storage import Store

    store = Store(db_url)
    found: dict[str, set[int]] = defaultdict(set)
    for job in store.iter_jobs():
        found[job["worker"]].add(job["provenance"]["engine_loads"])
    store.dispose()
    return dict(found)


def test_worker_that_cannot_load_its_engine_exits_non_zero(
    tmp_path, redis_url, redis_client, sqlite_url
):
    log = tmp_path / "worker.log"
    with Worker(
        sqlite_url,
        redis_url,
        log,
        concurrency=1,
        OCRQ_ENGINE="trocr-onnx",
        OCRQ_MODEL="no-such-model",
        OCRQ_MODELS=str(tmp_path / "models"),
    ) as worker:
        code = worker.proc.wait(timeout=120)
    text = log.read_text()
    assert code != 0, text[-2000:]
    assert "cannot load the engine" in text and "no-such-model" in text, text[-2000:]


def test_a_worker_on_another_database_says_so_and_the_jobs_are_recovered(
    tmp_path, redis_url, redis_client
):
    """The quick start run from two folders: `ocrq submit` records jobs in one SQLite
    file, a worker started elsewhere opens another (`sqlite:///results.db` is relative).
    That worker names the database it reads for each message (of the shape without a
    database identity) it cannot run and drops it; `ocrq status` on the producer's database says its queued jobs have no message
    left; `ocrq retry --lost` sends them again and a worker on that database does them."""
    write_pages(tmp_path / "scans", 3)
    producer_db = f"sqlite:///{tmp_path / 'producer.db'}"
    other_db = f"sqlite:///{tmp_path / 'other.db'}"
    runner = CliRunner()
    submitted = runner.invoke(cli, ["submit", str(tmp_path / "scans"), "--db", producer_db])
    assert submitted.exit_code == 0, submitted.output
    # As queued before messages carried their database's identity (the job id alone): a
    # worker can only tell that it holds no such job. (With the identity it hands the
    # message back instead: tests/test_identity.py.)
    redis_client.delete("ocrq.ppocr")
    for job in Store(producer_db).iter_jobs():
        producer_app(redis_url).send_task(TASK_NAME, (job["id"],), queue="ocrq.ppocr")
    wrong_log = tmp_path / "wrong.log"
    with Worker(other_db, redis_url, wrong_log, concurrency=1) as worker:
        deadline = time.monotonic() + 120
        while wrong_log.read_text().count("not in this worker's results database") < 3:
            assert worker.proc.poll() is None, wrong_log.read_text()[-3000:]
            assert time.monotonic() < deadline, wrong_log.read_text()[-3000:]
            time.sleep(0.2)
    assert f"the SQLite file {tmp_path / 'other.db'}" in wrong_log.read_text()
    assert redis_client.llen("ocrq.ppocr") == 0
    assert sum(Store(other_db).counts().values()) == 0  # nothing written to the wrong one
    assert Store(producer_db).counts()["queued"] == 3

    # As a user checking a while later sees it: published more than the 10 s grace ago.
    store = Store(producer_db)
    with store.write() as conn:
        conn.execute(update(Job).values(enqueued_at=Job.enqueued_at - 60))
    status = runner.invoke(cli, ["status", "--db", producer_db])
    assert status.exit_code == 0, status.output
    assert "3 queued or running jobs have no message in the broker" in status.output
    assert "ocrq retry --lost" in status.output
    retried = runner.invoke(cli, ["retry", "--lost", "--grace", "0", "--db", producer_db])
    assert "re-enqueued 3 ppocr jobs" in retried.output, retried.output
    counts = work_through(
        producer_db, redis_url, 3, tmp_path / "right.log", concurrency=1, timeout=120
    )
    assert counts["done"] == 3, counts
    status = runner.invoke(cli, ["status", "--db", producer_db])
    assert "no message in the broker" not in status.output
