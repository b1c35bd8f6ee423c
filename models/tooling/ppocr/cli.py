"""`ocrq models finetune-ppocr`: registered by models/cli.py.

`ocrq` imports this module at start-up, so the command imports torch and the trainer only
when it runs.
"""

from __future__ import annotations

from pathlib import Path

import click

from models.tooling.options import fail, models_dir_option, resolve_models_dir
from ocrq.errors import OcrqError


@click.command("finetune-ppocr")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--height", type=int, default=32, show_default=True, help="Input height to learn.")
@click.option(
    "--minutes", type=float, default=60.0, show_default=True, help="Training time (wall clock)."
)
@click.option(
    "--text",
    "texts",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    required=True,
    help="Plain-text book to render lines from (repeatable).",
)
@click.option(
    "--scans",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder of scans (images, PDFs) whose lines the shipped recognizer labels. "
    "Never the pages you measure on.",
)
@click.option(
    "--fonts",
    type=click.Path(exists=True, file_okay=False),
    multiple=True,
    default=("/usr/share/fonts",),
    show_default=True,
    help="Font folder (repeatable).",
)
@click.option(
    "--words",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Word list for form-like lines (default: the books' own words).",
)
@click.option(
    "--distill",
    is_flag=True,
    help="Learn the shipped recognizer's per-step distributions (crops as wide as it "
    "reads them, no text needed) instead of CTC on the lines' text.",
)
@click.option("--threads", type=int, default=2, show_default=True)
@models_dir_option
def finetune_ppocr(
    out: Path,
    height: int,
    minutes: float,
    texts: tuple[Path, ...],
    scans: Path | None,
    fonts: tuple[str, ...],
    words: Path | None,
    distill: bool,
    threads: int,
    models_dir: Path | None,
) -> None:
    """Fine-tune the shipped PP-OCR recognizer to read at a lower input height (fewer
    multiply-adds a line) and write it to OUT, to run with `--model OUT`.

    Lines are rendered from the --text books in the --fonts given, damaged as scans are,
    and mixed with lines cut from --scans that the shipped recognizer reads confidently.
    Needs torch (pip install torch==2.13.0)."""
    from models.tooling.ppocr.recipe import run  # start-up time: see the docstring

    try:
        run(
            out=out,
            height=height,
            minutes=minutes,
            texts=texts,
            scans=scans,
            fonts=fonts,
            words=words,
            distill=distill,
            threads=threads,
            models_dir=resolve_models_dir(models_dir),
            echo=click.echo,
        )
    except OcrqError as exc:
        fail(exc)


COMMANDS = [finetune_ppocr]
