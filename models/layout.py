"""Page layout from detected text-line boxes alone: blocks in reading order, the visual
lines and paragraphs inside each block, and what kind of block each one is.

Method: recursive XY-cut (Nagy & Seth 1984), on the detector's boxes rather than on pixels
(as Ha, Haralick & Phillips 1995 did with connected components). A page is split into
columns at full-height white gaps (gutters), and into parts at full-width gaps, recursively;
the leaves are blocks, read in the order of the cuts: left to right across columns, top to
bottom down the parts. XY-cut was chosen over a topological sort of lines (Breuel 2003)
because its leaves are the blocks we report and because one rule set gives the order and
the blocks at once; both need the same two additions, made here:

- A vertical cut needs a gutter between text, not a gap between a receipt's items and
  prices or a table's cells: both sides must hold at least MIN_COLUMN_LINES lines, one
  under the other, whose boxes are long (median width >= LONG_ASPECT x height, on
  LONG_COLUMN_LINES lines), or fairly long (>= MIN_ASPECT) and set like filled columns: lines left of the gutter
  mostly run on to near it, lines right of it mostly start at one left edge, neither
  side's boxes half as wide as the other's (`_prose_sides`).
- A gutter may run under a caption: a few short boxes (half a column line at most, at
  most CROSSERS of the part's boxes, 4 at least) lying across it with column text above
  and below them (a picture's caption set between two columns). The columns are cut as
  if the caption were not there, and it is read after them as a block of its own.
- Page furniture, read before (after) everything else on its page: its first (last) row
  when set off by a paragraph gap and shaped like a running head or foot (print no
  taller than the page's, and short, or with a gap of 2 line heights inside: "SECRETS
  ... 13"); and, where columns follow, up to HEAD_ROWS rows above them set off by a block
  gap and not themselves in columns (a title over the middle column only), one such row
  below them (a page number under the middle of three columns). A gutter wider than
  SPREAD_GAP line heights separates pages (a scanned spread), each with its own head and
  foot.

Full-width cuts are made at block gaps, except where a gutter runs on across the gap (a
blank line that two columns happen to share: cutting there would read the columns'
tops, then their bottoms); a gap smaller than a block gap is cut only when it lays bare
a gutter (a heading set close above its columns).

Within a block, lines and their order are `models.order.group_lines` of the block's
boxes. A gutter-free tree only ever cuts between those lines, so a single-column page
reads exactly as `models.order.reading_order` reads it (tested).

Units: every distance is in multiples of the page's median box height `hm` (and its
median line gap), so the rules do not depend on resolution. Boxes are measured after
undoing the page's skew (the median angle of long boxes), so a 3-degree skew opens no
false cut and closes no gutter.

Kinds (per block, from geometry only; first rule that holds):
- page-number: a header or footer that is one short box (width <= 3.5 x height);
- header: one row, nothing above it in its columns, in the top 15 % of the text's height,
  a paragraph gap below it, print no taller than 1.3 x the page's;
- footer: the same at the bottom;
- heading: at most 3 rows of print at least 1.3 x the page's height; or one row,
  centred on the text (within 8 % of its width), at most 70 % as wide, a block gap above
  or below;
- caption: at most 3 rows with at least CAPTION_SPACE line heights of empty page
  directly above or below it, bounded by other text (the place of a picture);
- text: the rest.

Paragraphs within a block: a new one starts at a line set off from the previous by more
than the page's line gap + PARA_EXTRA x hm, or at an indented line (>= INDENT x hm right
of the block's left edge) after a line that was not indented or ended short (>= 2 hm
before the right edge). A block with 3 or more inset lines, 3 in 4 of them as far from
its left edge as from its right (within 0.3 hm), is centred and has no indents.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.base import Region
from models.order import group_lines

KINDS = ("text", "heading", "header", "footer", "page-number", "caption")

# All in multiples of the median box height hm, except where said.
# narrowest gutter between columns: the detector's boxes reach ~0.25 hm past the ink on
# each side, so a magazine's 1.5 em gutter is 0.4 hm between boxes
COL_GAP = 0.3
SPREAD_GAP = 4.0  # a gutter this wide separates pages, not columns (typeset gutters: 1-2 em)
BLOCK_EXTRA = 0.8  # a block gap is the median line gap + this
PARA_EXTRA = 0.4  # a paragraph gap is the median line gap + this
INDENT = 0.8  # first-line indent
SHORT_LINE = 2.0  # a line ending this far before the block's right edge is short
MIN_ASPECT = 6.0  # prose columns: median box width / height at least this (~12 characters)
MIN_COLUMN_LINES = 4  # a column holds at least this many lines (fewer: rows, as today)
FILL = 0.25  # most lines of a column left of a gutter end within this share of its width
LONG_ASPECT = 8.0  # boxes this long are prose lines whatever the other side holds
LONG_COLUMN_LINES = 5  # ... on at least this many lines each side
FURNITURE_SHARE = 0.15  # headers/footers sit in this share of the text's height
HEADING_SIZE = 1.3  # print this much taller than the page's is a heading's
CAPTION_SPACE = 6.0  # empty page beside a caption (a picture's place)
SKEW_MIN_DEG = 0.2  # smaller page skew is left alone
CUT_TRIES = 8  # gaps narrower than a block gap tried, widest first, to lay bare columns
HEAD_ROWS = 3  # rows a title or running head above columns may take
CROSSERS = 0.08  # share of a part's boxes (at least 4) that may lie across a gutter


@dataclass(frozen=True)
class Layout:
    """Per region (indexed as the `regions` given): `block`, `paragraph` (page-wide ids,
    numbered in reading order) and `line` (visual line within its block, from 0); `order`:
    region indices in reading order; `kinds`: each block's kind (one of KINDS)."""

    order: tuple[int, ...]
    block: tuple[int, ...]
    paragraph: tuple[int, ...]
    line: tuple[int, ...]
    kinds: tuple[str, ...]

    def blocks(self) -> list[list[int]]:
        """Region indices of each block, in reading order."""
        out: list[list[int]] = [[] for _ in self.kinds]
        for i in self.order:
            out[self.block[i]].append(i)
        return out

    def page_lines(self) -> tuple[int, ...]:
        """Per region, its visual line numbered across the page (in reading order) rather
        than within its block, as `models.page.page_regions` numbers lines."""
        number: dict[tuple[int, int], int] = {}
        for i in self.order:
            number.setdefault((self.block[i], self.line[i]), len(number))
        return tuple(number[(b, li)] for b, li in zip(self.block, self.line, strict=True))


