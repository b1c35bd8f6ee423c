"""One page through any engine: detect -> reading order -> crop -> recognize (batched),
and the result rows a page's reading gives (`page_regions`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from models.base import Engine, PageBuffer, Region, TextLine
from models.crops import as_rgb, crop_quad
from models.gutters import inked, split_at_gutters
from models.layout import Layout, layout
from models.orientation import detect_orientation, rotate_back, sideways_share, upright
from models.words import page_words
from ocrq.results import RegionResult


@dataclass(frozen=True)
class PageReading:
    """A page read: (region, text) pairs in reading order, their layout (blocks,
    paragraphs, lines; indexed as `pairs`), and how far the scan was turned (0, 90, 180,
    270: it was read upright, and its boxes are in the scan's pixels)."""

    pairs: list[tuple[Region, TextLine]]
    layout: Layout
    angle: int = 0


def read_page(engine: Engine, image: np.ndarray | PageBuffer) -> list[tuple[Region, TextLine]]:
    """(region, text) pairs in reading order (`read_page_layout`)."""
    return read_page_layout(engine, image).pairs


def read_page_layout(engine: Engine, image: np.ndarray | PageBuffer) -> PageReading:
    """A page through the engine: detect; turn the page upright when its lines say it is
    sideways or upside down (`models.orientation`; engines with an angle classifier, pages
    of at least `ORIENT_MIN_LINES` lines); crop and recognize; order by layout
    (`models.layout`: columns left to right, headings and running heads in their place).
    Regions whose text is empty are dropped.

    All crops of the page go to the recognizer in one call, so it can batch them by width.
    A `PageBuffer` may be narrowed to the part of the page holding text while it is read
    (a detector with `detect_page` does that), and the detector's memory is released
    before the crops are read; regions are in page pixels either way.
    """
    buffered = isinstance(image, PageBuffer)
    page = image if buffered else PageBuffer(image)
    regions = _detect(engine, page, buffered)
    if not regions:
        pairs = _small_image_fallback(engine, page.pixels) if page.origin == (0, 0) else []
        return _ordered(pairs, page.shape)
    judge = engine.classifier is not None and len(regions) >= ORIENT_MIN_LINES
    if judge and sideways_share(regions) > 0.5:  # lines run down the page: turn it
        angle = _orientation(engine, page, regions)
        if angle:
            return _read_turned(engine, page, angle)
    crops = [crop_quad(page.pixels, page.local(r.quad)) for r in regions]
    lines = engine.recognizer.recognize(crops)
    pairs = [(r, t) for r, t in zip(regions, lines, strict=True) if t.text.strip()]
    if judge and _confidence(pairs) < UPRIGHT_CONFIDENCE:  # upside down, or just hard
        angle = _orientation(engine, page, regions)
        if angle:
            return _read_turned(engine, page, angle)
    return _ordered(split_at_gutters(pairs), page.shape)


# Orientation is judged on pages of at least this many text lines: a line image or a
# label reads as it comes (the check would cost a line image a fifth of its time).
ORIENT_MIN_LINES = 3
# A page read with at least this mean confidence (per character) is taken as upright and
# costs no orientation check. Measured on 16 eval pages (receipts, book pages, UNLV,
# eurotext, phototest) read upright and turned 180 degrees: 0.95-0.99 upright, 0.50-0.67
# upside down. The check itself cost receipts 13-122 ms a page (the recognizer settles
# the classifier's unsure votes), 3-20 % of their time.
UPRIGHT_CONFIDENCE = 0.85


def _confidence(pairs: list[tuple[Region, TextLine]]) -> float:
    """Mean confidence of a page's lines, weighted by their characters (1 with none)."""
    chars = sum(len(t.text) for _, t in pairs)
    return sum(t.confidence * len(t.text) for _, t in pairs) / chars if chars else 1.0


def _detect(engine: Engine, page: PageBuffer, buffered: bool) -> list[Region]:
    detect_page = getattr(engine.detector, "detect_page", None)
    if buffered and detect_page is not None:
        regions = detect_page(page)
        # The detector's arena still holds the page's activations; the recognizer would
        # allocate on top of them. Receipts' peaks fell 376-414 -> 365-400 MB (fresh
        # processes, INT8, Xeon), in the same time: a worker empties it after the job anyway.
        release = getattr(engine.detector, "release_memory", None)
        if release is not None:
            release()
        return regions
    return engine.detector.detect(
        page.pixels
    )  # the caller holds the array: narrowing frees nothing


def _orientation(engine: Engine, page: PageBuffer, regions: list[Region]) -> int:
    if engine.classifier is None or len(regions) < ORIENT_MIN_LINES:
        return 0
    return detect_orientation(page, regions, engine.classifier, engine.recognizer).angle


def _read_turned(engine: Engine, page: PageBuffer, angle: int) -> PageReading:
    """Read the scan turned upright, with its boxes mapped back onto the scan."""
    shape = page.pixels.shape[:2]
    ox, oy = page.origin
    turned = upright(page.pixels, angle)
    reading = read_page_layout(replace(engine, classifier=None), turned)
    pairs = []
    for region, line in reading.pairs:
        quad = rotate_back(region.quad, angle, shape)
        moved = tuple((x + ox, y + oy) for x, y in quad)
        pairs.append((Region(quad=moved, score=region.score), _turned_words(line)))
    return PageReading(pairs, reading.layout, angle)


def _turned_words(line: TextLine) -> TextLine:
    """Word spans are measured along the upright crop; on a turned page they no longer
    run along the scan's x axis, so they are dropped (exports then share the line's box)."""
    return replace(line, words=None) if line.words else line


def _ordered(pairs: list[tuple[Region, TextLine]], shape: tuple[int, int]) -> PageReading:
    found = layout([inked(r, t) for r, t in pairs], shape)
    order = list(found.order)
    reordered = [pairs[i] for i in order]
    return PageReading(reordered, _reindexed(found, order), 0)


def _reindexed(found: Layout, order: list[int]) -> Layout:
    """`found` with its per-region fields in the order of `order` (the pairs reordered)."""
    return Layout(
        order=tuple(range(len(order))),
        block=tuple(found.block[i] for i in order),
        paragraph=tuple(found.paragraph[i] for i in order),
        line=tuple(found.line[i] for i in order),
        kinds=found.kinds,
    )


def page_regions(
    page_no: int, pairs: Sequence[tuple[Region, TextLine]], found: Layout | None = None
) -> list[RegionResult]:
    """A page's (region, text) pairs in reading order as result rows, each with its block,
    paragraph and visual line (numbered across the page: regions side by side on one line
    of print share it) from `found` (their layout, indexed as `pairs`; worked out here when
    not given), and its word boxes in page pixels where the recognizer placed the words
    (`TextLine.words`, `models.words`)."""
    if found is None:
        found = _reindexed(layout([r for r, _ in pairs], (0, 0)), list(range(len(pairs))))
    lines = found.page_lines()
    return [
        RegionResult(
            page_no,
            idx,
            region.quad,
            line.text,
            float(line.confidence),
            lines[idx],
            block=found.block[idx],
            paragraph=found.paragraph[idx],
            words=page_words(region.quad, line.words) if line.words else None,
        )
        for idx, (region, line) in enumerate(pairs)
    ]


# A tiny image (a single character or word cut out of a page) can be too small for the
# detector to find anything; read it whole and keep the result only if it is confident.
SMALL_IMAGE_SIDE = 64
FALLBACK_MIN_CONFIDENCE = 0.5


def _small_image_fallback(engine: Engine, image: np.ndarray) -> list[tuple[Region, TextLine]]:
    h, w = image.shape[:2]
    if min(h, w) > SMALL_IMAGE_SIDE or h < 4 or w < 4:
        return []
    (line,) = engine.recognizer.recognize([as_rgb(image)])
    if not line.text.strip() or line.confidence < FALLBACK_MIN_CONFIDENCE:
        return []
    quad = ((0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h)))
    return [(Region(quad=quad, score=0.0), line)]
