"""`ocrq serve`: the HTTP front, attached to the `ocrq` CLI through the `ocrq.commands`
entry point (the CLI never imports this package)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import replace
from pathlib import Path

import click

from ocrq.config import Settings
from ocrq.errors import BrokerUnavailable, UsageError
from ocrq.inputs import is_under_roots
from ocrq.threads import allowed_cores
from producer.options import pass_settings

LOOPBACK = "127.0.0.1"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("serve")
@pass_settings
@click.option("--host", default=LOOPBACK, show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--local",
    "mode",
    flag_value="local",
    help="Run the jobs in a local pinned pool in this process, even if Redis answers.",
)
@click.option(
    "--queue",
    "mode",
    flag_value="queue",
    help="Send the jobs to the Celery workers through OCRQ_BROKER_URL; fail if it is down.",
)
@click.option(
    "--workers",
    "-w",
    default=0,
    help="Local mode: worker processes, one pinned per core (default: one per available core).",
)
@click.option(
    "--spool",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for uploads; the workers read them there [default: OCRQ_SPOOL_DIR, "
    "else ~/.cache/ocrq/uploads].",
)
@click.option(
    "--max-waiting",
    type=click.IntRange(1),
    default=None,
    help="POST /infer requests held open at once; more get 429 [default: OCRQ_MAX_WAITING, "
    "else 16].",
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="uvicorn's log level (info logs every request).",
)
def serve(
    settings: Settings,
    host: str,
    port: int,
    mode: str | None,
    workers: int,
    spool: Path | None,
    max_waiting: int | None,
    log_level: str,
) -> None:
    """Serve the queue over HTTP: POST /infer, /batch_infer and /jobs, GET /documents/ID,
    /metrics, a live status page at /, and the API's docs at /docs.

    Without --local or --queue, jobs go to the Celery workers when OCRQ_BROKER_URL
    answers, else to a local pool in this process. Without OCRQ_API_TOKEN the server
    listens on 127.0.0.1 only."""
    # imported here: the CLI loads every command at start-up, and these are heavy
    try:
        import uvicorn

        from server.app import create_app
        from server.service import ServeConfig, Service
    except ImportError as exc:
        raise UsageError(
            f"ocrq serve needs the serve extra ({exc.name} is missing): pip install 'ocrq[serve]'"
        ) from exc

    server = settings.server
    token = server.api_token
    if token is None and not _loopback(host):
        click.echo(
            f"no OCRQ_API_TOKEN: listening on {LOOPBACK} only, not {host} "
            "(set OCRQ_API_TOKEN to serve other machines)",
            err=True,
        )
        host = LOOPBACK
    elif token is None:
        click.echo(f"no OCRQ_API_TOKEN: listening on {host} only, without a token", err=True)
    workers = workers or settings.worker.concurrency or len(allowed_cores())
    spool_dir = Path(os.path.realpath((spool or server.spool_dir).expanduser()))
    backend = _backend(_pool_settings(settings, spool_dir), mode, workers)
    config = ServeConfig(
        settings=settings,
        workers=workers,
        spool_dir=spool_dir,
        token=token,
        max_upload_bytes=server.max_upload_bytes,
        max_waiting=max_waiting or server.max_waiting,
        max_backlog=server.max_backlog,
        spool_keep_seconds=server.spool_keep_hours * 3600.0,
        spool_max_bytes=server.spool_max_bytes,
    )
    service = Service(config, backend)
    click.echo(
        f"ocrq serve on http://{host}:{port} ({backend.describe()}); results in "
        f"{service.store.where()}; uploads in {service.spool.root}; API docs at /docs",
        err=True,
    )
    if backend.mode == "queue":
        roots = settings.limits.input_roots
        if roots and not is_under_roots(str(spool_dir), roots):
            click.echo(
                f"  the uploads folder is outside OCRQ_INPUT_ROOTS: give the Celery workers "
                f"OCRQ_INPUT_ROOTS with {spool_dir} in it, or they refuse uploaded files",
                err=True,
            )
        answered = backend.ping_workers()
        if answered == 0:
            click.echo(
                "  no Celery worker answered a ping yet: jobs wait in the queue until one "
                "starts (`celery -A worker worker`, with this OCRQ_DB_URL and spool)",
                err=True,
            )
    uvicorn.run(
        create_app(service),
        host=host,
        port=port,
        log_level=log_level,
        access_log=log_level in ("info", "debug"),
        # the last bound, behind the guard's (which answers 503 with Retry-After): past
        # this many connections and tasks uvicorn answers a bare 503 itself
        limit_concurrency=4 * config.max_in_flight,
        timeout_graceful_shutdown=10,
    )


def _pool_settings(settings: Settings, spool_dir: Path) -> Settings:
    """The settings the local pool runs with: with OCRQ_INPUT_ROOTS set, workers read only
    under those roots, so the spool is added to them (Celery workers need it in theirs)."""
    roots = settings.limits.input_roots
    if not roots or is_under_roots(str(spool_dir), roots):
        return settings
    return replace(settings, limits=replace(settings.limits, input_roots=(*roots, str(spool_dir))))


def _backend(settings: Settings, mode: str | None, workers: int):
    from server.backends import LocalBackend, QueueBackend

    if mode == "local":
        return LocalBackend(settings, workers)
    queue = QueueBackend(settings)
    try:
        queue.enqueuer.check_broker()
    except BrokerUnavailable as exc:
        if mode == "queue":
            raise
        click.echo(f"{_first_sentence(str(exc))}: running the jobs locally", err=True)
        return LocalBackend(settings, workers)
    return queue


def _first_sentence(text: str) -> str:
    return text.split(". ", 1)[0]
