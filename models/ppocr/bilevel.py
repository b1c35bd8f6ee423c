"""When the detector's coarse probe is enough: a bilevel scan, and no line across a gutter.

The fine pass is most of the detector's time on a book page (a pass at up to 2000 px,
where the probe reads 896). On a bilevel scan (a document scanner's text mode: every
pixel black or white) with print of a readable size at the probe's scale, the probe
finds the same lines, except where it joins the two sides of a narrow gap that runs
down the page: a column gutter, read across as one line. Measured on rendered two-column
pages (`scripts/make_column_pages.py`, not the eval sets): at the probe's scale a gutter
of 1 em stays open from print about 17 px high (14-pt type on a letter page) and is
bridged below it; one of 0.5 em is bridged at every size tried (8-16 pt).

So `probe_suffices` keeps the probe's boxes on such a page only when no box holds a
wide blank run of columns that stays blank for a few line heights above or below it,
with text on both sides: a river of white through the page, which a justified line's
wide word space is not (the lines around it have ink there). A heading's word space
with white around it counts as a river too: that page gets the fine pass as before,
which costs time, not accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from models.base import Region
from models.words import ink_runs

# A page is bilevel when at most this share of its pixels is neither 0 nor 255 (a 1-bit
# TIFF or PNG; a JPEG of a bilevel scan has grey ringing around every stroke: 1.6-2.6 %).
GREY_SHARE = 0.001
# A blank run of columns inside a box at least this many box heights wide may be a gutter
# (a word space is 0.2-0.3 box heights, a justified one up to ~0.4; a 0.7-em gutter,
# which the probe reads across at every size, ~0.5).
GAP = 0.4
# ... and is one when its middle third stays blank for this many box heights above or
# below the box, with ink left and right of it on at least FLANKED of those rows: lines
# of text on both sides, not a page margin.
RIVER_REACH = 3.0
FLANKED = 0.3
# A pixel of the probe-scale page this dark or darker holds ink.
INK = 224


def is_bilevel(image: np.ndarray) -> bool:
    """Every pixel black or white (up to `GREY_SHARE`), judged on every 4th row."""
    sample = image[::4]
    grey = np.count_nonzero((sample != 0) & (sample != 255))
    channels = sample.shape[2] if sample.ndim == 3 else 1
    return grey <= GREY_SHARE * sample.size and (channels == 1 or _grey_colours(sample))


def _grey_colours(sample: np.ndarray) -> bool:
    """Colour channels all equal: a bilevel image stored as RGB."""
    return bool((sample == sample[..., :1]).all())


def probe_suffices(image: np.ndarray, regions: Sequence[Region], scale: float) -> bool:
    """True when no box of `regions` (page pixels) runs across a river of white:
    `image` is looked at `scale` times its size (the probe's)."""
    if not regions:
        return False
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if small.ndim == 3:
        small = small.min(axis=2)
    ink = small <= INK
    return not any(_crosses_river(ink, np.asarray(r.bbox) * scale) for r in regions)


def _crosses_river(ink: np.ndarray, box: np.ndarray) -> bool:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, ink.shape[1]), min(y1, ink.shape[0])
    height = y1 - y0
    if height < 2 or x1 - x0 < 2:
        return False
    reach = int(round(RIVER_REACH * height))
    spans = (ink[max(0, y0 - reach) : y0, x0:x1], ink[y1 : y1 + reach, x0:x1])
    for a, b in _blank_runs(ink[y0:y1, x0:x1].any(axis=0), GAP * height):
        third = (b - a) // 3
        lo, hi = a + third, b - third
        if any(_river_in(span, lo, max(hi, lo + 1), reach) for span in spans):
            return True
    return False


def _river_in(span: np.ndarray, lo: int, hi: int, reach: int) -> bool:
    """Columns lo..hi of `span` (rows above or below a box, `reach` of them when the page
    does not end first) blank, between ink on both sides on enough rows."""
    if span.shape[0] < reach or span[:, lo:hi].any():
        return False
    flanked = span[:, :lo].any(axis=1) & span[:, hi:].any(axis=1)
    return flanked.mean() >= FLANKED


def _blank_runs(columns: np.ndarray, least: float) -> list[tuple[int, int]]:
    """(start, end) of the runs of False in `columns` at least `least` long, between ink."""
    starts, stops = ink_runs(~columns)
    inner = (starts > 0) & (stops < len(columns)) & (stops - starts >= least)
    return [(int(a), int(b)) for a, b in zip(starts[inner], stops[inner], strict=True)]
