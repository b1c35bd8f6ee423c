"""Configuration: frozen dataclasses filled from `OCRQ_*` environment variables and CLI flags.

The options an engine actually ran with are stored with each result (`asdict`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ocrq.errors import ModelError, UsageError

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


def default_db_url() -> str:
    return "sqlite:///results.db"


def default_models_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ocrq" / "models"


def default_spool_dir() -> Path:
    """Where `ocrq serve` keeps uploads for the workers to read."""
    return default_models_dir().parent / "uploads"


# What `--precision` / OCRQ_PRECISION accept; `auto` is resolved by each engine at load.
PRECISIONS = ("auto", "fp32", "int8")


def check_precision(precision: str) -> None:
    """Refuse a precision outside `PRECISIONS` (one set via OCRQ_PRECISION bypasses the
    CLI's choice list), naming the choices, before any engine loads a model."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")


# What `--pdf-text` accepts (EngineOptions.pdf_text).
PDF_TEXT_MODES = ("auto", "ocr", "keep")

# What `--small-caps` / OCRQ_SMALL_CAPS accept (ppocr only; models/ppocr/smallcaps.py).
SMALL_CAPS = ("auto", "keep", "lower")


def check_small_caps(options: EngineOptions, supported: bool) -> None:
    """Refuse an unknown `small_caps`, or `lower` on an engine that cannot measure glyphs
    (those write small capitals as read, under `auto` and `keep` alike)."""
    if options.small_caps not in SMALL_CAPS:
        raise ModelError(
            f"small caps must be one of {', '.join(SMALL_CAPS)}, not {options.small_caps!r}"
        )
    if options.small_caps == "lower" and not supported:
        raise ModelError(f"--small-caps {options.small_caps} needs the ppocr engine")


@dataclass(frozen=True)
class EngineOptions:
    """Which engine and model a job runs with; part of the dedupe key and stored per result."""

    engine: str = "ppocr"  # ppocr | trocr-onnx | trocr-mlx
    model: str | None = None  # recognizer model name in the cache, or a directory (TrOCR)
    # fp32 | int8 | auto: each engine's pick for the CPU it runs on (ppocr: int8 where the
    # CPU takes 8-bit INT8 weights, `models.cpu.int8_preferred`; TrOCR and MLX: fp32).
    # Results record the precision that ran in their engine provenance.
    precision: str = "auto"
    batch_size: int = 16  # crops per recognizer call
    max_new_tokens: int = 64  # TrOCR decoding cap
    num_beams: int = 1  # TrOCR beam search width (1 = greedy)
    # Words printed in small capitals: "keep" them in capitals (how the UW-III and UNLV
    # truths transcribe them; the recognizer's mixed case, "KInNEY", is made whole),
    # "lower" them to the letters they stand for ("The Palace of the King", as book
    # transcriptions write them), or "auto": lowered in running text ("Mr. Edwin
    # Landseer"), capitals in headings, bylines and author lists and for words with no
    # full-height capital ("HE MOPED.", acronyms). See models/ppocr/smallcaps.py.
    small_caps: str = "auto"
    # A PDF page that has a text layer: "auto" keeps it on born-digital pages and OCRs
    # scanned ones, "ocr" OCRs every page, "keep" keeps every text layer there is.
    pdf_text: str = "auto"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineOptions:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def with_(self, **changes: Any) -> EngineOptions:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class InputLimits:
    """Safe defaults for hostile input; a job over a limit fails with a reason."""

    max_pixels: int = 100_000_000  # per page, after decoding the header
    max_file_bytes: int = 200 * 1024 * 1024
    max_pages: int = 500  # pages in one multi-page TIFF
    # Folders a worker may read under (OCRQ_INPUT_ROOTS). Empty: the folders each job's
    # batch was submitted from (`worker.pipeline.job_limits`).
    input_roots: tuple[str, ...] = ()
    roots_from: str = "OCRQ_INPUT_ROOTS"  # what the roots are, for the refusal's message
    # Passwords tried, in order, on an encrypted PDF (OCRQ_PDF_PASSWORD_FILE, `ocrq run
    # --password`). Secrets: never printed, stored with a job, or sent in a message, so a
    # worker reading a submitted encrypted PDF needs the file too.
    pdf_passwords: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class WorkerSettings:
    """How a Celery worker runs jobs (`worker/config.py` turns these into Celery's options)."""

    concurrency: int | None = None  # child processes; None: one per core it may use
    soft_limit: float = 300.0  # s: a job still running then fails with "time limit"
    hard_limit: float | None = None  # s: the child is killed; None: soft_limit + 60
    # s a delivered message may stay unacked before Redis hands it out again; None: three
    # hard limits, at least 600 (longer than the longest job, or a slow job runs twice)
    visibility_timeout: float | None = None
    restore_interval: float = 10.0  # s between sweeps for dead workers' messages
    max_memory_mb: float = 1500.0  # a child above this is replaced after its job
    reconcile_interval: float = 300.0  # s between lost-message checks; 0: never
    reconcile_grace: float = 60.0  # s a published job waits before it can count as lost
    max_attempts: int = 3  # deliveries that died before a job fails as poison


@dataclass(frozen=True)
class ServerSettings:
    """`ocrq serve` (server/): who may call it and how much it takes in at once."""

    # every API call must carry it (Authorization: Bearer ...); None: 127.0.0.1 only
    api_token: str | None = field(default=None, repr=False)
    spool_dir: Path = field(default_factory=default_spool_dir)  # uploads; workers read them
    max_upload_bytes: int = 200 * 1024 * 1024  # one request's body; more: 413
    max_waiting: int = 16  # POST /infer requests held open at once; more: 429
    max_backlog: int = 10_000  # pages queued or running; new work past it: 503
    # an upload's file is kept this long after its document finished (its PDF export
    # needs it), and finished ones go oldest first while the spool holds more bytes
    spool_keep_hours: float = 24.0
    spool_max_bytes: int = 5 * 1024**3


@dataclass(frozen=True)
class Settings:
    broker_url: str = DEFAULT_BROKER_URL
    db_url: str = field(default_factory=default_db_url)
    models_dir: Path = field(default_factory=default_models_dir)
    engine: EngineOptions = field(default_factory=EngineOptions)
    limits: InputLimits = field(default_factory=InputLimits)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    server: ServerSettings = field(default_factory=ServerSettings)

    def with_(self, **changes: Any) -> Settings:
        """A copy with the changes that are not None (command-line options over the
        environment's settings)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _number(env: dict[str, str], name: str, kind: type, default: Any) -> Any:
    """`env[name]` as `kind`, or `default` when unset or empty; a value that is not a
    number is refused naming the variable."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise UsageError(f"{name} must be a number, not {raw!r}") from None


def _worker_settings(env: dict[str, str]) -> WorkerSettings:
    w = WorkerSettings
    return WorkerSettings(
        concurrency=_number(env, "OCRQ_CONCURRENCY", int, w.concurrency),
        soft_limit=_number(env, "OCRQ_TASK_SOFT_LIMIT", float, w.soft_limit),
        hard_limit=_number(env, "OCRQ_TASK_HARD_LIMIT", float, w.hard_limit),
        visibility_timeout=_number(env, "OCRQ_VISIBILITY_TIMEOUT", float, w.visibility_timeout),
        restore_interval=_number(env, "OCRQ_RESTORE_INTERVAL", float, w.restore_interval),
        max_memory_mb=_number(env, "OCRQ_MAX_MEMORY_MB", float, w.max_memory_mb),
        reconcile_interval=_number(env, "OCRQ_RECONCILE_INTERVAL", float, w.reconcile_interval),
        reconcile_grace=_number(env, "OCRQ_RECONCILE_GRACE", float, w.reconcile_grace),
        max_attempts=_number(env, "OCRQ_MAX_ATTEMPTS", int, w.max_attempts),
    )


def _server_settings(env: dict[str, str]) -> ServerSettings:
    s = ServerSettings
    spool = env.get("OCRQ_SPOOL_DIR")
    return ServerSettings(
        api_token=env.get("OCRQ_API_TOKEN") or None,
        spool_dir=Path(spool) if spool else default_spool_dir(),
        max_upload_bytes=_number(env, "OCRQ_MAX_UPLOAD_BYTES", int, s.max_upload_bytes),
        max_waiting=_number(env, "OCRQ_MAX_WAITING", int, s.max_waiting),
        max_backlog=_number(env, "OCRQ_MAX_BACKLOG", int, s.max_backlog),
        spool_keep_hours=_number(env, "OCRQ_SPOOL_KEEP_HOURS", float, s.spool_keep_hours),
        spool_max_bytes=_number(env, "OCRQ_SPOOL_MAX_BYTES", int, s.spool_max_bytes),
    )


def _passwords(path: str | None) -> tuple[str, ...]:
    """One password per line of the file at `path` (blank lines skipped)."""
    if not path:
        return ()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"OCRQ_PDF_PASSWORD_FILE cannot be read: {exc}") from None
    return tuple(line for line in text.splitlines() if line.strip())


