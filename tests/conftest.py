"""Shared fixtures: a real Redis (the local one, or one started on a free port), a real
PostgreSQL when reachable, real SQLite files in temp dirs.

The broker URL is fixed in `pytest_configure`, before any test imports `worker`, since
the Celery app reads `OCRQ_BROKER_URL` once at import.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REDIS_TEST_DB = 11  # tests flush only this database
_started_redis: subprocess.Popen | None = None


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(port: int, tmp: Path) -> subprocess.Popen:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: `apt-get install redis-server`")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _redis_answers(port):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    return proc


def pytest_configure(config: pytest.Config) -> None:
    global _started_redis
    if "OCRQ_TEST_REDIS_PORT" not in os.environ:
        port = 6379
        if not _redis_answers(port):
            port = free_port()
            tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"ocrq-test-redis-{port}"
            tmp.mkdir(parents=True, exist_ok=True)
            _started_redis = start_redis(port, tmp)
        os.environ["OCRQ_TEST_REDIS_PORT"] = str(port)
    port = os.environ["OCRQ_TEST_REDIS_PORT"]
    os.environ["OCRQ_BROKER_URL"] = f"redis://127.0.0.1:{port}/{REDIS_TEST_DB}"
    # Workers, CLI runs and jobs in the tests run the FP32 engine on every CPU: `auto` would
    # pick INT8 on some CI machines, making results machine-dependent and each fresh models
    # folder quantize first. INT8 and `auto` have their own tests.
    os.environ["OCRQ_PRECISION"] = "fp32"


def pytest_unconfigure(config: pytest.Config) -> None:
    if _started_redis is not None:
        _started_redis.terminate()
        _started_redis.wait(10)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["OCRQ_BROKER_URL"]


@pytest.fixture
def redis_client(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.db'}"


PG_ADMIN_URL = os.environ.get(
    "OCRQ_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _pg_available() -> str | None:
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


@pytest.fixture
def postgres_url():
    reason = _pg_available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI here has PostgreSQL: a skip would hide a regression
        pytest.skip(reason)
    from sqlalchemy import create_engine, text

    name = f"ocrq_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    return request.getfixturevalue("postgres_url")
