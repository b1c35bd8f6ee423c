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
    block: int = 0  # layout block within the page (columns, paragraphs of a letter...)
    paragraph: int = 0  # paragraph within the page
    # the engine's word boxes, [[text, x0, y0, x1, y1, confidence], ...] in page pixels;
    # None where the engine gives none (`words_of` splits the region instead)
    words: Sequence[Sequence[Any]] | None = None

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """Axis-aligned (x0, y0, x1, y1) around the quad."""
        xs = [float(p[0]) for p in self.quad]
        ys = [float(p[1]) for p in self.quad]
        return min(xs), min(ys), max(xs), max(ys)

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


@dataclass(frozen=True)
class Word:
    """A word of a region: its text, box (x0, y0, x1, y1 in page pixels) and confidence."""

    text: str
    box: tuple[float, float, float, float]
    confidence: float


@dataclass(frozen=True)
class PageResult:
    """One page of a document as the exporters (txt, hOCR, ALTO, searchable PDF) take it.

    Regions are in reading order with their quads in the page image's pixels; `dpi` maps
    pixels to the page's physical size (a PDF page: its size in points is
    `width * 72 / dpi` by `height * 72 / dpi`). `source` says where the text came from:
    "ocr" or "pdf-text" (a born-digital page's own text layer, kept)."""

    page: int  # page of the document, from 0
    width: int  # page image pixels
    height: int
    dpi: float
    regions: Sequence[RegionResult]
    source: str = "ocr"
    # block and paragraph of each region (same order as `regions`), when layout found them;
    # None: the page is one block of one paragraph
    blocks: Sequence[int] | None = None
    paragraphs: Sequence[int] | None = None
    # words of each region (same order as `regions`); None: split by `words_of`
    words: Sequence[Sequence[Word]] | None = None
    # where pixel (0, 0) lies on a PDF page, in points from its displayed top-left corner
    # ((0, 0) but for a scan embedded on part of its page)
    origin_pt: tuple[float, float] = (0.0, 0.0)


def words_of(region: RegionResult) -> list[Word]:
    """A region's words: the engine's own word boxes where it gave them, else its text
    split on spaces, the box (axis-aligned around the quad) shared by character count,
    spaces included."""
    if region.words:
        return [Word(str(w[0]), (w[1], w[2], w[3], w[4]), float(w[5])) for w in region.words]
    x0, y0, x1, y1 = region.bbox
    text = region.text.strip()
    if not text:
        return []
    step = (x1 - x0) / len(text)
    words, start = [], 0
    for token in text.split(" "):
        if token:
            box = (x0 + start * step, y0, x0 + (start + len(token)) * step, y1)
            words.append(Word(token, box, region.confidence))
        start += len(token) + 1
    return words
