"""The command line of a real Celery worker, for the tools that start one (the queue
evaluation script, the tests): `celery -A worker worker` with N pinned children.

Gossip and mingle are off: they only talk to other workers, and they add seconds to
start-up that a short run would count.
"""

from __future__ import annotations

import sys


def celery_worker_argv(
    concurrency: int, loglevel: str = "INFO", name: str | None = None, heartbeat: bool = True
) -> list[str]:
    argv = [sys.executable, "-m", "celery", "-A", "worker", "worker"]
    argv += ["--concurrency", str(concurrency), "--loglevel", loglevel]
    argv += ["--without-gossip", "--without-mingle"]
    if not heartbeat:
        argv.append("--without-heartbeat")
    if name:
        argv += ["-n", name]
    return argv
