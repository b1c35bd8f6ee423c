"""The embedded pool (`ocrq run`, no Redis) under the same fault: kill -9 of a worker
child mid-job. The real command in a subprocess; its child replaced, every job done once."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from ocrq.storage import Store
from tests.fault_helpers import audit, kill9, max_cer, print_row, running_jobs
from tests.fixtures_text import write_slow_pages
from tests.helpers import REPO, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _pool_children(pid: int) -> list[int]:
    kids = psutil.Process(pid).children()
    return [k.pid for k in kids if "spawn_main" in " ".join(k.cmdline())]


def test_embedded_run_survives_kill9_of_a_child(tmp_path, sqlite_url):
    db_url = sqlite_url
    truth = write_slow_pages(tmp_path / "scans", 4, lines=12)
    proc = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "run", str(tmp_path / "scans"), "-p", "*.png"]
        + ["--db", db_url, "--workers", "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        victim = wait_for(lambda: _running(db_url), 180, "a running job")[0]
        pid = int(victim["worker"].split(":")[1])
        assert pid in _pool_children(proc.pid)
        kill9(pid)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "4 done" in out and "restarts: 1" in out, out
    store = Store(db_url, create=False)
    ids = [j["id"] for j in store.iter_jobs()]
    store.dispose()
    result = audit(db_url, ids)
    print_row("ocrq run (embedded pool): kill -9 one child mid-job", result)
    assert result.done == 4 and not result.lost and result.duplicated == 0, result
    assert result.attempts[victim["id"]] == 2
    assert max_cer(db_url, truth) < 0.05


def _running(db_url: str) -> list[dict]:
    try:
        return running_jobs(db_url)
    except Exception:  # the run has not created its tables yet
        return []
