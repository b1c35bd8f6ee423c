"""The `ocrq` command line: thin commands over the producer, the queue (`ocrq.queue`), the
local pool (`worker.local`) and the exporters. Errors are mapped to messages and exit
codes here, once (`OcrqGroup`). Commands that other packages add (`ocrq bench`, from the
bench/ package) come in through the `ocrq.commands` entry point group."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from models.cli import models_group
from ocrq.config import Settings, redact_url
from ocrq.errors import OcrqError, UsageError
from ocrq.inputs import display_path
from ocrq.queue import (
    REFUSED,
    RESENT,
    Enqueuer,
    is_redis,
    queue_depths,
    queue_name,
    recovery_counts,
    requeue_lost,
    stranded_jobs,
)
from ocrq.storage import DUPLICATE, Store
from ocrq.threads import allowed_cores
from producer.collect import Collected, WalkRequest, collect, report_unreadable
from producer.export import FORMATS, ExportOptions, write_export
from producer.export_documents import DOCUMENT_FORMATS, export_documents
from producer.options import (
    ENGINES,
    batch_option,
    format_options,
    pass_db_settings,
    pass_settings,
    password_option,
    walk_options,
)
from producer.submit import Plan, plan_and_record


class OcrqGroup(click.Group):
    """Turns every OcrqError into one readable line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OcrqError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(exc.exit_code)


def _open_output(path: Path | None):
    if path is None or str(path) == "-":
        return click.get_text_stream("stdout")
    return open(path, "w", encoding="utf-8", newline="")


def _infer_format(fmt: str | None, output: Path | None) -> str:
    if fmt:
        return fmt
    suffix = output.suffix.lower() if output else ""
    per_document = {ext: name for name, ext in DOCUMENT_FORMATS.items()}
    if suffix in per_document:  # `-o scan.pdf` used to get JSON lines under a .pdf name
        name = per_document[suffix]
        raise UsageError(
            f"-o {output}: {name} output is one file per document, written into a folder: "
            f"-o {output.with_suffix('')}/ --format {name}"
        )
    return suffix[1:] if suffix[1:] in FORMATS else "jsonl"


# ---- commands ----------------------------------------------------------------------


@click.group(cls=OcrqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ocrq")
def cli() -> None:
    """ocrq: batch OCR of folders of scans through a queue of warm, pinned workers."""


@cli.command()
@walk_options
@pass_settings
@click.option("--chunk", default=1000, show_default=True, help="Messages per pipelined publish.")
def submit(walk: WalkRequest, settings: Settings, chunk: int) -> None:
    """Walk PATHS, record a job per new image and enqueue it to Redis for the workers."""
    enqueuer = Enqueuer(settings.broker_url, queue_name(settings.engine.engine), chunk=chunk)
    enqueuer.check_broker()
    store = Store(settings.db_url)
    found = collect(walk, replace(settings.limits, input_roots=()))
    plan, batch_id, to_send = _plan_and_record(store, settings, found, walk)
    with click.progressbar(length=len(to_send), label="enqueue", file=sys.stderr) as bar:
        started = time.perf_counter()
        sent = enqueuer.send(to_send, store, progress=bar.update)
        seconds = time.perf_counter() - started
    rate = len(sent) / seconds if seconds > 0 else 0.0
    resumed = len(set(plan.resend) & set(sent))
    # recorded here or earlier, but published meanwhile by another producer
    elsewhere = len(to_send) - len(sent)
    click.echo(
        f"batch {batch_id}: {len(found.files)} files, {len(sent)} queued "
        f"({resumed} resumed), {_dup_count(plan)} duplicates, "
        f"{plan.done_already} already done, {plan.in_flight + elsewhere} still queued, "
        f"{plan.failed_earlier} failed earlier, {len(found.unreadable)} unreadable; "
        f"enqueued at {rate:,.0f} jobs/s to {redact_url(enqueuer.broker_url)} "
        f"queue {enqueuer.queue}"
    )
    report_unreadable(found)


def _dup_count(plan: Plan) -> int:
    return sum(1 for j in plan.new_jobs if j.status == DUPLICATE)


def _plan_and_record(
    store: Store, settings: Settings, found: Collected, walk: WalkRequest
) -> tuple[Plan, int, list[int]]:
    options = settings.engine
    roots = [os.path.realpath(p) for p in walk.paths]  # what workers may read by default
    batch_id = store.create_batch(roots, list(walk.patterns or found.patterns), options.as_dict())
    plan, to_send = plan_and_record(store, batch_id, found.files, options, walk.force)
    return plan, batch_id, to_send


@cli.command()
@walk_options
@pass_settings
@password_option
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
    walk: WalkRequest, settings: Settings, workers: int, output: Path | None, export: ExportOptions
) -> None:
    """Run everything locally, no Redis needed: walk, then OCR with pinned worker processes."""
    # Imported here for start-up time: the pool loads the engines' modules (numpy,
    # onnxruntime, OpenCV), which only this command needs.
    from worker.local import LocalPool

    if output is not None:
        export = replace(export, fmt=_infer_format(export.fmt, output))  # before any OCR
    store = Store(settings.db_url)
    found = collect(walk, replace(settings.limits, input_roots=()))
    plan, batch_id, to_send = _plan_and_record(store, settings, found, walk)
    to_send = store.claim_unsent(to_send)  # another `ocrq run` racing runs the rest
    store.dispose()
    workers = workers or settings.worker.concurrency or len(allowed_cores())
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
        _export(store, output, replace(export, batch_id=batch_id), settings.limits.pdf_passwords)
        click.echo(f"wrote {output}")


