"""Real line crops labelled by the shipped recognizer (the teacher): the page detector
cuts each scan into lines as the worker does, the 48 px recognizer reads them, and only
lines it reads confidently are kept, as (crop PNG, text) rows of a TSV.

Only for scans outside the evaluation sets: a model tuned on the crops it is scored on
would measure nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from models.base import Engine
from models.crops import as_rgb, crop_quad


def page_lines(
    engine: Engine, image: np.ndarray, min_confidence: float
) -> list[tuple[np.ndarray, str]]:
    """(crop, teacher text) for every line of the page read at `min_confidence` or above."""
    rgb = as_rgb(image)
    regions = engine.detector.detect(rgb)
    crops = [crop_quad(rgb, r.quad) for r in regions]
    crops = [c for c in crops if c.shape[0] >= 8 and c.shape[1] >= 8]
    if not crops:
        return []
    lines = engine.recognizer.recognize(crops)
    return [
        (crop, line.text)
        for crop, line in zip(crops, lines, strict=True)
        if line.text.strip() and line.confidence >= min_confidence
    ]


def harvest(
    engine: Engine, images: Iterable[tuple[str, np.ndarray]], out: Path, min_confidence: float
) -> int:
    """Write each page's confident lines under `out` (PNG crops and `labels.tsv`)."""
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with (out / "labels.tsv").open("a", newline="", encoding="utf-8") as f:
        rows = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        for name, image in images:
            for k, (crop, text) in enumerate(page_lines(engine, image, min_confidence)):
                file = f"{name}_{k:04d}.png"
                cv2.imwrite(str(out / file), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                rows.writerow([file, text])
                n += 1
    return n


def read_labels(folder: Path) -> list[tuple[Path, str]]:
    with (folder / "labels.tsv").open(encoding="utf-8", newline="") as f:
        return [(folder / row[0], row[1]) for row in csv.reader(f, delimiter="\t") if len(row) == 2]