def layout(regions: Sequence[Region], shape: tuple[int, int]) -> Layout:
    """Blocks, reading order, lines, paragraphs and block kinds of a page's regions (in
    page pixels, as the detector gives them). `shape` is the page's (height, width); the
    rules measure from the boxes themselves (their heights, gaps and extent), so scans
    with wide or narrow margins read alike."""
    if not regions:
        return Layout((), (), (), (), ())
    page = _Page(regions, shape)
    return page.finish(page.cut(list(range(len(regions)))))


@dataclass
class _Leaf:
    rows: list[list[int]]  # region indices per visual line, in reading order
    page: np.ndarray | None = None  # x0, y0, x1, y1 of its page's text (a spread's page)


def _deskewed_boxes(regions: Sequence[Region]) -> np.ndarray:
    """(n, 4) x0, y0, x1, y1 of each quad after turning the page by minus its skew."""
    quads = np.array([r.quad for r in regions], dtype=np.float64).reshape(-1, 4, 2)
    top = quads[:, 1] - quads[:, 0]
    side = quads[:, 3] - quads[:, 0]
    width, height = np.hypot(top[:, 0], top[:, 1]), np.hypot(side[:, 0], side[:, 1])
    long = width >= 2 * np.maximum(height, 1e-6)
    if long.sum() >= 3:
        angle = float(np.median(np.arctan2(top[long, 1], top[long, 0])))
        if abs(math.degrees(angle)) >= SKEW_MIN_DEG:
            c, s = math.cos(-angle), math.sin(-angle)
            x, y = quads[..., 0], quads[..., 1]
            quads = np.stack([c * x - s * y, s * x + c * y], axis=-1)
    return np.concatenate([quads.min(axis=1), quads.max(axis=1)], axis=1)


