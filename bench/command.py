"""`ocrq bench FOLDER...`: every runner on every set, side by side in one run.

For each set, the runners go one after another (so the figures of one set are measured
within minutes of each other on this shared, noisy machine), each in its own pinned,
single-threaded processes: our engine per precision, the queue path (`ocrq run` with
pinned workers), RapidOCR's own pipeline and the Tesseract CLI. Peers that are not
installed are reported as such; they are never required.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import click

from bench.compose import composed_sets, parse_kinds
from bench.evalsets import EvalSet, discover
from bench.layoutcheck import layout_notes
from bench.pdfbench import check_runners, pdf_bench
from bench.pdfbench import format_table as format_pdf_table
from bench.pdfbench import write_json as write_pdf_json
from bench.pdfrunners import RUNNERS as PDF_RUNNERS
from bench.pdfrunners import PdfRow
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
from bench.runinfo import command_line, loadavg, run_meta, versions
from bench.runners import DEFAULT_RUNNERS, RunnerSpec, parse_runner, unavailable
from ocrq.config import SMALL_CAPS, settings_from_env
from ocrq.errors import OcrqError, UsageError
from ocrq.threads import allowed_cores

FOOTNOTE = (
    "pages/s: items per second over the warm span (every process loaded; queue: first job "
    "start to last job end), all processes together; lines/s: text lines read per second "
    "(items on line sets); p50/p95: seconds per item inside one process; RSS MB: peak of "
    "the runner's largest process; x rapid: pages/s over RapidOCR's on the same set. "
    "On line sets the peers run their one-line modes (RapidOCR recognition only, "
    "Tesseract --psm 7); ours reads every image as a page. CER whole: sets with zones "
    "(UNLV pages, composed columns) scored as whole pages, the text inside any zone in "
    "the runner's own reading order; their CER % is zone by zone."
)
PDF_FOOTNOTE = (
    "CER %: each output's text layer read by pdftotext page by page, in its default "
    "reading order; -layout: read with pdftotext -layout. pages/s: the whole commands, "
    "start to finish; RSS MB: the largest single process; tree MB: the largest sum over "
    "the process tree; x tess, x rapid: pages/s over OCRmyPDF+Tesseract's and "
    "OCRmyPDF+RapidOCR's on the same set."
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
@click.option(
    "--compose",
    multiple=True,
    help="Also bench layout sets made from the page sets given: 'columns' (2 and 3 pages "
    "side by side, with a zone per column), 'rotated' (pages turned 90/180/270); "
    "comma-separated or repeated. Written to a temp folder for the run.",
)
@click.option(
    "--compose-from",
    "compose_from",
    multiple=True,
    help="Compose from this set only (its name in the table, e.g. oldbooks). Repeatable. "
    "Default: every page set given.",
)
@click.option(
    "--pdf",
    is_flag=True,
    help="The PDF bench instead: the page sets as scanned PDFs through OCRmyPDF "
    "(Tesseract, RapidOCR, ocrq plugins) and ocrq's queue, scored by the text layer; "
    "-r then names PDF runners (" + ", ".join(PDF_RUNNERS) + ").",
)
@click.option(
    "--rapidocr-python",
    default=sys.executable,
    show_default=True,
    help="With --pdf: the Python that has ocrmypdf-rapidocr installed.",
)
@click.pass_context
def bench(ctx, **options) -> None:
    """Score engines and peers on FOLDERs of images with NAME.gt.txt beside each."""
    try:
        _bench(**options)
    except OcrqError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        ctx.exit(exc.exit_code)


def _bench(folders, runners, limit, json_path, chart, workers, **options) -> None:  # type: ignore[no-untyped-def]
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    if options["pdf"]:
        if options["compose"] or chart:
            raise UsageError("--pdf takes page sets as they are: no --compose, no --chart")
        _pdf(folders, runners, limit, json_path, workers, options["rapidocr_python"])
        return
    kinds = parse_kinds(options["compose"])
    if options["compose_from"] and not kinds:
        raise UsageError("--compose-from names the sets --compose composes from")
    sets = discover(folders, limit or None)
    with tempfile.TemporaryDirectory(prefix="ocrq-bench-composed-") as tmp:
        if kinds:  # written beside nothing of the user's, gone after the run
            sets += composed_sets(sets, kinds, options["compose_from"], Path(tmp))
        _images(sets, folders, runners, limit, json_path, chart, workers, **options)


def _images(sets, folders, runners, limit, json_path, chart, workers, **options) -> None:  # type: ignore[no-untyped-def]
    small_caps, warmup = options["small_caps"], options["warmup"]
    models_dir = Path(options["models_dir"] or settings_from_env().models_dir)
    specs = [
        replace(parse_runner(label, workers), small_caps=small_caps)
        for label in (runners or DEFAULT_RUNNERS)
    ]
    click.echo(
        "sets: "
        + ", ".join(f"{s.name} ({len(s.items)})" for s in sets)
        + f"; runners: {', '.join(s.label for s in specs)}; cores {allowed_cores()}"
        + f"; small caps {small_caps}",
        err=True,
    )
    started = time.time()
    load_before = loadavg()
    _prepare_engines(specs, models_dir)
    rows: list[Row] = []
    items: list[dict] = []
    for evalset in sets:
        for spec in specs:
            scored = _run_one(spec, evalset, models_dir, options["tesseract_cmd"], warmup)
            rows.append(scored.row)
            items.extend(scored.items)
            click.echo(f"  {evalset.name:16s} {spec.label:14s} {_brief(scored.row)}", err=True)
    add_ratios(rows)
    click.echo(format_table(rows))
    notes = layout_notes(rows)
    if notes:
        click.echo("\nreading order and turned pages (issue #30):\n" + "\n".join(notes))
    load_after = loadavg()
    click.echo("\n" + FOOTNOTE)
    _echo_load(load_before, load_after)
    meta = run_meta(folders, specs, limit, workers, models_dir, started)
    meta.update(warmup=warmup, small_caps=small_caps, compose=list(options["compose"]))
    meta.update(loadavg_start=load_before, loadavg_end=load_after)
    if json_path:
        write_json(json_path, rows, items, meta)
        click.echo(f"wrote {json_path}")
    if chart:
        _chart(chart, rows)


def _pdf(folders, runners, limit, json_path, workers, rapidocr_python) -> None:  # type: ignore[no-untyped-def]
    names = check_runners(runners)
    sets = discover(folders, limit or None)
    click.echo(
        f"PDF sets from: {', '.join(s.name for s in sets)}; runners: {', '.join(names)}", err=True
    )
    started = time.time()
    load_before = loadavg()

    def progress(row: PdfRow) -> None:
        click.echo(f"  {row.set} / {row.runner}: {row.status}", err=True)

    rows = pdf_bench(
        sets, names, workers=workers, rapidocr_python=rapidocr_python, progress=progress
    )
    click.echo(format_pdf_table(rows))
    click.echo("\n" + PDF_FOOTNOTE)
    load_after = loadavg()
    _echo_load(load_before, load_after)
    if json_path:
        meta = {"command": command_line(), "folders": [str(f) for f in folders], "limit": limit}
        meta.update(workers=workers, runners=list(names), cores=allowed_cores())
        meta.update(started=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)))
        meta.update(loadavg_start=load_before, loadavg_end=load_after, versions=versions())
        write_pdf_json(json_path, rows, meta)
        click.echo(f"wrote {json_path}")


def _echo_load(before: list[float] | None, after: list[float] | None) -> None:
    if before and after:
        click.echo(
            f"machine load (1-min average) {before[0]:.1f} at start, {after[0]:.1f} "
            f"at end, on {len(allowed_cores())} cores: compare figures within this run only."
        )


def _chart(path: Path, rows: list[Row]) -> None:
    try:
        draw_chart(path, rows, title=f"ocrq bench, {time.strftime('%Y-%m-%d %H:%M')}")
        click.echo(f"wrote {path}")
    except ImportError:
        click.echo("no chart: matplotlib is not installed (pip install ocrq[bench])", err=True)


def _prepare_engines(specs: list[RunnerSpec], models_dir: Path) -> None:
    """Each precision and variant of our engine the run uses, loaded once up front."""
    keys = ((s.precision, s.overrides, s.model) for s in specs if s.kind != "rapidocr")
    for key in dict.fromkeys(keys):
        if any(
            s.kind in ("ours", "queue") and (s.precision, s.overrides, s.model) == key
            for s in specs
        ):
            small_caps = specs[0].small_caps
            spec = RunnerSpec(f"ours-{key[0]}", "ours", key[0], 1, key[1], small_caps, key[2])
            _prepare(spec, models_dir)


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
            model=spec.model,
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
