"""The one small interface every engine backend implements.

Images are numpy uint8 arrays, HxWx3 RGB or HxW gray (`ocrq.images` keeps gray and
bilevel scans in one channel); crops are always HxWx3 RGB (`models.crops`), so a
recognizer sees one kind. A page flows
image -> detect() -> regions -> crops -> recognize() -> lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

Quad = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class Region:
    """A detected text region: a quadrilateral, clockwise from top-left, in page pixels."""

    quad: Quad
    score: float

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """Axis-aligned (x0, y0, x1, y1) around the quad."""
        xs = [p[0] for p in self.quad]
        ys = [p[1] for p in self.quad]
        return (min(xs), min(ys), max(xs), max(ys))


@dataclass(frozen=True)
class TextLine:
    """What a recognizer read from one crop."""

    text: str
    confidence: float  # 0..1, mean per-character/token probability
    # The words of `text` (split on spaces) where the recognizer placed them: (word, x0,
    # x1, confidence) in the crop's columns, as cut from the page (before any resize);
    # None where it does not say (`models.page.page_regions` then leaves the split to
    # `ocrq.results.words_of`).
    words: tuple[tuple[str, float, float, float], ...] | None = None


class PageBuffer:
    """A page's pixels, handed to a reader that may narrow them to the part holding its
    text (`narrow`), so the rest of a large scan is freed while the page is read. Whoever
    makes one must keep no other reference to the array, or nothing is freed."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        self.shape: tuple[int, int] = pixels.shape[:2]  # (h, w) of the whole page
        self.origin: tuple[int, int] = (0, 0)  # page (x, y) of pixels[0, 0]

    def narrow(self, x0: int, y0: int, x1: int, y1: int) -> None:
        """Keep a copy of page pixels [y0:y1, x0:x1] (page coordinates, inside what is
        kept now) and drop the rest."""
        ox, oy = self.origin
        self.pixels = np.ascontiguousarray(self.pixels[y0 - oy : y1 - oy, x0 - ox : x1 - ox])
        self.origin = (x0, y0)

    def local(self, quad: Quad) -> Quad:
        """A quad in page pixels as a quad in `pixels`."""
        ox, oy = self.origin
        return tuple((x - ox, y - oy) for x, y in quad)  # type: ignore[return-value]


class Detector(Protocol):
    """Regions in `image`'s pixels. A detector may also offer `detect_page(page:
    PageBuffer)`, regions in page pixels, narrowing `page` as it reads it
    (`models.page.read_page` uses it for handed-over pages)."""

    def detect(self, image: np.ndarray) -> list[Region]: ...


class Recognizer(Protocol):
    def recognize(self, crops: Sequence[np.ndarray]) -> list[TextLine]: ...


@dataclass
class Engine:
    """A detector and a recognizer, loaded once per process (warm).

    `provenance` says exactly which model files ran (ids, sha256, precision);
    it is stored with every result.
    """

    name: str
    detector: Detector
    recognizer: Recognizer
    provenance: dict[str, Any] = field(default_factory=dict)
    # the 0/180 line classifier that finds a page's orientation (`models.orientation`);
    # None: pages are read as they come
    classifier: Any = None

    def release_memory(self) -> None:
        """Free what the models keep between runs (an ONNX Runtime arena), where they
        keep anything: a part with a `release_memory()` method is asked to."""
        for part in (self.detector, self.recognizer):
            release = getattr(part, "release_memory", None)
            if release is not None:
                release()
