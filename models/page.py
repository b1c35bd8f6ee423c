"""One page through any engine: detect -> reading order -> crop -> recognize (batched),
and the result rows a page's reading gives (`page_regions`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.base import Engine, PageBuffer, Region, TextLine
from models.crops import as_rgb, crop_quad
from models.order import group_lines, reading_order
from models.words import page_words
from ocrq.results import RegionResult


def read_page(engine: Engine, image: np.ndarray | PageBuffer) -> list[tuple[Region, TextLine]]:
    """(region, text) pairs in reading order; regions whose text is empty are dropped.

    All crops of the page go to the recognizer in one call, so it can batch them by width.
    A `PageBuffer` may be narrowed to the part of the page holding text while it is read
    (a detector with `detect_page` does that), and the detector's memory is released
    before the crops are read; regions are in page pixels either way.
    """
    buffered = isinstance(image, PageBuffer)
    page = image if buffered else PageBuffer(image)
    detect_page = getattr(engine.detector, "detect_page", None)
    if buffered and detect_page is not None:
        regions = detect_page(page)
        # The detector's arena still holds the page's activations; the recognizer would
        # allocate on top of them. Receipts' peaks fell 376-414 -> 365-400 MB (fresh
        # processes, INT8, Xeon), in the same time: a worker empties it after the job anyway.
        release = getattr(engine.detector, "release_memory", None)
        if release is not None:
            release()
    else:  # the caller holds the array: a narrowed copy would free nothing
        regions = engine.detector.detect(page.pixels)
    if not regions:
        return _small_image_fallback(engine, page.pixels) if page.origin == (0, 0) else []
    ordered = [regions[i] for i in reading_order(regions)]
    crops = [crop_quad(page.pixels, page.local(r.quad)) for r in ordered]
    lines = engine.recognizer.recognize(crops)
    return [(r, t) for r, t in zip(ordered, lines, strict=True) if t.text.strip()]


def page_regions(page_no: int, pairs: Sequence[tuple[Region, TextLine]]) -> list[RegionResult]:
    """A page's (region, text) pairs in reading order as result rows, each with its visual
    line (regions side by side on one line of print share it) and its word boxes in page
    pixels where the recognizer placed the words (`TextLine.words`, `models.words`)."""
    line_of = {
        i: line_no
        for line_no, members in enumerate(group_lines([r for r, _ in pairs]))
        for i in members
    }
    return [
        RegionResult(
            page_no,
            idx,
            region.quad,
            line.text,
            float(line.confidence),
            line_of[idx],
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
