"""Security through the real queue: JSON only on the wire (a pickled message is refused and
never executed), workers read only under OCRQ_INPUT_ROOTS (a path outside is refused
before it is opened), password and TLS (`rediss://`) broker URLs from the environment,
and no secret in logs, job rows or CLI output."""

from __future__ import annotations

import json
import os
import pickle
import time
import uuid

import pytest

from ocrq.queue import TASK_NAME
from ocrq.storage import Store
from tests.fault_helpers import audit
from tests.fixtures_text import write_pages
from tests.helpers import (
    QUEUE,
    RedisServer,
    Worker,
    add_jobs,
    ocrq_cli,
    submit,
    wait_all_final,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration]


class _Payload:
    """Unpickling this makes a directory: the side effect that must never happen."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (self.path,))


def _pickled_task_message(marker: str) -> tuple[bytes, dict]:
    body = ((_Payload(marker),), {}, {"callbacks": None, "errbacks": None, "chain": None})
    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py",
        "task": TASK_NAME,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "timelimit": [None, None],
        "argsrepr": "(...)",
        "kwargsrepr": "{}",
        "origin": "attacker@test",
    }
    return pickle.dumps(body), headers


def test_pickled_message_is_refused_not_executed(tmp_path, redis_server, sqlite_url):
    redis, db_url = redis_server, sqlite_url
    marker = str(tmp_path / "pwned")
    raw, headers = _pickled_task_message(marker)
    # positive control: this body really does run code when unpickled
    control = str(tmp_path / "control")
    pickle.loads(pickle.dumps(((_Payload(control),), {}, {})))
    assert os.path.isdir(control)

    # our own producer puts JSON on the wire
    ids = submit(db_url, redis.url, sorted(write_pages(tmp_path / "scans", 2)))
    with redis.client() as client:
        sent = [json.loads(m) for m in client.lrange(QUEUE, 0, -1)]
    assert sent and {m["content-type"] for m in sent} == {"application/json"}

    from kombu import Connection

    with Connection(redis.url) as conn:
        conn.Producer().publish(
            raw,  # the pickled bytes as they are, labelled as pickle
            content_type="application/x-python-serialize",
            content_encoding="binary",
            exchange="",
            routing_key=QUEUE,
            headers=headers,
        )
    with redis.client() as client:
        types = [json.loads(m)["content-type"] for m in client.lrange(QUEUE, 0, -1)]
    assert "application/x-python-serialize" in types
    assert not os.path.exists(marker)
    # ...and a normal job queued behind it
    more = submit(db_url, redis.url, sorted(write_pages(tmp_path / "more", 1)))
    worker = Worker(db_url, redis.url, tmp_path / "worker.log", concurrency=1)
    try:
        wait_all_final(db_url, ids + more, timeout=120, workers=[worker], broker=redis)
        wait_for(lambda: "untrusted content" in worker.text(), 30, "the refusal in the log")
        worker.check_alive()
    finally:
        worker.stop()
    assert not os.path.exists(marker)  # never unpickled, so never executed
    assert audit(db_url, ids + more).done == 3
    assert redis.queue_length() == 0 and redis.unacked() == 0  # dropped, not looping


class OpenWatch:
    """Linux inotify on one file: reports whether any process opened or read it."""

    IN_ACCESS, IN_OPEN = 0x1, 0x20

    def __init__(self, path: os.PathLike) -> None:
        import ctypes

        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK)
        assert self.fd >= 0
        mask = self.IN_ACCESS | self.IN_OPEN
        assert self.libc.inotify_add_watch(self.fd, os.fsencode(path), mask) >= 0

    def touched(self) -> bool:
        try:
            return len(os.read(self.fd, 4096)) > 0
        except BlockingIOError:
            return False

    def close(self) -> None:
        os.close(self.fd)


def test_input_roots_refuse_paths_without_opening_them(tmp_path, redis_server, sqlite_url):
    redis, db_url = redis_server, sqlite_url
    root = tmp_path / "scans"
    pages = sorted(write_pages(root, 2))
    outside = tmp_path / "outside"
    outside.mkdir()
    # A perfectly readable image just outside the root, watched with inotify: any open
    # or read of it by the worker would show up as an event.
    bait = outside / "bait.png"
    bait.write_bytes(open(pages[0], "rb").read())  # noqa: SIM115
    os.symlink(bait, root / "link_to_bait.png")
    escapes = [
        "/etc/passwd",
        str(bait),
        f"{root}/../outside/bait.png",
        f"{root}/../../../../../../etc/passwd",
        str(root / "link_to_bait.png"),
    ]
    watch = OpenWatch(bait)
    worker = Worker(
        db_url, redis.url, tmp_path / "worker.log", concurrency=1, OCRQ_INPUT_ROOTS=str(root)
    )
    try:
        ids = submit(db_url, redis.url, escapes + pages)
        assert not watch.touched()  # submitting (our add_jobs) does not read it either
        wait_all_final(db_url, ids, timeout=120, workers=[worker])
        opened_by_worker = watch.touched()
        # control: the watch does see an open
        bait.read_bytes()
        assert watch.touched()
    finally:
        watch.close()
        worker.stop()
    store = Store(db_url, create=False)
    jobs = {j["id"]: j for j in store.iter_jobs()}
    store.dispose()
    for job_id in ids[: len(escapes)]:
        job = jobs[job_id]
        assert job["status"] == "failed", job
        assert "outside the configured input roots" in job["error"], job["error"]
        assert "root:" not in job["error"]
    assert all(jobs[i]["status"] == "done" for i in ids[len(escapes) :])
    assert not opened_by_worker  # the file outside the root was never opened


SECRET = "s3cr3t-Pa55-Zq81"


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text


@pytest.mark.parametrize("tls", [False, True], ids=["password", "tls+password"])
def test_password_and_tls_broker_urls_work_and_stay_secret(tmp_path, sqlite_url, tls):
    db_url = sqlite_url
    redis = RedisServer(tmp_path, password=SECRET, tls=tls)
    assert redis.url.startswith("rediss://" if tls else "redis://")
    folder = tmp_path / "scans"
    write_pages(folder, 3)
    worker = Worker(db_url, redis.url, tmp_path / "worker.log", concurrency=1)
    try:
        out = ocrq_cli(["submit", str(folder), "-p", "*.png", "--db", db_url], redis.url)
        assert out.returncode == 0, out.stderr
        assert "3 queued" in out.stdout
        _no_secret(out.stdout, out.stderr)
        assert ":***@" in out.stdout  # the broker is named, its password is not
        store = Store(db_url, create=False)
        ids = [j["id"] for j in store.iter_jobs()]
        store.dispose()
        wait_all_final(db_url, ids, timeout=120, workers=[worker])
        status = ocrq_cli(["status", "--db", db_url], redis.url)
        assert "done 3" in status.stdout, status.stdout + status.stderr
        _no_secret(status.stdout, status.stderr)
        exported = ocrq_cli(["export", "--db", db_url, "--format", "jsonl"], redis.url)
        _no_secret(exported.stdout, exported.stderr)
    finally:
        worker.stop()
        redis.stop()
    _no_secret(worker.text())
    assert "Connected to redis" in worker.text() or "Connected to rediss" in worker.text()
    # nothing in the database holds it either (job rows, batches, provenance, options)
    db_bytes = (tmp_path / "results.db").read_bytes()
    wal = tmp_path / "results.db-wal"
    db_bytes += wal.read_bytes() if wal.exists() else b""
    assert SECRET.encode() not in db_bytes
    assert audit(db_url, ids).done == 3


def test_wrong_password_and_unreachable_db_errors_name_no_secret(tmp_path, sqlite_url):
    db_url = sqlite_url
    redis = RedisServer(tmp_path, password="the-real-one")
    try:
        bad_broker = redis.url.replace("the-real-one", SECRET)
        folder = tmp_path / "scans"
        write_pages(folder, 1)
        started = time.monotonic()
        out = ocrq_cli(["submit", str(folder), "--db", db_url], bad_broker)
        assert out.returncode == 3, out.stdout + out.stderr  # BrokerUnavailable
        assert time.monotonic() - started < 60
        assert "cannot reach the broker" in out.stderr
        _no_secret(out.stdout, out.stderr)
    finally:
        redis.stop()
    bad_db = f"postgresql+psycopg://ocrq:{SECRET}@127.0.0.1:1/ocrq"
    out = ocrq_cli(["status", "--db", bad_db], "redis://127.0.0.1:1/0")
    assert out.returncode == 4, out.stdout + out.stderr  # DatabaseUnavailable
    _no_secret(out.stdout, out.stderr)


def test_job_rows_store_no_broker_secret(tmp_path, sqlite_url):
    """Belt and braces for the in-process path: rows written by add_jobs/submit hold no
    broker URL at all."""
    store, ids = add_jobs(sqlite_url, [str(tmp_path / "x.png")])
    job = store.get_job(ids[0])
    store.dispose()
    assert job is not None
    assert "redis" not in json.dumps(job, default=str)
