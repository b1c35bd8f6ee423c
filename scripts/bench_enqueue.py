"""Enqueue rate for N jobs: our pipelined Enqueuer vs a plain `apply_async` loop, side by
side in one run, into a real Redis (a scratch database, flushed before and after).

    python scripts/bench_enqueue.py --jobs 10000 --broker redis://127.0.0.1:6379/12
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import click


@click.command()
@click.option("--jobs", default=10_000, show_default=True)
@click.option("--broker", default="redis://127.0.0.1:6379/12", show_default=True)
@click.option("--chunk", default=1000, show_default=True)
def main(jobs: int, broker: str, chunk: int) -> None:
    os.environ["OCRQ_BROKER_URL"] = broker
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import redis

    from ocrq.config import EngineOptions
    from ocrq.storage import Store, model_key
    from producer.submit import Enqueuer, HashedFile, plan_jobs, record_jobs
    from worker.config import queue_name

    client = redis.Redis.from_url(broker)
    queue = queue_name("bench")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        options = EngineOptions()
        key = model_key(options.engine, options.model, options.precision)
        files = [HashedFile(f"/bench/{i}.png", f"{i:064x}", 1) for i in range(jobs)]
        started = time.perf_counter()
        plan = plan_jobs(store, files, key, force=False)
        ids = record_jobs(store, store.create_batch([], [], options.as_dict()), plan, options)
        rows.append(("record job rows (SQLite)", time.perf_counter() - started))

        client.flushdb()
        enqueuer = Enqueuer(queue, chunk=chunk, broker_url=broker)
        started = time.perf_counter()
        enqueuer.send(ids, store)
        rows.append(
            (
                f"ocrq Enqueuer (pipelined, chunk {chunk}, + mark_enqueued)",
                time.perf_counter() - started,
            )
        )
        assert client.llen(queue) == jobs, client.llen(queue)

        client.flushdb()
        started = time.perf_counter()
        with enqueuer.app.connection_for_write(broker) as conn, conn.Producer() as producer:
            for job_id in ids:
                enqueuer.task.apply_async((job_id,), producer=producer, queue=queue)
        rows.append(("apply_async loop (one round trip each)", time.perf_counter() - started))
        assert client.llen(queue) == jobs
        client.flushdb()
        store.dispose()
    base = rows[2][1]
    print(f"{'path':62} {'seconds':>8} {'jobs/s':>9} {'vs loop':>8}")
    for name, seconds in rows:
        print(f"{name:62} {seconds:8.2f} {jobs / seconds:9,.0f} {base / seconds:7.2f}x")


if __name__ == "__main__":
    main()
