"""Two results databases behind one Redis: each message carries its database's identity,
and a worker refuses (hands back) the jobs of a database that is not its own.

Both databases number their jobs from 1, so before identities a worker ran the other
project's job 1 as its own (or dropped it). Real Redis, real Celery workers, real
SQLite files; the producers are the real `ocrq submit`."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from PIL import Image

from ocrq.config import EngineOptions
from ocrq.queue import REFUSED, TASK_NAME, producer_app, queue_name, recovery_counts
from ocrq.scoring import cer_counts
from ocrq.storage import NewJob, Store, options_key
from producer.cli import cli
from tests.fixtures_text import render_page
from tests.helpers import Worker, wait_until_finished

pytestmark = pytest.mark.integration

PROJECTS = {
    "a": [["Invoice 2024-118", "Total 1,234.50 EUR"], ["Pack my box with", "six dozen jugs"]],
    "b": [["The quick brown fox", "jumps over the dog"], ["Reading order runs", "top to bottom"]],
}


def _project(folder, name: str) -> dict[str, str]:
    folder.mkdir(parents=True)
    truth = {}
    for i, lines in enumerate(PROJECTS[name]):
        path = folder / f"page_{i}.png"  # the same names in both projects
        Image.fromarray(render_page(lines, height=36)).save(path)
        truth[str(path.resolve())] = "\n".join(lines)
    return truth


def _texts(db_url: str) -> dict[str, tuple[str, int]]:
    out = CliRunner().invoke(cli, ["export", "--db", db_url, "--format", "json"])
    return {r["path"]: (r["text"], r["attempts"]) for r in json.loads(out.output)}


def test_each_job_is_run_once_by_a_worker_of_its_own_database(tmp_path, redis_url, redis_client):
    truth = {name: _project(tmp_path / name, name) for name in PROJECTS}
    urls = {name: f"sqlite:///{tmp_path / name}.db" for name in PROJECTS}
    runner = CliRunner()
    for name in PROJECTS:
        done = runner.invoke(cli, ["submit", str(tmp_path / name), "--db", urls[name]])
        assert done.exit_code == 0, done.output
    stores = {name: Store(urls[name]) for name in PROJECTS}
    assert stores["a"].identity != stores["b"].identity
    ids = {name: [j["id"] for j in stores[name].iter_jobs()] for name in PROJECTS}
    assert ids["a"] == ids["b"] == [1, 2]  # the ids collide

    # A message in the shape published before identities (the job id alone) is still run.
    old_file = tmp_path / "old.png"
    old_file.write_bytes((tmp_path / "a" / "page_0.png").read_bytes())
    truth["a"][str(old_file)] = truth["a"][str((tmp_path / "a" / "page_0.png").resolve())]
    options = EngineOptions(precision="fp32")
    old = stores["a"].add_jobs(
        stores["a"].create_batch([], [], {}),
        [NewJob(str(old_file), "f" * 64, 1)],
        options.as_dict(),
        options_key(options),
    )
    producer_app(redis_url).send_task(TASK_NAME, (old[0],), queue=queue_name("ppocr"))

    # Only project a's worker at first: it does a's jobs and hands b's back.
    with Worker(urls["a"], redis_url, tmp_path / "a.log", concurrency=1) as worker_a:
        wait_until_finished(urls["a"], 3, timeout=180, worker=worker_a)
        deadline = time.monotonic() + 60
        while "handed back" not in worker_a.text():
            assert time.monotonic() < deadline, worker_a.tail()
            time.sleep(0.2)
        log = worker_a.text()
        assert stores["b"].identity in log and stores["a"].identity in log
        assert stores["b"].counts()["queued"] == 2  # refused, not run, not dropped
        assert sum(stores["b"].counts().values()) == 2
        refused = recovery_counts(redis_url, stores["b"].identity)
        assert refused is not None and refused[REFUSED] >= 1
        status = runner.invoke(cli, ["status", "--db", urls["b"]])
        assert "handed back by workers of another results database" in status.output

        # Then b's worker: every b job is done, once, into b's database.
        with Worker(urls["b"], redis_url, tmp_path / "b.log", concurrency=1) as worker_b:
            wait_until_finished(urls["b"], 2, timeout=180, worker=worker_b)
    for name in PROJECTS:
        texts = _texts(urls[name])
        for path, expected in truth[name].items():
            text, attempts = texts[path]
            dist, n = cer_counts(text, expected)
            assert dist / n < 0.05, (name, path, text)
            assert attempts == 1, (name, path, attempts)
    assert stores["a"].get_job(old[0])["status"] == "done"
    assert redis_client.llen(queue_name("ppocr")) == 0
