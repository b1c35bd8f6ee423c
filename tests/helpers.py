"""The one place tests get real services and processes from: free ports, redis-server
(the session's shared one and private ones a test may kill, restart or lock with a
password), real `celery -A worker worker` subprocesses, waiting for jobs, submitting
through the real producer code, and results-database URLs (a SQLite file, a PostgreSQL
database of its own per test). `conftest.py` builds its fixtures from these.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import psutil

from ocrq.config import EngineOptions, InputLimits
from ocrq.documents import count_pages
from ocrq.errors import BadImage
from ocrq.queue import Enqueuer
from ocrq.storage import DONE, DUPLICATE, FAILED, NewJob, Store, encode_path, options_key

REPO = Path(__file__).resolve().parent.parent
QUEUE = "ocrq.ppocr"
FINAL = (DONE, FAILED, DUPLICATE)

# ---------------------------------------------------------------- ports and Redis

SHARED_REDIS_PORT = 6379
# the session broker's database: tests flush only this one (OCRQ_TEST_REDIS_DB lets two
# suites share one Redis without flushing each other's queues)
REDIS_TEST_DB = int(os.environ.get("OCRQ_TEST_REDIS_DB", "11"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_answers(port: int) -> bool:
    """A plain PING on 127.0.0.1:`port` (no password, no TLS)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server of our own on a free port: safe to kill -9 and restart.

    `persist=True` turns on the append-only file with fsync on every write, so a killed
    server comes back with every message it acknowledged (what a production Redis under a
    batch queue should run with). Use it as a context manager, or call `stop()`.
    """

    def __init__(
        self, tmp: Path, password: str | None = None, persist: bool = False, tls: bool = False
    ) -> None:
        self.port = free_port()
        self.dir = tmp / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.persist = persist
        self.tls = make_tls_files(self.dir) if tls else None
        self.proc: subprocess.Popen | None = None
        self.start()

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

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


def session_redis(tmp: Path) -> tuple[int, RedisServer | None]:
    """The Redis the whole session shares: the machine's own on 6379 when it answers,
    else one of ours on a free port (returned, for the caller to stop at the end)."""
    if redis_answers(SHARED_REDIS_PORT):
        return SHARED_REDIS_PORT, None
    server = RedisServer(tmp)
    return server.port, server


def session_broker_url(port: int | str) -> str:
    return f"redis://127.0.0.1:{port}/{REDIS_TEST_DB}"


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
        ["openssl", "req", "-x509", "-new", "-key", ca_key, "-days", "2"]
        + ["-subj", "/CN=ocrq test CA", "-out", ca],
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


# ---------------------------------------------------------------- results databases


def sqlite_file_url(path: Path) -> str:
    return f"sqlite:///{path}"


PG_ADMIN_URL = os.environ.get(
    "OCRQ_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used (None when it can): the reason a skip or failure names."""
    try:
        import psycopg  # noqa: F401
        from sqlalchemy import create_engine, text

        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # report why, so a skip is never silent
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}: {exc}"


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database of its own; yields its URL, drops it after."""
    from sqlalchemy import create_engine, text

    name = f"ocrq_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# ---------------------------------------------------------------- submitting


def add_jobs(db_url: str, paths: Sequence[str | os.PathLike]) -> tuple[Store, list[int]]:
    """Job rows for `paths` exactly as `ocrq submit` records them, one per page (any
    path, even one the walker would skip: the worker must cope with whatever a message
    names; a file whose pages cannot be counted is one job, failed by the worker)."""
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
        pages = _pages(p)
        path = encode_path(os.fsdecode(p))
        jobs += [NewJob(path, sha, size, page=n, doc_pages=pages) for n in range(pages)]
    key = options_key(options)
    ids = store.add_jobs(batch, jobs, options.as_dict(), key)
    return store, ids


def _pages(path: str | os.PathLike) -> int:
    """Pages of a document (PDF, TIFF) as the producer counts them; any other path one,
    unread (the security tests watch that submitting opens no bait file)."""
    if not os.fsdecode(path).lower().endswith((".pdf", ".tif", ".tiff")):
        return 1
    try:
        return count_pages(path, InputLimits())
    except (BadImage, OSError):
        return 1


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
    """`add_jobs` then `enqueue`: the job ids."""
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


# ---------------------------------------------------------------- workers


class Worker:
    """A real `celery -A worker worker` (argv from `worker.command.celery_worker_argv`) in a
    session of its own, with its own log, on `db_url` and `broker_url`; `**env` adds
    OCRQ_* settings. Use it as a context manager, or call `stop()`."""

    def __init__(
        self, db_url: str, broker_url: str, log: Path, concurrency: int = 2, **env: str
    ) -> None:
        from worker.command import celery_worker_argv  # importing `worker` limits threads

        self.log = log
        cmd = celery_worker_argv(concurrency, "INFO", f"test{os.getpid()}@%h", heartbeat=False)
        full_env = {**os.environ, "OCRQ_DB_URL": db_url, "OCRQ_BROKER_URL": broker_url}
        full_env.update({"PYTHONUNBUFFERED": "1", **env})
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=full_env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def children(self) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def wait_children(self, count: int, timeout: float = 60) -> list[int]:
        def enough() -> list[int] | None:
            kids = self.children()
            return kids if len(kids) >= count else None

        detail = lambda: f"worker has {self.children()} children"  # noqa: E731
        return wait_for(enough, timeout, f"{count} worker children", 0.1, [self], detail)

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
        """SIGTERM to the worker's whole process group (warm shutdown), SIGKILL after 30 s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def tail(self, chars: int = 4000) -> str:
        return self.text()[-chars:]

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


