"""The queue path as users run it: `ocrq run` (embedded pool of pinned warm workers) in a
subprocess on a set's images, with a fresh SQLite results DB, results read back from its
JSON export.

Throughput is taken from the jobs' own clock (first start to last finish), so it counts
the same span as the other runners (warm workers, no process start or model load); the
whole command's wall time is kept too. Peak RSS is the largest of the run's processes,
measured by a small parent that waits for them (`getrusage(RUSAGE_CHILDREN)`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.pool import ItemResult, PoolResult
from ocrq.threads import THREAD_VARS

REPO = Path(__file__).resolve().parents[1]

# Runs a command and writes the peak RSS (KiB) of its whole process tree to argv[1].
RUSAGE_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[2:]).returncode\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(str(peak))\n"
    "sys.exit(code)\n"
)


def run_queue(
    images: Sequence[Path],
    workers: int,
    precision: str,
    models_dir: Path,
    *,
    small_caps: str = "auto",
    model: str | None = None,
    timeout: float = 3600.0,
) -> PoolResult:
    """OCR `images` through `ocrq run --workers N`; results in the order of `images`."""
    result = PoolResult()
    with tempfile.TemporaryDirectory(prefix="ocrq-bench-queue-") as tmp:
        tmp_path = Path(tmp)
        db_url = f"sqlite:///{tmp_path / 'results.db'}"
        export = tmp_path / "export.json"
        rss_file = tmp_path / "peak_rss"
        # `ocrq run` runs in the temp dir: relative paths (`make bench` gives ../shared/eval)
        # must be made absolute here, in the caller's directory
        cmd = [sys.executable, "-m", "producer.cli", "run", *(os.path.abspath(i) for i in images)]
        cmd += ["--db", db_url, "--workers", str(workers), "--precision", precision]
        cmd += ["--small-caps", small_caps]
        if model:  # a file named relative to the caller, or a name (`fast`) as it is
            cmd += ["--model", os.path.abspath(model) if os.path.exists(model) else model]
        cmd += ["--engine", "ppocr", "--no-recursive", "-o", str(export), "--format", "json"]
        env = {
            **os.environ,
            "OCRQ_MODELS": str(models_dir),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        started = time.perf_counter()
        env.update({k: "1" for k in THREAD_VARS})  # the workers set this too; be sure
        proc = subprocess.run(
            [sys.executable, "-c", RUSAGE_WRAPPER, str(rss_file), *cmd],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,  # anything the run writes beside itself stays in the temp dir
            timeout=timeout,
        )
        result.total_seconds = time.perf_counter() - started
        if proc.returncode != 0 or not export.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            result.error = f"ocrq run exited {proc.returncode}: {' | '.join(tail)[:400]}"
            return result
        if rss_file.is_file():
            result.peak_rss_mb = [int(rss_file.read_text()) * 1024 / 1e6]
        records = json.loads(export.read_text(encoding="utf-8"))
        spans = _job_spans(db_url)
    result.items, result.wall_seconds = _match(images, records, spans)
    result.load_seconds = []
    return result


def _job_spans(db_url: str) -> list[tuple[float, float]]:
    from ocrq.storage import Store

    store = Store(db_url, create=False)
    try:
        return [
            (job["started_at"], job["finished_at"])
            for job in store.iter_jobs()
            if job["started_at"] is not None and job["finished_at"] is not None
        ]
    finally:
        store.dispose()


def _match(
    images: Sequence[Path], records: list[dict], spans: list[tuple[float, float]]
) -> tuple[list[ItemResult], float]:
    by_path = {os.path.abspath(r["path"]): r for r in records}
    items = []
    for index, image in enumerate(images):
        record = by_path.get(os.path.abspath(image))
        if record is None:
            items.append(ItemResult(index, error="not in the export"))
            continue
        boxes = []
        regions = record.get("boxes") or []
        for box in regions:
            if box.get("page", 0) != 0:
                continue
            xs = [p[0] for p in box["quad"]]
            ys = [p[1] for p in box["quad"]]
            boxes.append((min(xs), min(ys), max(xs), max(ys), box["text"]))
        text = record.get("text") or ""
        items.append(
            ItemResult(
                index,
                seconds=float(record.get("seconds") or 0.0),
                text=text,
                boxes=boxes,
                lines=len(regions),
                error=record.get("error") if record.get("status") == "failed" else None,
            )
        )
    wall = max(f for _, f in spans) - min(s for s, _ in spans) if spans else 0.0
    return items, wall
