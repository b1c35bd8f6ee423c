"""Helpers for fault-injection tests: a private redis-server per test (so a test can kill,
restart or password-protect it without touching the machine's shared one), real
`celery -A worker worker` subprocesses, job submission through the real producer code,
and an audit that counts what came out (done, failed, lost, duplicated region rows).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from queue_helpers import REPO, start_worker, stop_worker

from ocrq.config import EngineOptions
from ocrq.queue import Enqueuer
from ocrq.storage import DONE, DUPLICATE, FAILED, NewJob, Store, encode_path, options_key

QUEUE = "ocrq.ppocr"
FINAL = (DONE, FAILED, DUPLICATE)

# Small knobs for tests: a dead worker's messages come back within VISIBILITY +
# RESTORE_INTERVAL seconds (the defaults are 600 s / 10 s, see worker/config.py).
FAST_RECOVERY = {
    "OCRQ_VISIBILITY_TIMEOUT": "8",
    "OCRQ_RESTORE_INTERVAL": "1",
    # A broker outage can eat a message kombu had just popped (BRPOP) but not yet
    # recorded as unacked; the workers' lost-message check is what brings it back.
    "OCRQ_RECONCILE_INTERVAL": "3",
    "OCRQ_RECONCILE_GRACE": "5",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server of our own on a free port: safe to kill -9 and restart.

    `persist=True` turns on the append-only file with fsync on every write, so a killed
    server comes back with every message it acknowledged (what a production Redis under a
    batch queue should run with).
    """

    def __init__(
        self, tmp: Path, password: str | None = None, persist: bool = False, tls: bool = False
    ) -> None:
        self.port = _free_port()
        self.dir = tmp / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.persist = persist
        self.tls = make_tls_files(self.dir) if tls else None
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            ca = self.tls["ca"]
            return (
                f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
            )
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _args(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: `apt-get install redis-server`")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        args += ["--save", "", "--protected-mode", "yes"]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", self.tls["cert"], "--tls-key-file", self.tls["key"]]
            args += ["--tls-ca-cert-file", self.tls["ca"]]
        return args

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        tls = {"ssl": True, "ssl_ca_certs": self.tls["ca"]} if self.tls else {}
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **tls)

    def answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except Exception:
            return False

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while not self.answers():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown save, clients see their connections reset."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def queue_length(self, queue: str = QUEUE) -> int:
        with self.client() as client:
            return int(client.llen(queue))

    def unacked(self) -> int:
        with self.client() as client:
            return int(client.hlen("unacked"))


def make_tls_files(folder: Path) -> dict[str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        str(folder / n) for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt")
    )
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    quiet = {"check": True, "capture_output": True}
    subprocess.run(["openssl", "genrsa", "-out", ca_key, "2048"], **quiet)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-new",
            "-key",
            ca_key,
            "-days",
            "2",
            "-subj",
            "/CN=ocrq test CA",
        ]
        + ["-out", ca],
        **quiet,
    )
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], **quiet)
    subprocess.run(
        ["openssl", "req", "-new", "-key", key, "-subj", "/CN=127.0.0.1", "-out", csr], **quiet
    )
    subprocess.run(
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial"]
        + ["-days", "2", "-extfile", str(ext), "-out", cert],
        **quiet,
    )
    return {"ca": ca, "key": key, "cert": cert}


def write_slow_pages(folder: Path, count: int, lines: int = 40) -> dict[str, str]:
    """Valid text pages with many lines: each takes the engine a second or more, long
    enough to kill a worker mid-task or to hit a tiny time limit."""
    from fixtures_text import render_page
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    words = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
    for i in range(count):
        text = [f"Line {n} of page {i}: {words[n % 8]} {words[(n + i) % 8]}" for n in range(lines)]
        path = folder / f"slow_{i:03d}.png"
        Image.fromarray(render_page(text, height=32)).save(path)
        truth[str(path.resolve())] = "\n".join(text)
    return truth


