"""The `ocrq` command line. Errors are mapped to messages and exit codes here, once."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ocrq.config import (
    PRECISIONS,
    SMALL_CAPS,
    EngineOptions,
    Settings,
    redact_url,
    settings_from_env,
)
from ocrq.errors import OcrqError, UsageError


class OcrqGroup(click.Group):
    """Turns every OcrqError into one readable line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OcrqError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(exc.exit_code)


# ---- shared options ----------------------------------------------------------------


def db_option(func: Callable) -> Callable:
    return click.option(
        "--db",
        "db_url",
        envvar="OCRQ_DB_URL",
        default="sqlite:///results.db",
        show_default=True,
        help="Results database: any SQLAlchemy URL (env OCRQ_DB_URL).",
    )(func)


def format_options(func: Callable) -> Callable:
    decorators = [
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["csv", "json", "jsonl"]),
            default=None,
            help="Output format (default: from the -o file's extension, else jsonl).",
        ),
        click.option(
            "--per",
            "level",
            type=click.Choice(["page", "region"]),
            default="page",
            show_default=True,
            help="One record per page (file) or per text region.",
        ),
        click.option(
            "--dehyphenate/--keep-hyphens",
            default=False,
            help="Join words hyphenated across line ends in page text.",
        ),
    ]
    return functools.reduce(lambda f, d: d(f), reversed(decorators), func)


def engine_options(func: Callable) -> Callable:
    decorators = [
        click.option(
            "--engine",
            envvar="OCRQ_ENGINE",
            default="ppocr",
            show_default=True,
            type=click.Choice(["ppocr", "trocr-onnx", "trocr-mlx"]),
            help="OCR engine (env OCRQ_ENGINE).",
        ),
        click.option(
            "--model", envvar="OCRQ_MODEL", default=None, help="Recognizer model (env OCRQ_MODEL)."
        ),
        click.option(
            "--precision",
            envvar="OCRQ_PRECISION",
            default="auto",
            show_default=True,
            type=click.Choice(PRECISIONS),
            help="Model precision (env OCRQ_PRECISION). auto: INT8 for the ppocr engine on "
            "x86 CPUs with VNNI/AMX (as accurate as FP32 there, and faster), else FP32.",
        ),
        click.option(
            "--small-caps",
            envvar="OCRQ_SMALL_CAPS",
            default="auto",
            show_default=True,
            type=click.Choice(SMALL_CAPS),
            help="Words printed in small capitals (ppocr; env OCRQ_SMALL_CAPS): keep them "
            "in capitals ('KINNEY', not the mixed case read), lower them ('The Palace "
            "of the King', as books are transcribed), or auto: lowered in running text, "
            "capitals in headings, bylines and acronyms.",
        ),
    ]
    return functools.reduce(lambda f, d: d(f), reversed(decorators), func)


def walk_options(func: Callable) -> Callable:
    decorators = [
        click.argument(
            "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
        ),
        click.option(
            "--pattern",
            "-p",
            "patterns",
            multiple=True,
            default=(),
            help="Glob on the path relative to each folder ('*.jpg', '**/*.png'); "
            "repeatable. Default: common image types.",
        ),
        click.option(
            "--recursive/--no-recursive",
            default=True,
            show_default=True,
            help="Descend into sub-folders.",
        ),
        click.option("--force", is_flag=True, help="Run files again even when already done."),
        click.option(
            "--hidden", is_flag=True, help="Include hidden files and folders (names with a dot)."
        ),
    ]
    return functools.reduce(lambda f, d: d(f), reversed(decorators), func)


def _settings(
    db_url: str, engine: str, model: str | None, precision: str, small_caps: str
) -> Settings:
    from dataclasses import replace

    base = settings_from_env()
    options = EngineOptions(engine=engine, model=model, precision=precision, small_caps=small_caps)
    return replace(base, db_url=db_url, engine=options)


def _open_output(path: Path | None):
    if path is None or str(path) == "-":
        return click.get_text_stream("stdout")
    return open(path, "w", encoding="utf-8", newline="")


def _infer_format(fmt: str | None, output: Path | None) -> str:
    if fmt:
        return fmt
    suffix = output.suffix.lower().lstrip(".") if output else ""
    return suffix if suffix in ("csv", "json", "jsonl") else "jsonl"


# ---- commands ----------------------------------------------------------------------


