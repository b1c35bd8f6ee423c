"""Shared fixtures, each defined here once and built from `tests/helpers.py`: the session's
Redis (the local one, or one started on a free port), a redis-server of a test's own, a
real PostgreSQL when reachable, real SQLite files in temp dirs.

The broker URL is fixed in `pytest_configure`, before any test imports `worker`, since
the Celery app reads `OCRQ_BROKER_URL` once at import.

Tests that start or talk to real services or processes (Redis, celery workers, the local
pool of `ocrq run`, PostgreSQL) carry the `integration` mark, so `pytest -m "not
integration"` runs the unit tests alone. A test that asks for one of the fixtures in
`LIVE_FIXTURES` without that mark is a collection error.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import (
    RedisServer,
    postgres_database,
    postgres_unreachable,
    session_broker_url,
    session_redis,
    sqlite_file_url,
)

_session_redis: RedisServer | None = None

LIVE_FIXTURES = {
    "redis_url",
    "redis_client",
    "redis_server",
    "durable_redis_server",
    "postgres_url",
}


def pytest_configure(config: pytest.Config) -> None:
    global _session_redis
    config.addinivalue_line(
        "markers",
        "integration: starts or talks to real services or processes (Redis, celery "
        "workers, the local pool of `ocrq run`, PostgreSQL); -m 'not integration' "
        "runs the unit tests alone",
    )
    if "OCRQ_TEST_REDIS_PORT" not in os.environ:
        port, _session_redis = session_redis(Path(os.environ.get("TMPDIR", "/tmp")))
        os.environ["OCRQ_TEST_REDIS_PORT"] = str(port)
    os.environ["OCRQ_BROKER_URL"] = session_broker_url(os.environ["OCRQ_TEST_REDIS_PORT"])
    # Workers, CLI runs and jobs in the tests run the FP32 engine on every CPU: `auto` would
    # pick INT8 on some CI machines, making results machine-dependent and each fresh models
    # folder quantize first. INT8 and `auto` have their own tests.
    os.environ["OCRQ_PRECISION"] = "fp32"


def pytest_unconfigure(config: pytest.Config) -> None:
    if _session_redis is not None:
        _session_redis.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [
        item.nodeid
        for item in items
        if LIVE_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests use Redis or PostgreSQL fixtures but are not marked "
            "`integration` (add `pytestmark = pytest.mark.integration` to the module or "
            "@pytest.mark.integration to the test):\n  " + "\n  ".join(unmarked)
        )


# ---------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The session's broker (OCRQ_BROKER_URL): the shared Redis, test database 11."""
    return os.environ["OCRQ_BROKER_URL"]


@pytest.fixture
def redis_client(redis_url):
    """A client on the session's broker database, flushed before and after the test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def redis_server(tmp_path):
    """A redis-server of the test's own on a free port: safe to kill, restart, lock."""
    with RedisServer(tmp_path) as server:
        yield server


@pytest.fixture
def durable_redis_server(tmp_path):
    """The same with the append-only file fsynced on every write: a kill -9 loses no
    message it acknowledged."""
    with RedisServer(tmp_path, persist=True) as server:
        yield server


# ---------------------------------------------------------------- results databases


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite results file, `results.db` in the test's temp dir."""
    return sqlite_file_url(tmp_path / "results.db")


@pytest.fixture
def postgres_url():
    """A PostgreSQL database of the test's own, dropped after; skipped when PostgreSQL is
    unreachable, except under CI, where that fails."""
    reason = postgres_unreachable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI here has PostgreSQL: a skip would hide a regression
        pytest.skip(reason)
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db_url(request, tmp_path):
    """Each storage test twice: on a SQLite file, and on PostgreSQL (integration)."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")
