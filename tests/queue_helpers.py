"""Helpers for tests that run a real `celery -A worker worker` subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from fixtures_text import render_page
from PIL import Image

from ocrq.storage import Store
from worker.command import celery_worker_argv

REPO = Path(__file__).resolve().parent.parent

PAGES = [
    ["Invoice 2024-118", "Total 1,234.50 EUR", "Paid by card"],
    ["The quick brown fox", "jumps over the lazy dog."],
    ["Reading order runs", "top to bottom."],
    ["Pack my box with", "six dozen liquor jugs!"],
]


def write_pages(folder: Path, count: int, suffix: str = ".png") -> dict[str, str]:
    """Rendered text pages; returns {absolute path: ground truth}."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(count):
        lines = PAGES[i % len(PAGES)] + [f"Page number {i}"]
        path = folder / f"page_{i:03d}{suffix}"
        Image.fromarray(render_page(lines, height=36)).save(path)
        truth[str(path.resolve())] = "\n".join(lines)
    return truth


def worker_env(db_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OCRQ_DB_URL": db_url, "PYTHONUNBUFFERED": "1", **extra})
    return env


def start_worker(db_url: str, log: Path, concurrency: int = 2, **extra: str) -> subprocess.Popen:
    cmd = celery_worker_argv(concurrency, "INFO", f"test{os.getpid()}@%h", heartbeat=False)
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=worker_env(db_url, **extra),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_until_finished(db_url: str, total: int, timeout: float, proc=None, log=None) -> dict:
    store = Store(db_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            counts = store.counts()
            if counts["done"] + counts["failed"] + counts["duplicate"] >= total:
                return counts
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"worker exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        tail = log.read_text()[-3000:] if log else ""
        raise AssertionError(f"timed out with {store.counts()}\n{tail}")
    finally:
        store.dispose()


def work_through(db_url: str, total: int, log: Path, concurrency: int, timeout: float) -> dict:
    """Start a worker on `db_url`, wait until `total` jobs are finished, stop it; returns
    the counts."""
    proc = start_worker(db_url, log, concurrency=concurrency)
    try:
        return wait_until_finished(db_url, total, timeout=timeout, proc=proc, log=log)
    finally:
        stop_worker(proc)
