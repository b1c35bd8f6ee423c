"""Cut a line read across a column gutter into the two lines it is.

The detector can join two columns' lines that sit side by side into one box when the
gutter between them looks, at its scale, like a word space. One such box lying across
the gutter is enough for the layout to see no columns, and the page is read across them,
line by line. After recognition each word's place along its line is known
(`TextLine.words`), so a line is cut at a space between two of its words when that
space is a gutter:

- wide: at least `GAP` line heights (a word space is 0.2-0.3);
- lying under (or over) `SUPPORT` lines of print nearby (within `REACH` line heights)
  that leave a strip of it (`STRIP` line heights wide, anywhere in the space) blank and
  have words on both sides of it: the gutter the rest of the page shows. A justified line's wide space is not cut: the lines around it
  have words there.

Lines of larger print than the page's (headings) are never cut: a title over two columns
may have a space right over the gutter. Lines whose words are not placed, or whose crop
was read turned (vertical text), are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from models.base import Region, TextLine
from models.words import crop_to_page, page_words

GAP = 0.4  # line heights
REACH = 4.0  # line heights above and below a line where its gutter's support is looked for
SUPPORT = 2  # lines of print that must show the gutter too
BLOCKED = 4  # ... of which at most one in this many may have a word there
BODY = 1.3  # lines this much taller than the page's median line are headings: never cut
MARGIN = 0.1  # line heights of blank kept beside the words on each side of a cut
INKED_SHARE = 0.5  # a box narrowed to its words keeps at least this share of its width
STRIP = 0.2  # line heights: the width of blank the lines nearby must leave in the space


@dataclass(frozen=True)
class _Line:
    top: float
    bottom: float
    words: tuple[tuple[float, float], ...]  # page x-extents, left to right

    @property
    def height(self) -> float:
        return self.bottom - self.top


def split_at_gutters(
    pairs: Sequence[tuple[Region, TextLine]],
) -> list[tuple[Region, TextLine]]:
    """`pairs` with every line that runs across a column gutter cut in two there."""
    lines = [_measure(region, line) for region, line in pairs]
    heights = [ln.height for ln in lines if ln is not None]
    if len(heights) < SUPPORT + 1:
        return list(pairs)
    body = BODY * float(np.median(heights))
    out: list[tuple[Region, TextLine]] = []
    for (region, line), measured in zip(pairs, lines, strict=True):
        cuts = _gutters_after(measured, lines, body) if measured is not None else []
        out.extend(_cut(region, line, cuts) if cuts else [(region, line)])
    return out


def _measure(region: Region, line: TextLine) -> _Line | None:
    """A line's page extent and its words' x-extents, when its words are placed along
    the page's x axis."""
    if not line.words or len(line.words) < 2 or crop_to_page(region.quad)[3]:
        return None
    boxes = page_words(region.quad, line.words)
    x0, y0, x1, y1 = region.bbox
    if (x1 - x0) < (y1 - y0):
        return None
    return _Line(y0, y1, tuple((b[1], b[3]) for b in boxes))


def _gutters_after(line: _Line, lines: Sequence[_Line | None], body: float) -> list[int]:
    """Indices of the words after which `line` crosses a gutter."""
    if line.height > body:
        return []
    words = line.words
    reach = REACH * line.height
    near = [
        other
        for other in lines
        if other is not None
        and other is not line
        and other.bottom > line.top - reach
        and other.top < line.bottom + reach
    ]
    half = STRIP * line.height / 2
    cuts = []
    for i in range(len(words) - 1):
        a, b = words[i][1], words[i + 1][0]
        if b - a < GAP * line.height:
            continue
        strips = np.arange(a + half, b - half + 1e-6, half / 2) if b - a > 2 * half else [a]
        if any(_supported(near, x - half, x + half, words[0][0], words[-1][1]) for x in strips):
            cuts.append(i)
    return cuts


def _supported(near: Sequence[_Line], lo: float, hi: float, left: float, right: float) -> bool:
    """`SUPPORT` nearby lines have words left of lo..hi and as many right of it, within
    left..right (the line's own span): one line across the gutter, or two side by side;
    and at most one in `BLOCKED` of them has a word in it (another line read across the
    gutter, its space there lost)."""
    lefts = rights = blocked = 0
    for other in near:
        blocked += any(x0 < hi and x1 > lo for x0, x1 in other.words)
        lefts += any(left < x1 <= lo for _, x1 in other.words)
        rights += any(hi <= x0 < right for x0, _ in other.words)
    flanked = min(lefts, rights)
    return flanked >= SUPPORT and blocked * BLOCKED <= flanked


def _cut(region: Region, line: TextLine, afters: list[int]) -> list[tuple[Region, TextLine]]:
    """`line` cut after each word index in `afters`, each part with the part of the
    region's quad that holds it (crop columns mapped back to the page)."""
    spans = line.words or ()
    matrix, width, height, _ = crop_to_page(region.quad)
    pad = MARGIN * height
    bounds = [0, *(i + 1 for i in afters), len(spans)]
    parts = []
    for start, stop in zip(bounds, bounds[1:], strict=False):
        part = spans[start:stop]
        c0 = 0.0 if start == 0 else max(0.0, part[0][1] - pad)
        c1 = width if stop == len(spans) else min(width, part[-1][2] + pad)
        chars = [len(w) for w, *_ in part]
        parts.append(
            (
                _part(region, matrix, c0, c1, height),
                TextLine(
                    text=" ".join(w for w, *_ in part),
                    confidence=float(np.average([c for *_, c in part], weights=chars)),
                    words=tuple((w, x0 - c0, x1 - c0, c) for w, x0, x1, c in part),
                ),
            )
        )
    return parts


def inked(region: Region, line: TextLine) -> Region:
    """`region` narrowed to its words (and `MARGIN` line heights beside them): the
    detector pads its boxes, and a gutter measured between padded boxes can close. A box
    whose words span less than `INKED_SHARE` of it stays as it is: a speck's box with
    a character placed at its edge would move onto its neighbour's ink."""
    spans = line.words
    if not spans:
        return region
    matrix, width, height, turned = crop_to_page(region.quad)
    if turned:
        return region
    pad = MARGIN * height
    c0, c1 = max(0.0, spans[0][1] - pad), min(width, spans[-1][2] + pad)
    if c1 - c0 < INKED_SHARE * width:  # words placed in a sliver of it: keep the box
        return region
    return _part(region, matrix, c0, c1, height)


def _part(region: Region, matrix: np.ndarray, c0: float, c1: float, height: float) -> Region:
    """The part of `region` over its crop's columns c0..c1 (`matrix`: crop to page)."""
    corners = np.array([[(c0, 0.0), (c1, 0.0), (c1, height), (c0, height)]], np.float64)
    quad = cv2.perspectiveTransform(corners, matrix)[0]
    return Region(quad=tuple((float(x), float(y)) for x, y in quad), score=region.score)  # type: ignore[arg-type]
