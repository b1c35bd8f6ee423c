"""Word boxes: where a recognizer placed each word along its line crop (`TextLine.words`,
`line_spans`), and those spans on the page (`page_words`), so searchable PDFs, hOCR and
ALTO put each word on its printed box.

A CTC recognizer emits each character at one step of its output. The step is no box: on
rendered lines (7 fonts, 20-90 px high, 1,681 words, the FP32 PP-OCR recognizer) a
glyph's ink started 0.5 steps before its step's column (median) and ended 0.9 after, each
spread over +-0.7 steps. So a word's span is first estimated from its first and last
characters' steps, widened to cover their glyphs (`BEFORE`, `AFTER`: best of a grid),
then snapped to the ink there: the ink runs (columns with ink between blank ones) centred
in the estimate. Word x-IoU against the true ink extents, mean / 5th
percentile: 0.87 / 0.71 from the steps alone, 0.98 / 0.95 snapped (all 14 under 0.8 are
lone commas, colons and full stops a few pixels wide, 1-2 px off).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from models.base import Quad
from models.crops import _axis_aligned, quad_size

Span = tuple[str, float, float, float]  # word, x0, x1 (crop columns), confidence

# A word's estimate runs from BEFORE steps before its first character's step to AFTER
# steps after its last one's (best of a grid, measured as above), and snapping may move
# it out by at most SNAP_SLACK steps: a noise speck or a touching neighbour word cannot
# stretch it further.
BEFORE = 0.75
AFTER = 1.25
SNAP_SLACK = 0.5


def word_ranges(text: str) -> list[tuple[int, int]]:
    """(start, end) character indices of the words of `text`: its runs between spaces."""
    ranges, start = [], 0
    for word in text.split(" "):
        if word:
            ranges.append((start, start + len(word)))
        start += len(word) + 1
    return ranges


def ink_runs(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, stops) of the runs of True in a column profile."""
    edges = np.diff(ink.astype(np.int8), prepend=0, append=0)
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def line_spans(
    text: str,
    columns: np.ndarray,
    probs: np.ndarray,
    step: float,
    ink: np.ndarray | None = None,
    scale: float = 1.0,
) -> tuple[Span, ...]:
    """The words of `text` along its line: `columns[n]` is the input column where the
    recognizer emitted character n (its step x the step width `step`), `probs[n]` its
    probability; `ink` the input's ink columns (a bool profile, one per column), if the
    spans are to be snapped to it. Spans are in input columns x `scale` (the crop's
    columns per input column), clipped to the input's width (`len(ink)`) where known;
    confidence is the mean probability of the word's characters."""
    ranges = word_ranges(text)
    if not ranges or len(columns) != len(text) or len(probs) != len(text):
        return ()
    bounds = np.array(ranges)
    first = np.asarray(columns, dtype=float)[bounds[:, 0]]
    last = np.asarray(columns, dtype=float)[bounds[:, 1] - 1]
    x0, x1 = first - BEFORE * step, last + AFTER * step
    if ink is not None and ink.any():
        x0, x1 = _snapped(x0, x1, first, last, ink, step)
    right = len(ink) if ink is not None else np.inf
    x0 = (np.clip(x0, 0, right) * scale).round(2).tolist()
    x1 = (np.clip(x1, 0, right) * scale).round(2).tolist()
    cumulative = np.concatenate(([0.0], np.cumsum(probs, dtype=float)))
    sums = cumulative[bounds[:, 1]] - cumulative[bounds[:, 0]]
    conf = (sums / (bounds[:, 1] - bounds[:, 0])).round(4).tolist()
    return tuple((text[a:b], u, v, c) for (a, b), u, v, c in zip(ranges, x0, x1, conf, strict=True))


def _snapped(x0, x1, first, last, ink: np.ndarray, step: float):
    """Each estimate [x0, x1] narrowed or widened to the ink runs centred in it, by at most
    SNAP_SLACK steps past it. A side keeps its estimate where that ink stops more than a
    step short of the word's first (last) character's column: ink that is not the word's
    (faint print, a speck). A line's last character is often emitted a step or more past
    its glyph, hence a step's leeway rather than none."""
    starts, stops = ink_runs(ink)
    centres = (starts + stops) / 2.0  # sorted: the runs are disjoint
    lo = np.searchsorted(centres, x0, side="left")
    hi = np.searchsorted(centres, x1, side="right")  # runs lo..hi-1 are centred inside
    found = hi > lo
    left = starts[np.minimum(lo, len(starts) - 1)]
    right = stops[np.maximum(hi - 1, 0)]
    slack = SNAP_SLACK * step
    x0 = np.where(found & (left <= first + step), np.maximum(left, x0 - slack), x0)
    x1 = np.where(found & (right >= last - step), np.minimum(right, x1 + slack), x1)
    return x0, x1


def crop_to_page(
    quad: Quad | np.ndarray, rotate_tall: float = 1.5
) -> tuple[np.ndarray, float, float, bool]:
    """How `models.crops.crop_quad` cut `quad`: the 3x3 map from the rectified crop's
    pixels (before any turn) to page pixels, that crop's width and height, and whether it
    was turned (a crop at least `rotate_tall` times taller than wide is read turned 90
    degrees counter-clockwise, so the line's columns are the rectified crop's rows). The
    page's size is unknown here: an axis-aligned quad reaching past the page's right or
    bottom edge is taken as cut whole."""
    q = np.asarray(quad, dtype=np.float32).reshape(4, 2)
    if _axis_aligned(q):
        x0, y0 = max(0.0, float(np.floor(q[0, 0]))), max(0.0, float(np.floor(q[0, 1])))
        w, h = float(np.ceil(q[2, 0])) - x0, float(np.ceil(q[2, 1])) - y0
        matrix = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
    else:
        iw, ih = quad_size(q)
        dst = np.array([[0, 0], [iw, 0], [iw, ih], [0, ih]], dtype=np.float32)
        matrix = cv2.getPerspectiveTransform(dst, q).astype(np.float64)
        w, h = float(iw), float(ih)
    return matrix, w, h, bool(h >= rotate_tall * w)


def page_words(quad: Quad | np.ndarray, spans: Sequence[Span]) -> list[list]:
    """Crop spans (`TextLine.words`) as `RegionResult.words`: [word, x0, y0, x1, y1,
    confidence], each the axis-aligned page box around the span's strip of the crop
    (its columns, the crop's full height) mapped back onto `quad`, clipped to the quad's
    bounding box."""
    if not spans:
        return []
    matrix, w, h, turned = crop_to_page(quad)
    corners = []
    for _, a, b, _ in spans:
        if turned:  # columns a..b of the turned crop are rows a..b of the rectified one
            corners += [(0.0, a), (w, a), (w, b), (0.0, b)]
        else:
            corners += [(a, 0.0), (b, 0.0), (b, h), (a, h)]
    points = cv2.perspectiveTransform(np.array([corners], dtype=np.float64), matrix)[0]
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    points = np.clip(points, q.min(axis=0), q.max(axis=0)).reshape(len(spans), 4, 2)
    return [
        [
            word,
            round(float(p[:, 0].min()), 1),
            round(float(p[:, 1].min()), 1),
            round(float(p[:, 0].max()), 1),
            round(float(p[:, 1].max()), 1),
            confidence,
        ]
        for (word, _, _, confidence), p in zip(spans, points, strict=True)
    ]
