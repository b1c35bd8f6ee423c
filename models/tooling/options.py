"""What the `ocrq models` commands share: the `--models-dir` option and one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import click

from ocrq.config import settings_from_env
from ocrq.errors import OcrqError

models_dir_option = click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model cache (default: the configured one: $OCRQ_MODELS or ~/.cache/ocrq/models).",
)


def resolve_models_dir(value: Path | None) -> Path:
    """`--models-dir` when given, else the configured cache (only ocrq.config reads the
    environment)."""
    return value if value is not None else settings_from_env().models_dir


def fail(exc: OcrqError) -> NoReturn:
    """One line on stderr and the error's exit code, whichever group runs the command
    (`ocrq`'s own maps errors the same way; tests invoke `models_group` directly)."""
    click.secho(f"error: {exc}", fg="red", err=True)
    raise SystemExit(exc.exit_code)
