"""CER and throughput of the real queue path on eval folders: `ocrq submit` into Redis,
a real `celery -A worker worker` with N pinned children, results read from the DB.

    python scripts/queue_eval.py ../shared/eval/lines ../shared/eval/pages/sroie ...

Throughput is taken from the jobs' own clock (first job start to last job finish), so
worker start-up and model loading are not counted; the wall time of the whole run
(submit + start-up + drain) is printed too. Scoring is `ocrq bench`'s, per set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parent.parent


@click.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--workers", default=2, show_default=True)
@click.option("--precision", default="auto", show_default=True)
@click.option("--broker", default="redis://127.0.0.1:6379/13", show_default=True)
@click.option("--limit", default=0, help="At most N items per set.")
def main(folders, workers, precision, broker, limit) -> None:
    os.environ["OCRQ_BROKER_URL"] = broker
    sys.path.insert(0, str(REPO))
    from bench.evalsets import discover, score_item

    print(
        f"{'set':16} {'items':>5} {'done':>5} {'CER %':>7} {'items/s':>8} {'lines/s':>8} {'wall s':>7}"
    )
    for evalset in discover(list(folders), limit=limit or None):
        row = _run_set(evalset, workers, precision, broker, score_item)
        print(
            f"{evalset.name:16} {row['items']:5d} {row['done']:5d} {100 * row['cer']:7.2f} "
            f"{row['items_s']:8.2f} {row['lines_s']:8.1f} {row['wall']:7.1f}"
        )


def _run_set(evalset, workers, precision, broker, score_item) -> dict:
    import redis

    from ocrq.storage import Store
    from worker.command import celery_worker_argv

    redis.Redis.from_url(broker).flushdb()
    with tempfile.TemporaryDirectory(prefix="ocrq-queue-eval-") as tmp:
        db_url = f"sqlite:///{tmp}/results.db"
        env = {**os.environ, "OCRQ_DB_URL": db_url, "OCRQ_PRECISION": precision}
        # absolute: `ocrq submit` runs in the repo, the folders were named from the cwd
        images = [str(Path(item.image).resolve()) for item in evalset.items]
        started = time.perf_counter()
        submit = [sys.executable, "-m", "producer.cli", "submit", *images, "--db", db_url]
        submit += ["--precision", precision]
        subprocess.run(submit, cwd=REPO, env=env, check=True, capture_output=True)
        log_path = Path(tmp) / "worker.log"
        worker = subprocess.Popen(
            celery_worker_argv(workers, "WARNING"),
            cwd=REPO,
            env=env,
            stdout=log_path.open("w"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        store = Store(db_url)
        try:
            while True:
                counts = store.counts()
                if counts["done"] + counts["failed"] + counts["duplicate"] >= len(images):
                    break
                if worker.poll() is not None:
                    raise SystemExit(f"worker exited: {log_path.read_text()[-2000:]}")
                time.sleep(0.5)
            wall = time.perf_counter() - started
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(60)
        return _score(store, evalset, score_item, wall)


def _score(store, evalset, score_item, wall) -> dict:
    from ocrq.results import RegionResult, page_text

    by_path = {job["path"]: job for job in store.iter_jobs()}
    regions = store.regions_for([job["id"] for job in by_path.values()])
    dist = total = lines = done = 0
    for item in evalset.items:
        job = by_path[str(Path(item.image).resolve())]
        found = regions.get(job["id"], [])
        boxes = [(r["x0"], r["y0"], r["x1"], r["y1"], r["text"]) for r in found if r["page"] == 0]
        d, n = score_item(
            item, evalset.conventions, page_text(map(RegionResult.from_row, found)), boxes
        )
        dist, total, lines = dist + d, total + n, lines + len(found)
        done += job["status"] == "done"
    spans = [(j["started_at"], j["finished_at"]) for j in by_path.values() if j["finished_at"]]
    span = max(f for _, f in spans) - min(s for s, _ in spans)
    store.dispose()
    return {
        "items": len(evalset.items),
        "done": done,
        "cer": dist / max(total, 1),
        "items_s": len(spans) / span,
        "lines_s": lines / span,
        "wall": wall,
    }


if __name__ == "__main__":
    main()
