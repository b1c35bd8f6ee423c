"""Reading order for detected regions: group boxes into text lines, lines top to bottom,
boxes left to right within a line.

A box joins a line when its vertical extent overlaps the line's by more than half of the
shorter height (a threshold in absolute pixels breaks on large or tiny print) and it does
not sit horizontally on top of a box already in that line (two boxes of one text line are
side by side, never stacked). The line's extent is the mean of its members' extents, not
their union: a union grows with every member and, on multi-column pages, chained boxes of
neighbouring columns into one "line" that swallowed the next line of text (measured on a
UNLV magazine page: 9.7 % CER from scrambled order).
"""

from __future__ import annotations

from collections.abc import Sequence

from models.base import Region


def _x_overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Horizontal overlap as a fraction of the narrower box."""
    inter = min(a[2], b[2]) - max(a[0], b[0])
    return inter / max(min(a[2] - a[0], b[2] - b[0]), 1e-6)


def group_lines(
    regions: Sequence[Region], overlap: float = 0.5, lookback: int = 8
) -> list[list[int]]:
    """Indices of `regions` grouped into lines; lines top to bottom, each left to right."""
    boxes = [r.bbox for r in regions]
    order = sorted(range(len(boxes)), key=lambda i: boxes[i][1] + boxes[i][3])
    lines: list[list[int]] = []
    spans: list[tuple[float, float]] = []  # mean (y0, y1) of each line's members
    for i in order:
        x0, y0, x1, y1 = boxes[i]
        h = max(y1 - y0, 1e-6)
        best, best_ov = -1, 0.0
        # Regions arrive sorted by vertical centre: only recent lines can still overlap.
        for li in range(len(lines) - 1, max(-1, len(lines) - 1 - lookback), -1):
            ly0, ly1 = spans[li]
            ov = (min(y1, ly1) - max(y0, ly0)) / min(h, max(ly1 - ly0, 1e-6))
            if ov > best_ov and all(_x_overlap(boxes[i], boxes[j]) <= 0.5 for j in lines[li]):
                best, best_ov = li, ov
        if best >= 0 and best_ov > overlap:
            members = lines[best]
            n = len(members)
            ly0, ly1 = spans[best]
            spans[best] = ((ly0 * n + y0) / (n + 1), (ly1 * n + y1) / (n + 1))
            members.append(i)
        else:
            lines.append([i])
            spans.append((y0, y1))
    keyed = sorted(range(len(lines)), key=lambda li: spans[li][0])
    return [sorted(lines[li], key=lambda i: boxes[i][0]) for li in keyed]


def reading_order(regions: Sequence[Region], overlap: float = 0.5) -> list[int]:
    """Indices of `regions` in reading order (line by line, left to right)."""
    return [i for line in group_lines(regions, overlap) for i in line]