@click.group(cls=OcrqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ocrq")
def cli() -> None:
    """ocrq: batch OCR of folders of scans through a queue of warm, pinned workers."""


@cli.command()
@walk_options
@engine_options
@db_option
@click.option("--chunk", default=1000, show_default=True, help="Messages per pipelined publish.")
def submit(
    paths, patterns, recursive, force, hidden, engine, model, precision, small_caps, db_url, chunk
) -> None:
    """Walk PATHS, record a job per new image and enqueue it to Redis for the workers."""
    from producer.collect import collect, report_unreadable
    from producer.submit import Enqueuer
    from worker.config import queue_name

    settings = _settings(db_url, engine, model, precision, small_caps)
    enqueuer = Enqueuer(queue_name(engine), chunk=chunk)
    enqueuer.check_broker()
    store = _store(settings)
    found = collect(paths, patterns, recursive, include_hidden=hidden)
    plan, batch_id, to_send = _plan_and_record(store, settings, found, force, paths, patterns)
    with click.progressbar(length=len(to_send), label="enqueue", file=sys.stderr) as bar:
        started = time.perf_counter()
        enqueuer.send(to_send, store, progress=bar.update)
        seconds = time.perf_counter() - started
    rate = len(to_send) / seconds if seconds > 0 else 0.0
    click.echo(
        f"batch {batch_id}: {len(found.files)} files, {len(to_send)} queued "
        f"({len(plan.resend)} resumed), {_dup_count(plan)} duplicates, "
        f"{plan.done_already} already done, {plan.in_flight} still queued, "
        f"{plan.failed_earlier} failed earlier, {len(found.unreadable)} unreadable; "
        f"enqueued at {rate:,.0f} jobs/s to {redact_url(enqueuer.broker_url)} "
        f"queue {enqueuer.queue}"
    )
    report_unreadable(found)


def _dup_count(plan) -> int:
    return sum(1 for j in plan.new_jobs if j.status == "duplicate")


def _store(settings: Settings):
    from ocrq.storage import Store

    return Store(settings.db_url)


def _plan_and_record(store, settings: Settings, found, force, paths, patterns):
    from ocrq.storage import options_key
    from producer.submit import plan_jobs, record_jobs

    options = settings.engine
    key = options_key(options)
    plan = plan_jobs(store, found.files, key, force)
    batch_id = store.create_batch(
        [str(p) for p in paths], list(patterns or found.patterns), options.as_dict()
    )
    to_send = record_jobs(store, batch_id, plan, options)
    return plan, batch_id, to_send


@cli.command()
@walk_options
@engine_options
@db_option
@click.option(
    "--workers",
    "-w",
    default=0,
    help="Worker processes, one pinned per core (default: one per available core).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Also export the results here (format from the extension).",
)
@format_options
def run(
    paths,
    patterns,
    recursive,
    force,
    hidden,
    engine,
    model,
    precision,
    small_caps,
    db_url,
    workers,
    output,
    fmt,
    level,
    dehyphenate,
) -> None:
    """Run everything locally, no Redis needed: walk, then OCR with pinned worker processes."""
    from producer.collect import collect, report_unreadable
    from producer.local import LocalPool
    from worker.threads import allowed_cores

    settings = _settings(db_url, engine, model, precision, small_caps)
    store = _store(settings)
    found = collect(paths, patterns, recursive, include_hidden=hidden)
    plan, batch_id, to_send = _plan_and_record(store, settings, found, force, paths, patterns)
    store.mark_enqueued(to_send)
    store.dispose()
    workers = workers or len(allowed_cores())
    pool = LocalPool(settings, workers=workers)
    with click.progressbar(length=len(to_send), label="ocr", file=sys.stderr) as bar:
        summary = pool.run(to_send, progress=bar.update)
    pages_per_s = (summary.done + summary.failed) / summary.seconds if summary.seconds else 0.0
    click.echo(
        f"batch {batch_id}: {len(found.files)} files: {summary.done} done, "
        f"{summary.failed} failed, {_dup_count(plan)} duplicates, "
        f"{plan.done_already} already done, {len(found.unreadable)} unreadable; "
        f"{summary.seconds:.1f} s, {pages_per_s:.2f} files/s on {workers} workers "
        f"(restarts: {summary.restarts})"
    )
    for job_id, reason in summary.errors[:20]:
        click.echo(f"  failed job {job_id}: {reason}", err=True)
    report_unreadable(found)
    if output is not None:
        _export(store, output, _infer_format(fmt, output), level, dehyphenate, batch_id)
        click.echo(f"wrote {output}")


@cli.command()
@db_option
@click.option("--batch", "batch_id", type=int, default=None, help="Only this batch.")
@click.option("--watch", is_flag=True, help="Refresh every 2 s until nothing is queued.")
def status(db_url, batch_id, watch) -> None:
    """Job counts by status, and the broker's queue depths when it is reachable."""
    import os

    from ocrq.config import DEFAULT_BROKER_URL
    from ocrq.storage import Store

    store = Store(db_url)
    # the broker variable alone: a status check must not fail on an unrelated setting
    broker_url = os.environ.get("OCRQ_BROKER_URL", DEFAULT_BROKER_URL)
    while True:
        counts = store.counts(batch_id)
        total = sum(counts.values())
        line = "  ".join(f"{k} {v}" for k, v in counts.items())
        scope = f"batch {batch_id}" if batch_id else "all"
        depths, broker_read = _queue_depths(broker_url)
        click.echo(f"{scope}: {total} jobs  {line}{depths}")
        if broker_read and counts["queued"] + counts["running"]:
            _warn_stranded(store, broker_url, batch_id)
        if not watch or (counts["queued"] + counts["running"]) == 0:
            return
        time.sleep(2)


def _warn_stranded(store, broker_url: str, batch_id: int | None) -> None:
    """Say so when queued jobs have no message left in Redis: no worker will ever run
    them (most often a worker started with another OCRQ_DB_URL took and dropped them)."""
    from producer.submit import stranded_jobs

    try:
        count = stranded_jobs(store, broker_url, batch_id=batch_id)
    except Exception:  # noqa: BLE001 - the broker went away: the next refresh says so
        return
    if count:
        click.echo(
            f"  {count} queued or running jobs have no message in the broker, so no worker will "
            "run them: a worker reading another results database takes and drops them (its "
            "log says 'not in this worker's results database'; start workers with this "
            "OCRQ_DB_URL), or Redis lost them. `ocrq retry --lost` sends them again.",
            err=True,
        )


def _queue_depths(url: str) -> tuple[str, bool]:
    """('  | broker: ocrq.ppocr 12' for non-empty ocrq queues, whether Redis was read);
    '' when the broker is not Redis."""
    if not url.startswith(("redis://", "rediss://")):
        return "", False
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        depths = {
            key.decode(): client.llen(key)
            for key in client.scan_iter(match="ocrq.*", count=100)
            if client.type(key) == b"list"
        }
        client.close()
    except Exception:
        return "  | broker: unreachable", False
    shown = " ".join(f"{name} {n}" for name, n in sorted(depths.items()) if n)
    return f"  | broker: {shown or 'queues empty'}", True


@cli.command()
@db_option
@format_options
@click.option(
    "--output", "-o", type=click.Path(path_type=Path), default=None, help="File (default stdout)."
)
@click.option("--batch", "batch_id", type=int, default=None, help="Only this batch.")
def export(db_url, fmt, level, dehyphenate, output, batch_id) -> None:
    """Stream results from the database as CSV, a JSON array, or JSON lines."""
    from ocrq.storage import Store

    _export(Store(db_url), output, _infer_format(fmt, output), level, dehyphenate, batch_id)


def _export(store, output, fmt, level, dehyphenate, batch_id) -> int:
    from producer.export import ExportOptions, write_export

    opts = ExportOptions(fmt=fmt, level=level, batch_id=batch_id, dehyphenate=dehyphenate)
    out = _open_output(output)
    try:
        return write_export(store, out, opts)
    finally:
        if out is not sys.stdout and output is not None and str(output) != "-":
            out.close()


@cli.command()
@db_option
@click.option("--failed", is_flag=True, help="Re-enqueue the failed jobs.")
@click.option(
    "--lost",
    is_flag=True,
    help="Re-enqueue queued/running jobs whose message is no longer in Redis "
    "(workers also do this on their own every OCRQ_RECONCILE_INTERVAL seconds).",
)
@click.option(
    "--grace",
    default=60.0,
    show_default=True,
    help="With --lost: only jobs published at least this many seconds ago.",
)
@click.option("--batch", "batch_id", type=int, default=None, help="Only this batch.")
@click.option("--engine", envvar="OCRQ_ENGINE", default="ppocr", show_default=True)
def retry(db_url, failed, lost, grace, batch_id, engine) -> None:
    """Re-enqueue failed jobs (after fixing the cause) or jobs whose message was lost."""
    from ocrq.storage import Store
    from producer.submit import Enqueuer, requeue_lost
    from worker.config import queue_name

    if not (failed or lost):
        raise UsageError("say what to retry: --failed and/or --lost")
    enqueuer = Enqueuer(queue_name(engine))
    enqueuer.check_broker()
    store = Store(db_url)
    if failed:
        ids = store.requeue_failed(batch_id, engine=engine)
        enqueuer.send(ids, store)
        click.echo(f"re-enqueued {len(ids)} failed {engine} jobs")
    if lost:
        ids = requeue_lost(store, enqueuer, grace, batch_id=batch_id, engine=engine)
        click.echo(f"re-enqueued {len(ids)} {engine} jobs whose message was lost")


def _add_subcommands() -> None:
    from models.cli import models_group
    from producer.bench.command import bench

    cli.add_command(models_group)
    cli.add_command(bench)


_add_subcommands()


def main() -> None:
    cli(prog_name="ocrq")


if __name__ == "__main__":
    main()
