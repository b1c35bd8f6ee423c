"""The CLI's shared options. Each decorator adds a family of options and hands the command
one object built from them, so commands take a few arguments, not fifteen:

- `pass_settings`: `settings`, the environment's `Settings` (`ocrq/config.py`, the one
  place `OCRQ_*` is read) with `--db` and the engine options given over it;
- `walk_options`: `walk`, what to read (paths, patterns, recursion, hidden, force);
- `format_options`: `export`, how to write the results (format, level, hyphens).

An option left out on the command line is None, so the environment's value stands.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from ocrq.config import PDF_TEXT_MODES, PRECISIONS, SMALL_CAPS, Settings, settings_from_env
from producer.collect import WalkRequest
from producer.export import FORMATS, LEVELS, ExportOptions
from producer.export_documents import DOCUMENT_FORMATS

ENGINES = ("ppocr", "trocr-onnx", "trocr-mlx")


def _apply(func: Callable, decorators: list[Callable]) -> Callable:
    return functools.reduce(lambda f, d: d(f), reversed(decorators), func)


def _handing(name: str, build: Callable[[dict[str, Any]], Any], keys: tuple[str, ...]):
    """A decorator that takes `keys` out of the command's arguments and passes
    `name=build(those)` instead."""

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {key: kwargs.pop(key) for key in keys}
            return func(*args, **{name: build(given)}, **kwargs)

        return wrapper

    return decorate


def db_option(func: Callable) -> Callable:
    return click.option(
        "--db",
        "db_url",
        default=None,
        help="Results database: any SQLAlchemy URL "
        "[default: OCRQ_DB_URL, else sqlite:///results.db].",
    )(func)


def engine_options(func: Callable) -> Callable:
    return _apply(
        func,
        [
            click.option(
                "--engine",
                default=None,
                type=click.Choice(ENGINES),
                help="OCR engine [default: OCRQ_ENGINE, else ppocr].",
            ),
            click.option(
                "--model",
                default=None,
                help="Recognizer model [default: OCRQ_MODEL]. ppocr: 'fast' (32-px rows, "
                "1.4-1.6x faster recognition, slightly higher CER) or a PP-OCR recognizer "
                ".onnx file (ocrq models finetune-ppocr); trocr-*: a model name or folder.",
            ),
            click.option(
                "--precision",
                default=None,
                type=click.Choice(PRECISIONS),
                help="Model precision [default: OCRQ_PRECISION, else auto]. auto: INT8 for "
                "the ppocr engine on x86 CPUs with VNNI/AMX (as accurate as FP32 there, "
                "and faster), else FP32.",
            ),
            click.option(
                "--small-caps",
                default=None,
                type=click.Choice(SMALL_CAPS),
                help="Words printed in small capitals (ppocr) [default: OCRQ_SMALL_CAPS, "
                "else auto]: keep them in capitals ('KINNEY', not the mixed case read), "
                "lower them ('The Palace of the King', as books are transcribed), or auto: "
                "lowered in running text, capitals in headings, bylines and acronyms.",
            ),
            click.option(
                "--pdf-text",
                default=None,
                type=click.Choice(PDF_TEXT_MODES),
                help="PDF pages with a text layer [default: auto]: auto keeps the text of "
                "born-digital pages and OCRs scanned ones, ocr OCRs every page, keep keeps "
                "every text layer there is.",
            ),
        ],
    )


def settings_with(
    db_url: str | None = None,
    engine: str | None = None,
    model: str | None = None,
    precision: str | None = None,
    small_caps: str | None = None,
    pdf_text: str | None = None,
) -> Settings:
    """The environment's settings with the options given on the command line over them."""
    base = settings_from_env()
    options = base.engine.with_(
        engine=engine, model=model, precision=precision, small_caps=small_caps, pdf_text=pdf_text
    )
    return base.with_(db_url=db_url, engine=options)


def pass_settings(func: Callable) -> Callable:
    """`--db` and the engine options, handed to the command as `settings`."""
    keys = ("db_url", "engine", "model", "precision", "small_caps", "pdf_text")
    handed = _handing("settings", lambda given: settings_with(**given), keys)(func)
    return db_option(engine_options(handed))


def pass_db_settings(func: Callable) -> Callable:
    """`--db` alone, handed to the command as `settings` (engine options from the
    environment)."""
    handed = _handing("settings", lambda given: settings_with(**given), ("db_url",))(func)
    return db_option(handed)


def password_option(func: Callable) -> Callable:
    """`--password` (repeatable): tried on encrypted PDFs before OCRQ_PDF_PASSWORD_FILE's.
    Goes under `pass_settings` / `pass_db_settings`: it adds to the `settings` they
    build."""

    @functools.wraps(func)
    def wrapper(*args: Any, passwords: tuple[str, ...], settings: Settings, **kwargs: Any) -> Any:
        limits = settings.limits
        limits = replace(limits, pdf_passwords=(*passwords, *limits.pdf_passwords))
        return func(*args, settings=replace(settings, limits=limits), **kwargs)

    return click.option(
        "--password",
        "passwords",
        multiple=True,
        help="Password of encrypted PDFs (repeatable; each is tried). Held in memory only: "
        "never stored or sent to the queue. Workers read OCRQ_PDF_PASSWORD_FILE.",
    )(wrapper)


def walk_options(func: Callable) -> Callable:
    keys = ("paths", "patterns", "recursive", "include_hidden", "force")
    handed = _handing("walk", lambda given: WalkRequest(**given), keys)(func)
    return _apply(
        handed,
        [
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
                "--hidden",
                "include_hidden",
                is_flag=True,
                help="Include hidden files and folders (names with a dot).",
            ),
        ],
    )


def format_options(func: Callable) -> Callable:
    keys = ("fmt", "level", "dehyphenate")
    handed = _handing("export", lambda given: ExportOptions(**given), keys)(func)
    return _apply(
        handed,
        [
            click.option(
                "--format",
                "fmt",
                type=click.Choice((*FORMATS, *DOCUMENT_FORMATS)),
                default=None,
                help="Output format (default: from the -o file's extension, else jsonl). "
                "pdf (searchable), hocr, alto and txt write one file per document into "
                "the -o folder.",
            ),
            click.option(
                "--per",
                "level",
                type=click.Choice(LEVELS),
                default="file",
                show_default=True,
                help="csv/json/jsonl: one record per file, per page, per text region or per word.",
            ),
            click.option(
                "--dehyphenate/--keep-hyphens",
                default=False,
                help="Join words hyphenated across line ends in page text.",
            ),
        ],
    )


def batch_option(func: Callable) -> Callable:
    return click.option("--batch", "batch_id", type=int, default=None, help="Only this batch.")(
        func
    )
