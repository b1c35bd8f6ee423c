"""ALTO v4 export: a document's pages as one ALTO file, written page by page.

    alto (ns-v4, SCHEMAVERSION 4.2)
      Description: MeasurementUnit pixel, sourceImageInformation/fileName,
                   OCRProcessing (software ocrq and its version)
      Layout
        Page            ID, PHYSICAL_IMG_NR (page of the document, from 1), WIDTH, HEIGHT
          PrintSpace    the whole page
            ComposedBlock   a block (TYPE "text")
              TextBlock       a paragraph
                TextLine        HPOS VPOS WIDTH HEIGHT
                  String          CONTENT HPOS VPOS WIDTH HEIGHT WC (0-1)
                  SP              between the strings of a line

ALTO has no paragraph level between block and line, so a block is a ComposedBlock and
each of its paragraphs a TextBlock (Tesseract's ALTO has the same shape). Blocks,
paragraphs, lines and words are grouped as in `producer.hocr.page_layout` (see there).
Coordinates are whole pixels of the page image. Valid against the ALTO 4.2 schema
(tests/test_hocr_alto.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO
from xml.sax.saxutils import escape, quoteattr

from ocrq import __version__
from ocrq.results import PageResult
from producer.hocr import Box, page_layout, xml_text

ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
ALTO_SCHEMA = "http://www.loc.gov/standards/alto/v4/alto-4-2.xsd"

_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="{ns}" xmlns:xlink="http://www.w3.org/1999/xlink" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" \
xsi:schemaLocation="{ns} {schema}" SCHEMAVERSION="4.2">
 <Description>
  <MeasurementUnit>pixel</MeasurementUnit>
  <sourceImageInformation>
   <fileName>{file_name}</fileName>
  </sourceImageInformation>
  <OCRProcessing ID="OCR_0">
   <ocrProcessingStep>
    <processingSoftware>
     <softwareName>ocrq</softwareName>
     <softwareVersion>{version}</softwareVersion>
    </processingSoftware>
   </ocrProcessingStep>
  </OCRProcessing>
 </Description>
 <Layout>
"""
_TAIL = """ </Layout>
</alto>
"""


def _position(box: Box) -> str:
    x0, y0, x1, y1 = box
    return f'HPOS="{x0}" VPOS="{y0}" WIDTH="{x1 - x0}" HEIGHT="{y1 - y0}"'


def _wc(confidence: float) -> str:
    return f"{confidence:.3f}".rstrip("0").rstrip(".") or "0"


def alto_page(page: PageResult, number: int) -> str:
    """One `Page` element; `number` (from 1) makes its ids unique in the document."""
    n = number
    out = [
        f'  <Page ID="page_{n}" PHYSICAL_IMG_NR="{page.page + 1}" '
        f'WIDTH="{page.width}" HEIGHT="{page.height}">\n',
        f"   <PrintSpace {_position((0, 0, page.width, page.height))}>\n",
    ]
    counts = {"cblock": 0, "block": 0, "line": 0, "string": 0}

    def next_id(kind: str) -> str:
        counts[kind] += 1
        return f"{kind}_{n}_{counts[kind]}"

    for block in page_layout(page):
        cid = next_id("cblock")
        out.append(f'    <ComposedBlock ID="{cid}" TYPE="text" {_position(block.box)}>\n')
        for paragraph in block.paragraphs:
            bid = next_id("block")
            out.append(f'     <TextBlock ID="{bid}" {_position(paragraph.box)}>\n')
            for line in paragraph.lines:
                lid = next_id("line")
                out.append(f'      <TextLine ID="{lid}" {_position(line.box)}>\n')
                previous: Box | None = None
                for word in line.words:
                    if previous is not None:
                        gap = max(0, word.box[0] - previous[2])
                        out.append(
                            f'       <SP WIDTH="{gap}" HPOS="{previous[2]}" VPOS="{line.box[1]}"/>\n'
                        )
                    sid = next_id("string")
                    out.append(
                        f'       <String ID="{sid}" CONTENT={quoteattr(word.text)} '
                        f'{_position(word.box)} WC="{_wc(word.confidence)}"/>\n'
                    )
                    previous = word.box
                out.append("      </TextLine>\n")
            out.append("     </TextBlock>\n")
        out.append("    </ComposedBlock>\n")
    out.append("   </PrintSpace>\n  </Page>\n")
    return "".join(out)


def write_alto(pages: Iterable[PageResult], out: IO[str], source_name: str) -> None:
    """Write `pages` (any iterable: read and written one page at a time) as one ALTO v4
    document to the text stream `out` (which should encode UTF-8); `source_name` is the
    source image or document's file name (sourceImageInformation/fileName)."""
    out.write(
        _HEAD.format(
            ns=ALTO_NS,
            schema=ALTO_SCHEMA,
            file_name=escape(xml_text(source_name)),
            version=escape(__version__),
        )
    )
    for number, page in enumerate(pages, 1):
        out.write(alto_page(page, number))
    out.write(_TAIL)
