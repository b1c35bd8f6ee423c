"""Thin spaces before ; : ! ? dropped, and spaces the recognizer lost over a wide blank
put back, by measuring each gap in the line crop.

Older book print sets a thin space before ; : ! and ? ("identity ; and"), narrower than
the line's word spaces. The recognizer reads any visible gap as a space, so it writes
"identity ; and", which no English transcription (nor Tesseract) does. A monospaced
receipt's "Total : 12.00" is another matter: that gap is a whole character cell, as wide
as the line's word spaces, and receipt transcriptions keep it.

So each space the recognizer puts before one of those marks is measured: the widest run
of ink-free columns between the characters either side (a CTC step s lies over input
column 8 s), against the median of the same measure over the line's other spaces. A gap
under THIN_RATIO of that is a thin space and is dropped. Measured on the eval sets
(INT8, 2026-11-30): the book pages' 23 such gaps at 0.50-0.88 of their lines' word
spaces, the receipts' 22 at 0.92-2.18 (7 more, alone on their line, are kept).

The other way round: the recognizer can read a wide blank between two characters as no
space at all, most often a column gutter the detector read across ("thisimport" for
"this" at a left column's end and "import" at the right one's start: a 1-em gap, on
rendered two-column pages, `scripts/make_column_pages.py`). A blank of at least
LOST_SPACE crop heights (about 0.8 em; a justified word space is at most ~0.5 em)
between two characters gets a space (`lost_spaces`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.ppocr.smallcaps import ink_mask

MARKS = frozenset(";:!?")
THIN_RATIO = 0.9
# Rows whose ink counts: the crop's middle (48 rows), so a neighbouring line's descenders
# or ascenders cut in at the edges do not close a gap.
INK_ROWS = slice(8, 40)


# A blank this many line heights wide between two characters is a space (at the crop's
# own aspect: the input's columns are `width_scale` as wide).
LOST_SPACE = 0.6


def needs_measuring(text: str) -> bool:
    """Whether the line has a space before a mark (the only spaces this may drop)."""
    return any(" " + mark in text for mark in MARKS)


def blank_run(ink: np.ndarray, start: int, stop: int) -> int:
    """Longest run of False in `ink[start:stop]` (columns without ink)."""
    window = np.concatenate(([True], ink[max(start, 0) : max(stop, 0)], [True]))
    inked = np.flatnonzero(window)
    return int(np.diff(inked).max() - 1)


def line_ink(gray: np.ndarray) -> np.ndarray:
    """Columns of `gray` (the line crop, H x W) with ink in its middle rows (INK_ROWS)."""
    return ink_mask(gray)[INK_ROWS].any(axis=0)


def thin_spaces(
    tokens: Sequence[str], steps: np.ndarray, ink: np.ndarray, step_columns: int
) -> set[int]:
    """Indices of the spaces in `tokens` (CTC emissions at `steps`, each step
    `step_columns` input columns wide) that are thin: before one of MARKS, their gap in
    `ink` (`line_ink`) under THIN_RATIO of the median gap of the line's other spaces. A
    line with no other space keeps its spaces: nothing to compare with."""
    gaps = {
        k: blank_run(ink, steps[k - 1] * step_columns, (steps[k + 1] + 1) * step_columns)
        for k in range(1, len(tokens) - 1)
        if tokens[k] == " "
    }
    words = [gap for k, gap in gaps.items() if tokens[k + 1] not in MARKS]
    if not words:
        return set()
    word_gap = float(np.median(words))
    return {k for k, gap in gaps.items() if tokens[k + 1] in MARKS and gap < THIN_RATIO * word_gap}


def drop_thin_spaces(
    tokens: Sequence[str], steps: np.ndarray, gray: np.ndarray, step_columns: int
) -> tuple[list[str], np.ndarray]:
    """`tokens` (CTC emissions at `steps`) and their steps without the thin spaces
    (`thin_spaces`) measured in `gray` (the line crop, H x W)."""
    drop = thin_spaces(tokens, steps, line_ink(gray), step_columns)
    keep = [k for k in range(len(tokens)) if k not in drop]
    return [tokens[k] for k in keep], steps[keep]


def far_apart(tokens: Sequence[str], steps: np.ndarray, least_steps: float) -> list[int]:
    """Indices k of `tokens` (CTC emissions at `steps`) where k and k + 1 are not spaces
    and lie at least `least_steps` steps apart: the only places a space may be lost."""
    return [
        k
        for k in range(len(tokens) - 1)
        if tokens[k] != " " and tokens[k + 1] != " " and steps[k + 1] - steps[k] >= least_steps
    ]


def lost_spaces(
    far: Sequence[int], steps: np.ndarray, ink: np.ndarray, step_columns: int, least: float
) -> list[int]:
    """Those of `far` (`far_apart`, at least `least` columns apart) after which a space
    belongs: `ink` (`line_ink`) blank between the two characters for at least `least`
    columns (LOST_SPACE x the input's height x its width scale)."""
    return [
        k
        for k in far
        if blank_run(ink, steps[k] * step_columns, (steps[k + 1] + 1) * step_columns) >= least
    ]