def add_jobs(db_url: str, paths: Sequence[str | os.PathLike]) -> tuple[Store, list[int]]:
    """Job rows for `paths` exactly as `ocrq submit` records them (any path, even one the
    walker would skip: the worker must cope with whatever a message names)."""
    import hashlib

    options = EngineOptions(precision="fp32")
    store = Store(db_url)
    batch = store.create_batch(["fault-test"], [], options.as_dict())
    jobs = []
    for p in paths:
        raw = os.fsencode(p)
        try:
            size = os.lstat(p).st_size
        except OSError:
            size = 0
        sha = hashlib.sha256(raw).hexdigest()  # unique per path: no dedupe in these tests
        jobs.append(NewJob(encode_path(os.fsdecode(p)), sha, size))
    key = options_key(options)
    ids = store.add_jobs(batch, jobs, options.as_dict(), key)
    return store, ids


def enqueue(
    store: Store,
    broker_url: str,
    job_ids: Sequence[int],
    chunk: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Publish through the producer's own pipelined enqueuer, to `broker_url`."""

    Enqueuer(broker_url, QUEUE, chunk=chunk).send(job_ids, store, progress=progress)


def submit(db_url: str, broker_url: str, paths: Sequence[str | os.PathLike]) -> list[int]:
    store, ids = add_jobs(db_url, paths)
    try:
        enqueue(store, broker_url, ids)
    finally:
        store.dispose()
    return ids


def ocrq_cli(args: Sequence[str], broker_url: str, **env: str) -> subprocess.CompletedProcess:
    """Run the real `ocrq` command line in a subprocess (its broker is fixed at import)."""
    full_env = {**os.environ, "OCRQ_BROKER_URL": broker_url, "PYTHONUNBUFFERED": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


class Worker:
    """A real `celery -A worker worker` with its own log, pointed at a given broker."""

    def __init__(
        self, db_url: str, broker_url: str, log: Path, concurrency: int = 2, **env: str
    ) -> None:
        self.log = log
        self.proc = start_worker(
            db_url, log, concurrency=concurrency, OCRQ_BROKER_URL=broker_url, **env
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def children(self) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def wait_children(self, count: int, timeout: float = 60) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = self.children()
            if len(kids) >= count:
                return kids
            self.check_alive()
            time.sleep(0.1)
        raise AssertionError(f"worker has {self.children()} children\n{self.tail()}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.tail()}")

    def kill_all(self) -> None:
        """kill -9 the main process and every child at once (a machine losing power)."""
        procs = [self.pid, *self.children()]
        for pid in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        for pid in procs:
            _wait_gone(pid)

    def stop(self) -> None:
        stop_worker(self.proc)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def running_jobs(db_url: str) -> list[dict]:
    store = Store(db_url, create=False)
    try:
        return [j for j in store.iter_jobs() if j["status"] == "running"]
    finally:
        store.dispose()


def wait_for(predicate: Callable[[], object], timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_all_final(
    db_url: str,
    job_ids: Iterable[int],
    timeout: float,
    workers: Sequence[Worker] = (),
    broker: RedisServer | None = None,
) -> float:
    """Wait until every job is done/failed/duplicate, and with `broker` until its queue is
    empty and nothing is unacked too: a task writes its row, then releases memory (a heap
    trim after a long job) and returns, and only then is its message acked, so a test
    that stops the worker or counts unacked messages must wait for that as well. Returns
    the seconds it took."""
    wanted = set(job_ids)
    store = Store(db_url, create=False)
    started = time.monotonic()
    try:
        while True:
            open_ = [
                j["id"] for j in store.iter_jobs() if j["id"] in wanted and j["status"] not in FINAL
            ]
            if not open_ and (
                broker is None or (broker.queue_length() == 0 and broker.unacked() == 0)
            ):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                tails = "\n".join(w.tail() for w in workers)
                raise AssertionError(f"{len(open_)} jobs not final: {open_[:20]}\n{tails}")
            for w in workers:
                w.check_alive()
            time.sleep(0.2)
    finally:
        store.dispose()


@dataclass
class Audit:
    """What came out of a run, from the results database alone."""

    submitted: int
    status: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    lost: list[int] = field(default_factory=list)  # submitted but not final
    duplicated: int = 0  # region rows beyond the first per (job, page, idx)
    attempts: dict[int, int] = field(default_factory=dict)
    workers: set[str] = field(default_factory=set)
    regions: dict[int, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.status[DONE]

    @property
    def failed(self) -> int:
        return self.status[FAILED]

    def row(self, fault: str) -> str:
        reasons = "; ".join(f"{k} x{v}" for k, v in sorted(self.reasons.items())) or "-"
        return (
            f"| {fault} | {self.submitted} | {self.done} | {self.failed} ({reasons}) | "
            f"{len(self.lost)} | {self.duplicated} |"
        )


def audit(db_url: str, job_ids: Iterable[int]) -> Audit:
    from sqlalchemy import func, select

    from ocrq.storage import RegionRow

    wanted = set(job_ids)
    result = Audit(submitted=len(wanted))
    store = Store(db_url, create=False)
    try:
        for job in store.iter_jobs():
            if job["id"] not in wanted:
                continue
            result.status[job["status"]] += 1
            result.attempts[job["id"]] = job["attempts"]
            if job["worker"]:
                result.workers.add(job["worker"])
            if job["status"] == FAILED:
                result.reasons[_reason_kind(job["error"] or "")] += 1
            if job["status"] not in FINAL:
                result.lost.append(job["id"])
        with store.read() as conn:
            dup_rows = conn.execute(
                select(RegionRow.job_id, RegionRow.page, RegionRow.idx, func.count())
                .group_by(RegionRow.job_id, RegionRow.page, RegionRow.idx)
                .having(func.count() > 1)
            ).all()
            result.duplicated = sum(row[3] - 1 for row in dup_rows if row[0] in wanted)
            per_job = conn.execute(
                select(RegionRow.job_id, func.count()).group_by(RegionRow.job_id)
            ).all()
            result.regions = {j: n for j, n in per_job if j in wanted}
    finally:
        store.dispose()
    missing = wanted - set(result.attempts)
    result.lost.extend(sorted(missing))
    return result


def _reason_kind(error: str) -> str:
    """The reason without its per-file details, for the summary table."""
    return error.split(":")[0][:60]


def print_row(fault: str, result: Audit) -> None:
    # Shown with `pytest -s` (and collected in docs/faults.md): the report table row.
    print("\nFAULT-TABLE " + result.row(fault))


def job_texts(db_url: str) -> dict[str, str]:
    """{path: the job's recognized text (regions in reading order, space-joined)}."""
    store = Store(db_url, create=False)
    try:
        jobs = list(store.iter_jobs())
        regions = store.regions_for([j["id"] for j in jobs])
        return {
            j["path"]: " ".join(r["text"] for r in regions[j["id"]])
            for j in jobs
            if j["status"] == DONE
        }
    finally:
        store.dispose()


def max_cer(db_url: str, truth: dict[str, str]) -> float:
    """The worst page CER: a lost line or a duplicated region shows up here as well."""
    from ocrq.scoring import cer

    texts = job_texts(db_url)
    return max(cer(texts.get(path, ""), ref.replace("\n", " ")) for path, ref in truth.items())


def write_slow_tiff(path: Path, pages: int = 6, lines: int = 40) -> str:
    """A valid multi-page TIFF of text pages: pathological only in how long it takes
    (~1-3 s of OCR per page here), the way a 500-page scan would be."""
    from fixtures_text import render_page
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [
        Image.fromarray(render_page([f"Page {p} line {n} of a long scan" for n in range(lines)]))
        for p in range(pages)
    ]
    frames[0].save(path, save_all=True, append_images=frames[1:], compression="tiff_deflate")
    return str(path.resolve())