def _median_line_gap(box: np.ndarray, hm: float, chunk: int = 256) -> float:
    """Median gap between a box and the nearest box below it in the same column (boxes
    overlapping horizontally by half the narrower), clamped to [-hm/3, 3 hm]. Compared in
    chunks of boxes, so a dense page needs no n x n arrays."""
    x0, y0, x1, y1 = box.T
    w, cy = x1 - x0, (y0 + y1) / 2
    nearest = []
    for s in range(0, len(box), chunk):
        i = slice(s, s + chunk)
        overlap = np.minimum(x1[i, None], x1) - np.maximum(x0[i, None], x0)
        same_col = overlap >= 0.5 * np.minimum(w[i, None], w)
        below = cy > (cy[i] + 0.5 * (y1[i] - y0[i]))[:, None]
        nearest.append(np.where(same_col & below, y0 - y1[i, None], np.inf).min(axis=1))
    gaps = np.concatenate(nearest)
    gaps = gaps[np.isfinite(gaps)]
    if gaps.size == 0:
        return 0.0
    return float(np.clip(np.median(gaps), -hm / 3, 3 * hm))


class _Page:
    def __init__(self, regions: Sequence[Region], shape: tuple[int, int]) -> None:
        self.regions = regions
        self.shape = shape  # kept for a caller's debugging; no rule uses the margins
        self.box = _deskewed_boxes(regions)
        heights = self.box[:, 3] - self.box[:, 1]
        self.hm = max(float(np.median(heights)), 1.0)
        self.gap = _median_line_gap(self.box, self.hm)
        self.block_gap = self.gap + BLOCK_EXTRA * self.hm
        self.para_gap = self.gap + PARA_EXTRA * self.hm

    # -- the cut ------------------------------------------------------------------------

    def rows(self, idx: Sequence[int]) -> list[list[int]]:
        """`group_lines` of these regions, as page indices."""
        return [[idx[j] for j in line] for line in group_lines([self.regions[i] for i in idx])]

    def cut(self, idx: list[int]) -> list[_Leaf]:
        """The page cut into blocks, in reading order: depth first, each part's pieces in
        reading order (on an explicit stack: no recursion limit on pages of many blocks)."""
        leaves: list[_Leaf] = []
        stack: list[tuple[str, list, np.ndarray | None]] = [("page", idx, None)]
        while stack:
            kind, item, extent = stack.pop()
            if kind == "leaf":
                leaves.append(_Leaf(item, extent))
                continue
            if kind == "page":
                children, extent = self.split_page(item)
            else:  # a part's rows, or its boxes (a column: rows to group anew)
                children = self.split_node(item if kind == "rows" else self.rows(item))
            stack.extend((k, part, extent) for k, part in reversed(children))
        return leaves

    def split_page(self, idx: list[int]) -> tuple[list[tuple[str, list]], np.ndarray | None]:
        """A page: a scanned spread split into its pages first; then the page's running
        head and foot set off (before any column is cut) and the rest left to cut. Returns
        the pieces and the page's text extent (None for a spread)."""
        rows = self.rows(idx)
        gutters = self.gutters(idx) if len(rows) >= 2 else []
        spread = [(gl, gr) for gl, gr in gutters if gr - gl >= SPREAD_GAP * self.hm]
        if spread:
            return [("page", part) for part in self.split_at(idx, spread)], None
        head = foot = 0
        if len(rows) >= 3:
            gaps = self.row_gaps(rows)
            head = int(gaps[0] >= self.para_gap and self.furniture(rows[0], idx))
            foot = len(rows) - head >= 3 and gaps[-1] >= self.para_gap
            foot = int(foot and self.furniture(rows[-1], idx))
        pieces: list[tuple[str, list]] = [("leaf", rows[:1])] if head else []
        pieces.append(("rows", rows[head : len(rows) - foot]))
        if foot:
            pieces.append(("leaf", rows[-1:]))
        return pieces, self.row_extent(idx)

    def furniture(self, row: list[int], idx: list[int]) -> bool:
        """A row that looks like a running head or foot: print no taller than the page's,
        and short (half a typical line at most: a page number, a short title) or spread
        out (a gap of 2 line heights inside it: a title and a page number)."""
        b = self.box[row]
        if float(np.median(b[:, 3] - b[:, 1])) > HEADING_SIZE * self.hm:
            return False
        typical = float(np.median(self.box[idx, 2] - self.box[idx, 0]))
        if float(b[:, 2].max() - b[:, 0].min()) <= 0.5 * typical:
            return True
        b = b[np.argsort(b[:, 0], kind="stable")]
        inner = b[1:, 0] - np.maximum.accumulate(b[:, 2])[:-1]
        return bool(inner.size and inner.max() >= 2 * self.hm)

    def split_node(self, rows: list[list[int]]) -> list[tuple[str, list]]:
        """One XY-cut step on a part's rows: at gutters (columns), else at full-width
        gaps; a leaf (a block) where neither cuts. Rows cut at a full-width gap are the
        `group_lines` rows of either side as they are (no row spans a gap)."""
        idx = _flat(rows)
        gutters = self.gutters(idx) if len(rows) >= 2 else []
        if gutters:
            return self.split_columns(idx, rows, gutters)
        crossers, gutters = self.crossed_gutters(idx) if len(rows) >= 2 else ([], [])
        if gutters:
            # a caption set in a picture between the columns: the columns, then it
            across = set(crossers)
            rest = [i for i in idx if i not in across]
            pieces = self.split_columns(rest, self.rows(rest), gutters)
            return [*pieces, ("node", crossers)]
        strips = self.strips(rows)
        if len(strips) > 1:
            return [("rows", strip) for strip in strips]
        k = self.baring_cut(rows)
        if k:
            return [("rows", rows[:k]), ("rows", rows[k:])]
        return [("leaf", rows)]

    def split_columns(
        self, idx: list[int], rows: list[list[int]], gutters: list[tuple[float, float]]
    ) -> list[tuple[str, list]]:
        """Columns left to right; first, rows set off above them (a title) and one below
        (a page number), unless the gutter is a spread's."""
        if max(gr - gl for gl, gr in gutters) < SPREAD_GAP * self.hm:
            gaps = self.row_gaps(rows)
            last = min(HEAD_ROWS, len(rows) - 2)
            head = next((k for k in range(1, last + 1) if gaps[k - 1] >= self.block_gap), 0)
            if head and self.gutters(_flat(rows[:head])):
                head = 0  # the columns themselves start there
            foot = int(len(rows) - head >= 3 and gaps[-1] >= self.block_gap)
            if head or foot:
                pieces: list[tuple[str, list]] = [("leaf", rows[:head])] if head else []
                pieces.append(("rows", rows[head : len(rows) - foot]))
                return pieces + ([("leaf", rows[-1:])] if foot else [])
        return [("node", part) for part in self.split_at(idx, gutters)]

    def split_at(self, idx: list[int], gutters: list[tuple[float, float]]) -> list[list[int]]:
        """These boxes in the columns between gutters, left to right."""
        column = np.searchsorted(np.asarray([gl for gl, _ in gutters]), self.box[idx, 0], "right")
        parts = [
            [i for i, col in zip(idx, column, strict=True) if col == c]
            for c in range(len(gutters) + 1)
        ]
        return [part for part in parts if part]

    def strips(self, rows: list[list[int]]) -> list[list[list[int]]]:
        """Rows without a gutter cut at every block gap, except where the cut would slice
        through columns running on across it (a blank line two columns happen to share:
        cut, the columns' tops would be read before their bottoms)."""
        gaps = self.row_gaps(rows)
        cuts = [k for k in range(1, len(rows)) if gaps[k - 1] >= self.block_gap]
        strips = [rows[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)]
        merged = strips[:1]
        for strip in strips[1:]:
            if self.columns_across(merged[-1], strip):
                merged[-1] = merged[-1] + strip
            else:
                merged.append(strip)
        return merged

    def baring_cut(self, rows: list[list[int]]) -> int:
        """A full-width gap narrower than a block gap, cut only where it lays bare columns
        (a heading set close above them): rows[:k] | rows[k:], or 0."""
        gaps = self.row_gaps(rows)
        for j in np.argsort(-gaps, kind="stable")[:CUT_TRIES]:
            k = int(j) + 1
            if gaps[j] > 0 and (self.part_gutters(rows[:k]) or self.part_gutters(rows[k:])):
                return k
        return 0

    def part_gutters(self, rows: list[list[int]]) -> list[tuple[float, float]]:
        return self.gutters(_flat(rows)) if len(rows) >= 2 else []

    def columns_across(self, upper: list[list[int]], lower: list[list[int]]) -> bool:
        """A gutter of one strip runs on through the lines of the other next to it (boxes
        on both sides of it there, none over it)."""
        above, below = self.box[_flat(upper)], self.box[_flat(lower)]
        reach = 3 * self.hm + max(self.gap, 0.0)
        near_above = above[above[:, 3] >= above[:, 3].max() - reach]
        near_below = below[below[:, 1] <= below[:, 1].min() + reach]
        for gutters, near in (
            (self.part_gutters(lower), near_above),
            (self.part_gutters(upper), near_below),
        ):
            for g0, g1 in gutters:
                over = ((near[:, 0] < g1) & (near[:, 2] > g0)).any()
                if not over and (near[:, 2] <= g0).any() and (near[:, 0] >= g1).any():
                    return True
        return False

    def row_gaps(self, rows: list[list[int]]) -> np.ndarray:
        """Full-width white gap between rows[:k] and rows[k:], for k = 1..len(rows)-1
        (negative where no gap: some box below starts above some box's bottom above)."""
        if len(rows) < 2:
            return np.zeros(0)
        top = np.array([self.box[r, 1].min() for r in rows])
        bottom = np.array([self.box[r, 3].max() for r in rows])
        above = np.maximum.accumulate(bottom)[:-1]
        below = np.minimum.accumulate(top[::-1])[::-1][1:]
        return below - above

    def gutters(self, idx: list[int]) -> list[tuple[float, float]]:
        """Full-height white gaps (x from, x to) between prose columns of these boxes; each
        is judged by the boxes between it and the next white gaps on either side."""
        b = self.box[idx]
        order = np.argsort(b[:, 0], kind="stable")
        xs0, xs1 = b[order, 0], b[order, 2]
        reach = np.maximum.accumulate(xs1)[:-1]  # right edge of everything left of a box
        wide = np.nonzero(xs0[1:] - reach >= COL_GAP * self.hm)[0]
        gaps = [(-np.inf, -np.inf)] + [(float(reach[j]), float(xs0[j + 1])) for j in wide]
        gaps.append((np.inf, np.inf))
        found = []
        for (_, before), (gl, gr), (after, _) in zip(gaps, gaps[1:], gaps[2:], strict=False):
            left = b[(b[:, 0] >= before) & (b[:, 2] <= gl)]
            right = b[(b[:, 0] >= gr) & (b[:, 2] <= after)]
            if _prose_sides(left, right, self.hm, self.block_gap):
                found.append((gl, gr))
        return found

    def crossed_gutters(self, idx: list[int]) -> tuple[list[int], list[tuple[float, float]]]:
        """Gutters that a few short boxes (half a column line at most) lie across inside
        the columns (a caption in a picture set between two columns, column text above
        and below it): (those boxes, the gutters the others leave), or ([], []). A heading
        or page number across a gutter above or below the columns is not one: the
        full-width cuts take those."""
        allowed = max(4, int(CROSSERS * len(idx)))
        for gl, gr in _thin_runs(self.box[idx], allowed, COL_GAP * self.hm):
            # across it: by more than the pixel the coverage was rounded to
            crossers = [i for i in idx if self.box[i, 0] < gr - 1 and self.box[i, 2] > gl + 1]
            if not 0 < len(crossers) <= allowed:
                continue
            across = set(crossers)
            rest = [i for i in idx if i not in across]
            c, r = self.box[crossers], self.box[rest]
            inside = c[:, 1].min() > r[:, 1].min() and c[:, 3].max() < r[:, 3].max()
            # a caption's short lines, not a column's own line laid across a white river
            line = float(np.percentile(r[:, 2] - r[:, 0], 90))  # a full line of a column
            short = (c[:, 2] - c[:, 0]).max() <= 0.5 * line
            gutters = self.gutters(rest) if inside and short else []
            if gutters:
                return crossers, gutters
        return [], []

    # -- the result ---------------------------------------------------------------------

    def finish(self, leaves: list[_Leaf]) -> Layout:
        n = len(self.regions)
        order: list[int] = []
        block, paragraph, line = [0] * n, [0] * n, [0] * n
        para = -1
        for b, leaf in enumerate(leaves):
            starts = self.paragraph_starts(leaf.rows)
            for li, row in enumerate(leaf.rows):
                para += int(starts[li])
                for i in row:
                    order.append(i)
                    block[i], paragraph[i], line[i] = b, para, li
        kinds = self.kinds(leaves)
        return Layout(tuple(order), tuple(block), tuple(paragraph), tuple(line), kinds)

    def row_extent(self, row: list[int]) -> np.ndarray:
        b = self.box[row]
        return np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])

    def paragraph_starts(self, rows: list[list[int]]) -> list[bool]:
        ext = np.array([self.row_extent(r) for r in rows])
        left, right = ext[:, 0].min(), ext[:, 2].max()
        inset, short_by = ext[:, 0] - left, right - ext[:, 2]
        indented = inset >= INDENT * self.hm
        centred = np.abs(inset - short_by) <= 0.3 * self.hm
        if indented.sum() >= 3 and (centred[indented]).mean() >= 0.75:
            indented[:] = False  # centred lines, not indents
        short = short_by >= SHORT_LINE * self.hm
        starts = [True]
        for k in range(1, len(rows)):
            gap = ext[k, 1] - ext[:k, 3].max()
            spaced = gap >= self.gap + PARA_EXTRA * self.hm
            indent = indented[k] and (not indented[k - 1] or short[k - 1])
            starts.append(bool(spaced or indent))
        return starts

    def kinds(self, leaves: list[_Leaf]) -> tuple[str, ...]:
        box, hm = self.box, self.hm
        members = [_flat(leaf.rows) for leaf in leaves]
        owner = np.empty(len(self.regions), dtype=int)
        for b, m in enumerate(members):
            owner[m] = b
        kinds = []
        for b, (leaf, m) in enumerate(zip(leaves, members, strict=True)):
            page = leaf.page if leaf.page is not None else self.row_extent(list(range(len(box))))
            text_left, text_top, text_right, text_bottom = page
            span = max(text_bottom - text_top, 1.0)
            x0, y0, x1, y1 = self.row_extent(m)
            others = owner != b
            columns = others & (box[:, 0] < x1) & (box[:, 2] > x0)
            above = columns & (box[:, 1] < y0)
            below = columns & (box[:, 3] > y1)
            gap_above = y0 - box[above, 3].max() if above.any() else np.inf
            gap_below = box[below, 1].min() - y1 if below.any() else np.inf
            size = float(np.median(box[m, 3] - box[m, 1]))
            one_row, few_rows = len(leaf.rows) == 1, len(leaf.rows) <= 3
            several = len(leaves) > 1
            kind = "text"
            top = not above.any() and y0 <= text_top + FURNITURE_SHARE * span
            bottom = not below.any() and y1 >= text_bottom - FURNITURE_SHARE * span
            top = top and gap_below >= self.para_gap
            bottom = bottom and gap_above >= self.para_gap
            if several and one_row and size <= HEADING_SIZE * hm and (top or bottom):
                kind = "header" if top else "footer"
                if len(m) == 1 and x1 - x0 <= 3.5 * (y1 - y0):
                    kind = "page-number"
            if kind == "text" and several and few_rows:
                width = max(text_right - text_left, 1.0)
                centred = abs((x0 + x1) / 2 - (text_left + text_right) / 2) <= 0.08 * width
                set_off = max(gap_above, gap_below) >= self.block_gap
                if size >= HEADING_SIZE * hm or (
                    one_row and centred and x1 - x0 <= 0.7 * width and set_off
                ):
                    kind = "heading"
                else:
                    room = CAPTION_SPACE * hm
                    if (np.isfinite(gap_above) and gap_above >= room) or (
                        np.isfinite(gap_below) and gap_below >= room
                    ):
                        kind = "caption"
            kinds.append(kind)
        return tuple(kinds)


