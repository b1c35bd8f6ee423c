"""Enqueue rate for N jobs: our pipelined Enqueuer vs a plain `apply_async` loop, side by
side in one run, into a real Redis (a scratch database, flushed before and after); then
what the workers' periodic lost-message check costs with all N waiting.

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
    from ocrq.queue import TASK_NAME, Enqueuer, broker_job_ids, nothing_can_be_lost, queue_name
    from ocrq.storage import Store, options_key
    from producer.submit import HashedFile, plan_jobs, record_jobs

    client = redis.Redis.from_url(broker)
    queue = queue_name("bench")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        options = EngineOptions()
        key = options_key(options)
        files = [HashedFile(f"/bench/{i}.png", f"{i:064x}", 1) for i in range(jobs)]
        started = time.perf_counter()
        plan = plan_jobs(store, files, key, force=False)
        ids = record_jobs(store, store.create_batch([], [], options.as_dict()), plan, options)
        rows.append(("record job rows (SQLite)", time.perf_counter() - started))

        client.flushdb()
        enqueuer = Enqueuer(broker, queue, chunk=chunk)
        started = time.perf_counter()
        enqueuer.send(ids, store)
        rows.append(
            (
                f"ocrq Enqueuer (pipelined, chunk {chunk}, + mark_enqueued)",
                time.perf_counter() - started,
            )
        )
        assert client.llen(queue) == jobs, client.llen(queue)
        # what each worker's periodic lost-message check costs with all of them waiting
        started = time.perf_counter()
        assert nothing_can_be_lost(store, broker, lambda _engine: queue)
        check_s = time.perf_counter() - started
        started = time.perf_counter()
        assert len(broker_job_ids(broker, queue) or ()) == jobs
        scan_s = time.perf_counter() - started

        client.flushdb()
        started = time.perf_counter()
        with enqueuer.app.connection_for_write(broker) as conn, conn.Producer() as producer:
            for job_id in ids:
                enqueuer.app.send_task(TASK_NAME, (job_id,), producer=producer, queue=queue)
        rows.append(("apply_async loop (one round trip each)", time.perf_counter() - started))
        assert client.llen(queue) == jobs
        client.flushdb()
        store.dispose()
    base = rows[2][1]
    print(f"{'path':62} {'seconds':>8} {'jobs/s':>9} {'vs loop':>8}")
    for name, seconds in rows:
        print(f"{name:62} {seconds:8.2f} {jobs / seconds:9,.0f} {base / seconds:7.2f}x")
    print(f"\nlost-message check with {jobs:,} jobs waiting (each worker, every round):")
    print(f"  counts only (nothing_can_be_lost: LLEN/HLEN + one COUNT)  {check_s * 1e3:9.1f} ms")
    print(f"  full scan (broker_job_ids: LRANGE + parse every message)  {scan_s * 1e3:9.1f} ms")


if __name__ == "__main__":
    main()
