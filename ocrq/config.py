"""Configuration: frozen dataclasses filled from `OCRQ_*` environment variables and CLI flags.

The options an engine actually ran with are stored with each result (`asdict`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ocrq.errors import ModelError

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


def default_db_url() -> str:
    return "sqlite:///results.db"


def default_models_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ocrq" / "models"


# What `--precision` / OCRQ_PRECISION accept; `auto` is resolved by each engine at load.
PRECISIONS = ("auto", "fp32", "int8")


def check_precision(precision: str) -> None:
    """Refuse a precision outside `PRECISIONS` (one set via OCRQ_PRECISION bypasses the
    CLI's choice list), naming the choices, before any engine loads a model."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")


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
    input_roots: tuple[str, ...] = ()  # empty: any path the worker can read


@dataclass(frozen=True)
class Settings:
    broker_url: str = DEFAULT_BROKER_URL
    db_url: str = field(default_factory=default_db_url)
    models_dir: Path = field(default_factory=default_models_dir)
    engine: EngineOptions = field(default_factory=EngineOptions)
    limits: InputLimits = field(default_factory=InputLimits)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def settings_from_env(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    engine = EngineOptions(
        engine=env.get("OCRQ_ENGINE", EngineOptions.engine),
        model=env.get("OCRQ_MODEL") or None,
        precision=env.get("OCRQ_PRECISION", EngineOptions.precision),
        small_caps=env.get("OCRQ_SMALL_CAPS", EngineOptions.small_caps),
    )
    roots = tuple(p for p in env.get("OCRQ_INPUT_ROOTS", "").split(os.pathsep) if p)
    limits = InputLimits(
        max_pixels=int(env.get("OCRQ_MAX_PIXELS") or InputLimits.max_pixels),
        max_file_bytes=int(env.get("OCRQ_MAX_FILE_BYTES") or InputLimits.max_file_bytes),
        max_pages=int(env.get("OCRQ_MAX_PAGES") or InputLimits.max_pages),
        input_roots=tuple(str(Path(r).resolve()) for r in roots),
    )
    return Settings(
        broker_url=env.get("OCRQ_BROKER_URL", DEFAULT_BROKER_URL),
        db_url=env.get("OCRQ_DB_URL") or default_db_url(),
        models_dir=Path(env["OCRQ_MODELS"]) if env.get("OCRQ_MODELS") else default_models_dir(),
        engine=engine,
        limits=limits,
    )


def redact_url(url: str) -> str:
    """A broker or database URL safe to print or store: any password becomes ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