def _prose_sides(left: np.ndarray, right: np.ndarray, hm: float, block_gap: float) -> bool:
    """The columns either side of a gutter hold lines of prose, not a receipt's or a
    table's items beside short values: each holds at least MIN_COLUMN_LINES lines of boxes
    of median width >= MIN_ASPECT heights, one under the other (median gap under a block
    gap). Lines that long on both sides (>= LONG_ASPECT, LONG_COLUMN_LINES of them at
    least) are prose. Otherwise they must look like filled columns: the narrower side's boxes at least half as wide as the
    other's, most lines of the left column running on to near the gutter (within FILL of
    its width) and most of the right column's starting at its left edge (within hm/2),
    where a list's items end wherever their words end and right-aligned amounts start
    wherever they start."""
    lines = [_line_ids(side) for side in (left, right)]
    if min(int(ids.max(initial=-1)) + 1 for ids in lines) < MIN_COLUMN_LINES:
        return False
    starts, ends = [], []
    for side, ids in zip((left, right), lines, strict=True):
        n = int(ids.max()) + 1
        top, bottom = np.full(n, np.inf), np.full(n, -np.inf)
        start, end = np.full(n, np.inf), np.full(n, -np.inf)
        np.minimum.at(top, ids, side[:, 1])
        np.maximum.at(bottom, ids, side[:, 3])
        np.minimum.at(start, ids, side[:, 0])
        np.maximum.at(end, ids, side[:, 2])
        if float(np.median(top[1:] - bottom[:-1])) >= block_gap:
            return False  # scattered short boxes (amounts on a few rows), not a column
        starts.append(start)
        ends.append(end)
    aspects, widths = [], []
    for side in (left, right):
        w, h = side[:, 2] - side[:, 0], np.maximum(side[:, 3] - side[:, 1], 1e-6)
        aspects.append(float(np.median(w / h)))
        widths.append(float(np.median(w)))
    if min(aspects) < MIN_ASPECT:
        return False
    if min(aspects) >= LONG_ASPECT and min(len(s) for s in starts) >= LONG_COLUMN_LINES:
        return True  # long lines both sides: prose, whatever their indents and ends
    narrow = int(np.argmin(widths))
    if widths[narrow] < 0.5 * max(widths):
        return False
    gutter, width = ends[0].max(), ends[0].max() - starts[0].min()
    filled = np.mean(gutter - ends[0] <= FILL * width) >= 0.5
    aligned = np.mean(starts[1] - starts[1].min() <= 0.5 * hm) >= 0.5
    return bool(filled and aligned)


