"""The fine-tuning recipe end to end: gather the lines (rendered, and harvested from
scans by the shipped recognizer), hold some out, train, and say what changed."""

from __future__ import annotations

import random
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from models.ppocr import engine as ppocr_engine
from models.ppocr.resources import model_path
from models.tooling.ppocr import lines
from models.tooling.ppocr.finetune import FinetuneOptions, load_crop, train
from models.tooling.ppocr.harvest import harvest, read_labels
from ocrq.config import EngineOptions, InputLimits
from ocrq.errors import ModelError
from ocrq.images import PAGE_FILE_PATTERNS, iter_pages

HELD_OUT = 150  # lines of each kind kept out of training, scored before and after

SCAN_SUFFIXES = {pattern.removeprefix("*") for pattern in PAGE_FILE_PATTERNS}


def scan_pages(folder: Path, echo: Callable[[str], None]) -> Iterator[tuple[str, np.ndarray]]:
    """Every page of every image and PDF under `folder`; unreadable files are skipped."""
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in SCAN_SUFFIXES):
        try:
            name = re.sub(r"\W", "_", path.stem)
            for k, page in enumerate(iter_pages(path, InputLimits())):
                yield f"{name}_p{k}", page
        except Exception as exc:  # noqa: BLE001 - one bad scan must not stop the harvest
            echo(f"skipped {path.name}: {exc}")


def vocabulary(texts: Sequence[Path], words: Path | None) -> list[str]:
    if words is not None:
        source = words.read_text(encoding="utf-8", errors="ignore").split()
    else:
        source = " ".join(p.read_text(encoding="utf-8", errors="ignore") for p in texts).split()
    return sorted({w for w in source if w.isalpha() and w.islower() and len(w) > 2})


def run(
    *,
    out: Path,
    height: int,
    minutes: float,
    texts: Sequence[Path],
    scans: Path | None,
    fonts: Sequence[str],
    words: Path | None,
    threads: int,
    models_dir: Path,
    distill: bool = False,
    echo: Callable[[str], None] = print,
    seed: int = 0,
) -> Path:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - the export extra is missing
        raise ModelError(f"fine-tuning needs onnx and torch: {exc}") from exc
    font_files = lines.find_fonts(fonts)
    if not font_files:
        raise ModelError(f"no .ttf/.otf fonts under {', '.join(fonts)}")
    prose = lines.prose_lines(texts)
    vocab = vocabulary(texts, words)
    real: list[tuple[np.ndarray, str]] = []
    if scans is not None:
        teacher = ppocr_engine.load(EngineOptions(precision="fp32"), models_dir, threads)
        with tempfile.TemporaryDirectory(prefix="ocrq-harvest-") as tmp:
            n = harvest(teacher, scan_pages(scans, echo), Path(tmp), min_confidence=0.9)
            real = [(load_crop(p), t) for p, t in read_labels(Path(tmp))]
        echo(f"{n} lines harvested from {scans}")
    random.Random(seed).shuffle(real)
    synthetic = lines.stream(font_files, prose, vocab, seed=seed + 99)
    held_out = real[:HELD_OUT] + [next(synthetic) for _ in range(HELD_OUT)]
    echo(f"{len(font_files)} fonts, {len(prose)} prose lines, {len(real[HELD_OUT:])} scan lines")
    opts = FinetuneOptions(
        height=height, minutes=minutes, threads=threads, seed=seed, distill=distill
    )
    source = onnx.load(str(model_path(ppocr_engine.resources.REC_FILE)))
    train(
        source,
        lines.stream(font_files, prose, vocab, seed=seed + 7),
        real[HELD_OUT:],
        held_out,
        opts,
        out,
        log=echo,
    )
    echo(f"wrote {out}: run it with `ocrq run --model {out} ...`")
    return out
