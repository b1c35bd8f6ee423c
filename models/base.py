"""The one small interface every engine backend implements.

Images and crops are numpy arrays, HxWx3 uint8, RGB. A page flows
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


class Detector(Protocol):
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

    def release_memory(self) -> None:
        """Free what the models keep between runs (an ONNX Runtime arena), where they
        keep anything: a part with a `release_memory()` method is asked to."""
        for part in (self.detector, self.recognizer):
            release = getattr(part, "release_memory", None)
            if release is not None:
                release()
