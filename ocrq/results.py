"""What a page's OCR gives: regions (a quad, its text, how sure) in reading order, and
the page text made from them. The worker writes these, the exporters and the bench read
them: one definition of a page's text for all of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from ocrq.scoring import dehyphenate


@dataclass(frozen=True)
class RegionResult:
    """One recognized region, ready to store."""

    page: int  # page of the job's file, from 0
    idx: int  # reading order within the page
    quad: Sequence[Sequence[float]]  # [[x, y] * 4], clockwise from top-left, page pixels
    text: str
    confidence: float
    line: int = 0  # visual line within the page

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RegionResult:
        """A stored region row (a mapping with at least these fields) as a result."""
        return cls(**{f.name: row[f.name] for f in fields(cls) if f.name in row})


def page_text(regions: Iterable[RegionResult], *, join_hyphens: bool = False) -> str:
    """Regions in reading order as text: those on one visual line joined by a space, lines
    by a newline, pages separated by a blank line."""
    lines: list[str] = []
    current: tuple[int, int] | None = None
    for region in regions:
        key = (region.page, region.line)
        text = region.text.strip()
        if current is not None and key == current:
            lines[-1] += " " + text
            continue
        if current is not None and key[0] != current[0]:
            lines.append("")
        lines.append(text)
        current = key
    text = "\n".join(lines)
    return dehyphenate(text) if join_hyphens else text