def settings_from_env(env: dict[str, str] | None = None) -> Settings:
    """Every `OCRQ_*` variable is read here, and only here."""
    env = dict(os.environ if env is None else env)
    engine = EngineOptions(
        engine=env.get("OCRQ_ENGINE") or EngineOptions.engine,
        model=env.get("OCRQ_MODEL") or None,
        precision=env.get("OCRQ_PRECISION") or EngineOptions.precision,
        small_caps=env.get("OCRQ_SMALL_CAPS") or EngineOptions.small_caps,
    )
    roots = tuple(p for p in env.get("OCRQ_INPUT_ROOTS", "").split(os.pathsep) if p)
    limits = InputLimits(
        max_pixels=_number(env, "OCRQ_MAX_PIXELS", int, InputLimits.max_pixels),
        max_file_bytes=_number(env, "OCRQ_MAX_FILE_BYTES", int, InputLimits.max_file_bytes),
        max_pages=_number(env, "OCRQ_MAX_PAGES", int, InputLimits.max_pages),
        input_roots=tuple(str(Path(r).resolve()) for r in roots),
        pdf_passwords=_passwords(env.get("OCRQ_PDF_PASSWORD_FILE")),
    )
    return Settings(
        broker_url=env.get("OCRQ_BROKER_URL") or DEFAULT_BROKER_URL,
        db_url=env.get("OCRQ_DB_URL") or default_db_url(),
        models_dir=Path(env["OCRQ_MODELS"]) if env.get("OCRQ_MODELS") else default_models_dir(),
        engine=engine,
        limits=limits,
        worker=_worker_settings(env),
        server=_server_settings(env),
    )


def redact_url(url: str) -> str:
    """A broker or database URL safe to print or store: any password becomes ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
