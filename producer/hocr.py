"""hOCR 1.2 export: a document's pages as one XHTML file, written page by page.

Structure of each page (the same grouping as the ALTO and searchable-PDF exporters, made
by `page_layout`):

    div.ocr_page   bbox, ppageno (the page of the document, from 0), scan_res
      div.ocr_carea   a block
        p.ocr_par       a paragraph
          span.ocr_line   bbox
            span.ocrx_word  bbox, x_wconf (0-100)

Grouping. `PageResult.blocks` and `.paragraphs` give a block and a paragraph id per region;
where either is None the page is one block, and a block one paragraph. A line is a run of
regions in reading order with the same visual `line` (regions of one visual line are one
hOCR/ALTO line; a region never spans lines). Runs are consecutive: when an id changes and
comes back later, that is a new element, so the output keeps the reading order. A new
block also starts a new paragraph and line, a new paragraph a new line.

Words are `PageResult.words` when the engine gave them, else `words_of(region)` (the
region's axis-aligned box shared by character count). Boxes are whole pixels, clipped to
the page, rounded outwards. Regions without text are left out; a page without text is an
empty `ocr_page`. Characters XML 1.0 cannot hold (C0 controls but tab/newline/CR, lone
surrogates, U+FFFE/U+FFFF) are dropped from the text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO
from xml.sax.saxutils import escape, quoteattr

from ocrq.results import PageResult, Word, words_of

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in whole page pixels, x1 > x0, y1 > y0

# characters XML 1.0 cannot hold (tab, LF and CR are allowed but end no word of ours)
_NOT_XML = re.compile("[\x00-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """`text` without the characters XML 1.0 cannot hold, and without surrounding space."""
    return _NOT_XML.sub("", text).strip()


def clamp_confidence(value: float) -> float:
    """A confidence in 0..1 (NaN counts as 0)."""
    value = float(value)
    return 0.0 if math.isnan(value) else min(1.0, max(0.0, value))


@dataclass
class LayoutWord:
    text: str
    box: Box
    confidence: float  # 0..1


@dataclass
class LayoutLine:
    words: list[LayoutWord] = field(default_factory=list)

    @property
    def box(self) -> Box:
        return union(w.box for w in self.words)


@dataclass
class LayoutParagraph:
    lines: list[LayoutLine] = field(default_factory=list)

    @property
    def box(self) -> Box:
        return union(line.box for line in self.lines)


@dataclass
class LayoutBlock:
    paragraphs: list[LayoutParagraph] = field(default_factory=list)

    @property
    def box(self) -> Box:
        return union(p.box for p in self.paragraphs)


def union(boxes: Iterable[Box]) -> Box:
    x0s, y0s, x1s, y1s = zip(*boxes, strict=True)
    return min(x0s), min(y0s), max(x1s), max(y1s)


def pixel_box(box: tuple[float, float, float, float], width: int, height: int) -> Box:
    """A float box as whole pixels inside the page, rounded outwards, at least 1 x 1."""
    x0, y0, x1, y1 = box
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    ix0 = min(max(0, math.floor(x0)), max(0, width - 1))
    iy0 = min(max(0, math.floor(y0)), max(0, height - 1))
    ix1 = max(ix0 + 1, min(width, math.ceil(x1)))
    iy1 = max(iy0 + 1, min(height, math.ceil(y1)))
    return ix0, iy0, ix1, iy1


def region_words(page: PageResult, index: int) -> list[Word]:
    """The words of region `index`: the engine's when given, else `words_of`."""
    if page.words is not None:
        return list(page.words[index])
    return words_of(page.regions[index])


def page_layout(page: PageResult) -> list[LayoutBlock]:
    """The page's words grouped into blocks, paragraphs and lines (see the module doc)."""
    blocks: list[LayoutBlock] = []
    previous: tuple[int, int, int] | None = None
    for i, region in enumerate(page.regions):
        words = []
        for word in region_words(page, i):
            text = xml_text(word.text)
            if text:
                box = pixel_box(word.box, page.width, page.height)
                words.append(LayoutWord(text, box, clamp_confidence(word.confidence)))
        if not words:
            continue
        block = page.blocks[i] if page.blocks is not None else 0
        paragraph = page.paragraphs[i] if page.paragraphs is not None else 0
        key = (block, paragraph, region.line)
        if previous is None or key[0] != previous[0]:
            blocks.append(LayoutBlock([LayoutParagraph([LayoutLine()])]))
        elif key[1] != previous[1]:
            blocks[-1].paragraphs.append(LayoutParagraph([LayoutLine()]))
        elif key[2] != previous[2]:
            blocks[-1].paragraphs[-1].lines.append(LayoutLine())
        blocks[-1].paragraphs[-1].lines[-1].words.extend(words)
        previous = key
    return blocks


_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
    "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
 <head>
  <title>{title}</title>
  <meta http-equiv="Content-Type" content="text/html; charset=utf-8" />
  <meta name="ocr-system" content="ocrq" />
  <meta name="ocr-capabilities" content="{capabilities}" />
 </head>
 <body>
"""
_TAIL = """ </body>
</html>
"""
CAPABILITIES = "ocr_page ocr_carea ocr_par ocr_line ocrx_word ocrp_wconf"


def _bbox(box: Box) -> str:
    return "bbox {} {} {} {}".format(*box)


def _dpi(dpi: float) -> str:
    return str(int(dpi)) if float(dpi).is_integer() else f"{dpi:.2f}"


def hocr_page(page: PageResult, number: int) -> str:
    """One `ocr_page` div; `number` (from 1) makes its ids unique in the document."""
    n = number
    title = f"bbox 0 0 {page.width} {page.height}; ppageno {page.page}"
    if page.dpi and page.dpi > 0:
        title += f"; scan_res {_dpi(page.dpi)} {_dpi(page.dpi)}"
    out = [f'  <div class="ocr_page" id="page_{n}" title={quoteattr(title)}>\n']
    counts = {"block": 0, "par": 0, "line": 0, "word": 0}

    def next_id(kind: str) -> str:
        counts[kind] += 1
        return f"{kind}_{n}_{counts[kind]}"

    for block in page_layout(page):
        bid = next_id("block")
        out.append(f'   <div class="ocr_carea" id="{bid}" title="{_bbox(block.box)}">\n')
        for paragraph in block.paragraphs:
            pid = next_id("par")
            out.append(f'    <p class="ocr_par" id="{pid}" title="{_bbox(paragraph.box)}">\n')
            for line in paragraph.lines:
                lid = next_id("line")
                out.append(f'     <span class="ocr_line" id="{lid}" title="{_bbox(line.box)}">')
                spans = []
                for word in line.words:
                    wid = next_id("word")
                    wconf = round(word.confidence * 100)
                    title = f"{_bbox(word.box)}; x_wconf {wconf}"
                    spans.append(
                        f'<span class="ocrx_word" id="{wid}" title="{title}">'
                        f"{escape(word.text)}</span>"
                    )
                out.append(" ".join(spans))
                out.append("</span>\n")
            out.append("    </p>\n")
        out.append("   </div>\n")
    out.append("  </div>\n")
    return "".join(out)


def write_hocr(pages: Iterable[PageResult], out: IO[str], title: str) -> None:
    """Write `pages` (any iterable: read and written one page at a time) as one hOCR 1.2
    document to the text stream `out` (which should encode UTF-8)."""
    out.write(_HEAD.format(title=escape(xml_text(title)), capabilities=CAPABILITIES))
    for number, page in enumerate(pages, 1):
        out.write(hocr_page(page, number))
    out.write(_TAIL)