# ---------------------------------------------------------------- waiting


def wait_for(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    poll: float = 0.05,
    workers: Sequence[Worker] = (),
    detail: Callable[[], str] | None = None,
):
    """Poll `predicate` until it returns something truthy, and return that. Fails (an
    AssertionError naming `what`, `detail()` and the workers' log tails) after `timeout`
    seconds, or at once when one of `workers` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            lines = [f"timed out after {timeout} s waiting for {what}"]
            lines += [detail()] if detail else []
            lines += [w.tail() for w in workers]
            raise AssertionError("\n".join(lines))
        for w in workers:
            w.check_alive()
        time.sleep(poll)


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

    def open_jobs() -> list[int]:
        return [
            j["id"] for j in store.iter_jobs() if j["id"] in wanted and j["status"] not in FINAL
        ]

    def settled() -> bool:
        return not open_jobs() and (
            broker is None or (broker.queue_length() == 0 and broker.unacked() == 0)
        )

    def not_final() -> str:
        left = open_jobs()
        return f"{len(left)} jobs not final: {left[:20]}"

    try:
        wait_for(settled, timeout, "every job final", 0.2, workers, not_final)
        return time.monotonic() - started
    finally:
        store.dispose()


def wait_until_finished(
    db_url: str, total: int, timeout: float, worker: Worker | None = None
) -> dict[str, int]:
    """Wait until `total` jobs of the database are done/failed/duplicate (however they
    were submitted); returns `Store.counts()`."""
    store = Store(db_url)

    def finished() -> dict[str, int] | None:
        counts = store.counts()
        return counts if sum(counts[s] for s in FINAL) >= total else None

    try:
        workers = [worker] if worker else []
        what = f"{total} jobs finished"
        return wait_for(finished, timeout, what, 0.2, workers, lambda: f"{store.counts()}")
    finally:
        store.dispose()


def work_through(
    db_url: str, broker_url: str, total: int, log: Path, concurrency: int, timeout: float
) -> dict[str, int]:
    """Start a worker on `db_url`, wait until `total` jobs are finished, stop it; returns
    the counts."""
    with Worker(db_url, broker_url, log, concurrency=concurrency) as worker:
        return wait_until_finished(db_url, total, timeout=timeout, worker=worker)