@cli.command()
@pass_db_settings
@batch_option
@click.option("--watch", is_flag=True, help="Refresh every 2 s until nothing is queued.")
def status(settings: Settings, batch_id: int | None, watch: bool) -> None:
    """Job counts by status, and the broker's queue depths when it is reachable."""
    store = Store(settings.db_url)
    while True:
        counts = store.counts(batch_id)
        total = sum(counts.values())
        line = "  ".join(f"{k} {v}" for k, v in counts.items())
        scope = f"batch {batch_id}" if batch_id else "all"
        depths = queue_depths(settings.broker_url)
        click.echo(f"{scope}: {total} jobs  {line}{_depths_note(settings.broker_url, depths)}")
        docs = store.document_counts(batch_id)
        click.echo(
            f"  documents: {sum(docs.values())}  done {docs['done']}  partial {docs['partial']}"
            f"  failed {docs['failed']}  open {docs['open']}  (a job is one page)"
        )
        if depths is not None and counts["queued"] + counts["running"]:
            _warn_stranded(store, settings.broker_url, batch_id)
        _say_recovery(recovery_counts(settings.broker_url, store.identity))
        if not watch or (counts["queued"] + counts["running"]) == 0:
            return
        time.sleep(2)


def _depths_note(broker_url: str, depths: dict[str, int] | None) -> str:
    """'  | broker: ocrq.ppocr 12' for the non-empty ocrq queues; '' for a broker that
    is not Redis."""
    if depths is None:
        return "  | broker: unreachable" if is_redis(broker_url) else ""
    shown = " ".join(f"{name} {n}" for name, n in depths.items())
    return f"  | broker: {shown or 'queues empty'}"


def _say_recovery(counts: dict[str, int] | None) -> None:
    """What the queue repaired for this database, so a clean run can be told from one
    that was mended: messages other databases' workers handed back, lost ones re-sent."""
    if counts and any(counts.values()):
        click.echo(
            f"  recovery: {counts[REFUSED]} messages handed back by workers of another "
            f"results database, {counts[RESENT]} lost messages re-sent"
        )


def _warn_stranded(store: Store, broker_url: str, batch_id: int | None) -> None:
    """Say so when queued jobs have no message left in Redis: no worker will ever run
    them (most often a worker started with another OCRQ_DB_URL took and dropped them)."""
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


@cli.command()
@pass_db_settings
@password_option
@format_options
@click.option(
    "--output", "-o", type=click.Path(path_type=Path), default=None, help="File (default stdout)."
)
@batch_option
def export(
    settings: Settings, export: ExportOptions, output: Path | None, batch_id: int | None
) -> None:
    """Stream results as CSV, a JSON array or JSON lines, or one file per document
    (searchable PDF, hOCR, ALTO, text)."""
    passwords = settings.limits.pdf_passwords
    _export(Store(settings.db_url), output, replace(export, batch_id=batch_id), passwords)


def _export(
    store: Store, output: Path | None, options: ExportOptions, passwords: tuple[str, ...] = ()
) -> int:
    options = replace(options, fmt=_infer_format(options.fmt, output))
    if options.fmt in DOCUMENT_FORMATS:
        if output is None:
            raise UsageError(f"--format {options.fmt} writes one file per document: give -o DIR")
        return _export_documents(store, output, options, passwords)
    out = _open_output(output)
    try:
        return write_export(store, out, options)
    finally:
        if out is not sys.stdout and output is not None and str(output) != "-":
            out.close()


def _export_documents(
    store: Store, out_dir: Path, options: ExportOptions, passwords: tuple[str, ...]
) -> int:
    written = 0
    for done in export_documents(
        store, out_dir, options.fmt, options.batch_id, options.dehyphenate, passwords
    ):
        written += done.target is not None
        if done.error:
            click.echo(f"  {display_path(done.source)}: not written: {done.error}", err=True)
        for page, why in done.missing:
            click.echo(f"  {display_path(done.source)}: page {page + 1} missing: {why}", err=True)
    click.echo(f"wrote {written} {options.fmt} files to {out_dir}", err=True)
    return written


@cli.command()
@pass_db_settings
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
@batch_option
@click.option(
    "--engine",
    default=None,
    type=click.Choice(ENGINES),
    help="Whose jobs [default: OCRQ_ENGINE, else ppocr].",
)
def retry(
    settings: Settings,
    failed: bool,
    lost: bool,
    grace: float,
    batch_id: int | None,
    engine: str | None,
) -> None:
    """Re-enqueue failed jobs (after fixing the cause) or jobs whose message was lost."""
    if not (failed or lost):
        raise UsageError("say what to retry: --failed and/or --lost")
    engine = engine or settings.engine.engine
    enqueuer = Enqueuer(settings.broker_url, queue_name(engine))
    enqueuer.check_broker()
    store = Store(settings.db_url)
    if failed:
        ids = store.requeue_failed(batch_id, engine=engine)
        enqueuer.send(ids, store)
        click.echo(f"re-enqueued {len(ids)} failed {engine} jobs")
    if lost:
        ids = requeue_lost(store, enqueuer, grace, batch_id=batch_id, engine=engine)
        click.echo(f"re-enqueued {len(ids)} {engine} jobs whose message was lost")


def _add_commands() -> None:
    """`ocrq models` from the models floor; commands of other installed packages (the
    bench) from the `ocrq.commands` entry points, so the product imports none of them."""
    cli.add_command(models_group)
    for entry in entry_points(group="ocrq.commands"):
        cli.add_command(entry.load(), entry.name)


_add_commands()


def main() -> None:
    cli(prog_name="ocrq")


if __name__ == "__main__":
    main()
