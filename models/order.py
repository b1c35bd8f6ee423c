"""Reading order for detected regions: group boxes into text lines, lines top to bottom,
boxes left to right within a line.

Two boxes share a line when their vertical extents overlap by more than half of the
shorter box's height (a threshold on absolute pixels breaks on large or tiny print).
"""

from __future__ import annotations

from collections.abc import Sequence

from models.base import Region


def _yspan(region: Region) -> tuple[float, float]:
    _, y0, _, y1 = region.bbox
    return y0, y1


def group_lines(regions: Sequence[Region], overlap: float = 0.5) -> list[list[int]]:
    """Indices of `regions` grouped into lines; lines top to bottom, each left to right."""
    order = sorted(range(len(regions)), key=lambda i: _yspan(regions[i])[0] + _yspan(regions[i])[1])
    lines: list[list[int]] = []
    spans: list[tuple[float, float]] = []  # running y-extent of each open line
    for i in order:
        y0, y1 = _yspan(regions[i])
        h = max(y1 - y0, 1e-6)
        best, best_ov = -1, 0.0
        # Only the last few lines can still overlap: regions arrive sorted by centre.
        for li in range(len(lines) - 1, max(-1, len(lines) - 4), -1):
            ly0, ly1 = spans[li]
            lh = max(ly1 - ly0, 1e-6)
            ov = (min(y1, ly1) - max(y0, ly0)) / min(h, lh)
            if ov > best_ov:
                best, best_ov = li, ov
        if best >= 0 and best_ov > overlap:
            lines[best].append(i)
            ly0, ly1 = spans[best]
            spans[best] = (min(ly0, y0), max(ly1, y1))
        else:
            lines.append([i])
            spans.append((y0, y1))
    keyed = sorted(range(len(lines)), key=lambda li: min(_yspan(regions[i])[0] for i in lines[li]))
    return [sorted(lines[li], key=lambda i: regions[i].bbox[0]) for li in keyed]


def reading_order(regions: Sequence[Region], overlap: float = 0.5) -> list[int]:
    """Indices of `regions` in reading order (line by line, left to right)."""
    return [i for line in group_lines(regions, overlap) for i in line]