def _thin_runs(boxes: np.ndarray, most: int, width: float) -> list[tuple[int, int]]:
    """x ranges at least `width` wide, inside the boxes' extent, that at most `most`
    boxes cover: where a gutter might run under a few boxes laid across it."""
    x0 = int(np.floor(boxes[:, 0].min()))
    cover = np.zeros(int(np.ceil(boxes[:, 2].max())) - x0 + 2, dtype=int)
    np.add.at(cover, (boxes[:, 0] - x0).astype(int), 1)
    np.add.at(cover, (boxes[:, 2] - x0).astype(int) + 1, -1)
    thin = np.concatenate([[False], np.cumsum(cover)[:-1] <= most, [False]])
    edges = np.flatnonzero(np.diff(thin.astype(int)))
    return [
        (int(a) + x0, int(b) + x0)
        for a, b in zip(edges[::2], edges[1::2], strict=True)
        if b - a >= width and a > 0 and b < len(cover) - 1  # not the part's own margins
    ]


def _line_ids(boxes: np.ndarray) -> np.ndarray:
    """A line number for each box: runs of vertical centres, a new line where the next
    centre is more than half a box height lower."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=int)
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    order = np.argsort(cy, kind="stable")
    half = 0.5 * float(np.median(boxes[:, 3] - boxes[:, 1]))
    ids = np.empty(len(boxes), dtype=int)
    ids[order] = np.concatenate([[0], np.cumsum(np.diff(cy[order]) > half)])
    return ids


def _flat(rows: Sequence[Sequence[int]]) -> list[int]:
    return sorted(i for row in rows for i in row)
