"""`ocrq bench FOLDER...`: every runner on every set, side by side in one run.

For each set, the runners go one after another (so the figures of one set are measured
within minutes of each other on this shared, noisy machine), each in its own pinned,
single-threaded processes: our engine per precision, the queue path (`ocrq run` with
pinned workers), RapidOCR's own pipeline and the Tesseract CLI. Peers that are not
installed are reported as such; they are never required.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import click

from bench.evalsets import EvalSet, discover
from bench.pool import PoolResult, run_pool
from bench.report import (
    Row,
    Scored,
    add_ratios,
    draw_chart,
    format_table,
    status_row,
    summarize,
    write_json,
)
from bench.runners import DEFAULT_RUNNERS, RunnerSpec, parse_runner, unavailable
from models.cpu import cpu_model, int8_needs_reduce_range
from ocrq.config import SMALL_CAPS
from ocrq.errors import OcrqError
from ocrq.threads import allowed_cores

FOOTNOTE = (
    "pages/s: items per second over the warm span (every process loaded; queue: first job "
    "start to last job end), all processes together; lines/s: text lines read per second "
    "(items on line sets); p50/p95: seconds per item inside one process; RSS MB: peak of "
    "the runner's largest process; x rapid: pages/s over RapidOCR's on the same set. "
    "On line sets the peers run their one-line modes (RapidOCR recognition only, "
    "Tesseract --psm 7); ours reads every image as a page."
)


@click.command("bench")
@click.argument(
    "folders",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "--runner",
    "-r",
    "runners",
    multiple=True,
    help="ours-fp32, ours-int8, queue, queue-int8, rapidocr, tesseract; '@N' sets the "
    "process count (ours-fp32@1). Repeatable. Default: " + ", ".join(DEFAULT_RUNNERS) + ".",
)
@click.option("--limit", type=int, default=0, help="At most N items per set (0: all).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write results here.")
@click.option("--chart", type=click.Path(path_type=Path), help="Draw CER vs pages/s (PNG).")
@click.option(
    "--workers",
    "-w",
    type=int,
    default=2,
    show_default=True,
    help="Pinned processes per runner (one per core) unless the runner says @N.",
)
@click.option(
    "--models-dir",
    envvar="OCRQ_MODELS",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model cache for our engine (env OCRQ_MODELS).",
)
@click.option(
    "--tesseract",
    "tesseract_cmd",
    default="tesseract",
    show_default=True,
    help="Tesseract executable.",
)
@click.option(
    "--small-caps",
    type=click.Choice(SMALL_CAPS),
    default="auto",
    show_default=True,
    help="Our engine's (ours-*, queue) small capitals setting, as `ocrq run --small-caps`: "
    "score each set by its own transcription convention.",
)
@click.option(
    "--warmup/--no-warmup",
    default=True,
    show_default=True,
    help="Each worker reads the set's first image once, off the clock, before timing "
    "(the queue runner runs as users run it, without one).",
)
@click.pass_context
def bench(ctx, **options) -> None:
    """Score engines and peers on FOLDERs of images with NAME.gt.txt beside each."""
    try:
        _bench(**options)
    except OcrqError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        ctx.exit(exc.exit_code)


def _bench(
    folders,
    runners,
    limit,
    json_path,
    chart,
    workers,
    models_dir,
    tesseract_cmd,
    small_caps,
    warmup,
):
    from ocrq.config import settings_from_env
    from ocrq.errors import UsageError

    if workers < 1:
        raise UsageError("--workers must be at least 1")
    models_dir = Path(models_dir or settings_from_env().models_dir)
    specs = [
        replace(parse_runner(label, workers), small_caps=small_caps)
        for label in (runners or DEFAULT_RUNNERS)
    ]
    sets = discover(folders, limit or None)
    click.echo(
        "sets: "
        + ", ".join(f"{s.name} ({len(s.items)})" for s in sets)
        + f"; runners: {', '.join(s.label for s in specs)}; cores {allowed_cores()}"
        + f"; small caps {small_caps}",
        err=True,
    )
    started = time.time()
    load_before = _loadavg()
    rows: list[Row] = []
    items: list[dict] = []
    for key in dict.fromkeys((s.precision, s.overrides) for s in specs if s.kind != "rapidocr"):
        if any(s.kind in ("ours", "queue") and (s.precision, s.overrides) == key for s in specs):
            _prepare(
                RunnerSpec(f"ours-{key[0]}", "ours", key[0], 1, key[1], small_caps), models_dir
            )
    for evalset in sets:
        for spec in specs:
            scored = _run_one(spec, evalset, models_dir, tesseract_cmd, warmup)
            rows.append(scored.row)
            items.extend(scored.items)
            click.echo(f"  {evalset.name:16s} {spec.label:14s} {_brief(scored.row)}", err=True)
    add_ratios(rows)
    click.echo(format_table(rows))
    load_after = _loadavg()
    click.echo("\n" + FOOTNOTE)
    if load_before and load_after:
        click.echo(
            f"machine load (1-min average) {load_before[0]:.1f} at start, {load_after[0]:.1f} "
            f"at end, on {len(allowed_cores())} cores: compare figures within this run only."
        )
    meta = _meta(folders, specs, limit, workers, models_dir, started)
    meta.update(warmup=warmup, small_caps=small_caps)
    meta.update(loadavg_start=load_before, loadavg_end=load_after)
    if json_path:
        write_json(json_path, rows, items, meta)
        click.echo(f"wrote {json_path}")
    if chart:
        try:
            draw_chart(chart, rows, title=f"ocrq bench, {time.strftime('%Y-%m-%d %H:%M')}")
            click.echo(f"wrote {chart}")
        except ImportError:
            click.echo("no chart: matplotlib is not installed (pip install ocrq[bench])", err=True)


def _run_one(
    spec: RunnerSpec, evalset: EvalSet, models_dir: Path, tesseract_cmd: str, warmup: bool
) -> Scored:
    missing = unavailable(spec, tesseract_cmd)
    if missing:
        return Scored(status_row(spec.label, evalset, spec.processes, missing))
    precision = None
    if spec.kind in ("ours", "queue"):  # what ran: `auto` resolves on this CPU
        from models.ppocr.engine import resolve_precision

        precision = resolve_precision(spec.precision)
    if spec.kind == "queue":
        from bench.queue import run_queue

        result: PoolResult = run_queue(
            [i.image for i in evalset.items],
            spec.processes,
            spec.precision,
            models_dir,
            small_caps=spec.small_caps,
        )
    else:
        line = evalset.conventions.line_images
        factory = ("bench.runners", "make_reader", (spec, str(models_dir), tesseract_cmd))
        tasks = [(i.image, line) for i in evalset.items]
        result = run_pool(factory, tasks, spec.processes, warmup=tasks[0] if warmup else None)
    return summarize(spec.label, evalset, spec.processes, result, precision)


def _prepare(spec: RunnerSpec, models_dir: Path) -> None:
    """Load our engine once in a throwaway process before anything is measured, so files
    made on first use (INT8 models) are not built inside a measured worker (their memory
    would show as that worker's peak RSS)."""
    factory = ("bench.runners", "make_reader", (spec, str(models_dir), "tesseract"))
    result = run_pool(factory, [], 1)
    if result.error:
        click.echo(f"  {spec.label}: {result.error}", err=True)


def _brief(row: Row) -> str:
    if row.status != "ok":
        return row.status
    return (
        f"CER {100 * (row.cer or 0):.2f} %, {row.items_per_s or 0:.2f} items/s "
        f"({row.total_s or 0:.1f} s with start-up)"
    )


def _versions() -> dict:
    import importlib.metadata as md
    import shutil
    import subprocess

    out = {"python": platform.python_version()}
    for package in ("onnxruntime", "rapidocr", "numpy"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = None
    if shutil.which("tesseract"):
        proc = subprocess.run(["tesseract", "--version"], capture_output=True, text=True)
        first = (proc.stdout or proc.stderr).splitlines()
        out["tesseract"] = first[0] if first else None
    return out


def _meta(folders, specs, limit, workers, models_dir, started) -> dict:
    return {
        "command": _command_line(),
        "argv": list(sys.argv),
        "folders": [str(f) for f in folders],
        "runners": [s.label for s in specs],
        "limit": limit or None,
        "workers": workers,
        "models_dir": str(models_dir),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "cores": allowed_cores(),
        "machine": platform.machine(),
        "processor": cpu_model(),
        "int8_reduce_range": int8_needs_reduce_range(),
        "versions": _versions(),
    }


def _loadavg() -> list[float] | None:
    import os

    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _command_line() -> str:
    """`ocrq bench ARGS` as typed (best effort: the words after `bench`, if present)."""
    import shlex

    args = sys.argv[1:]
    if "bench" in args:
        args = args[args.index("bench") + 1 :]
    return shlex.join(["ocrq", "bench", *args])
