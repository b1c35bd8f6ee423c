"""Page orientation (0, 90, 180 or 270 degrees) from the text lines the detector found on
the page as scanned, and the maps between the scan and the page turned upright.

How (measured in scripts/eval_layout.py and on the eval pages turned every way):
1. Geometry decides sideways or not: a text line's box is long along the line. Line-like
   boxes (long side >= 2 x short side) whose long side runs vertically, weighted by length,
   in the majority => the page lies on its side (90/270), else 0/180. The detector finds
   the lines of a sideways page as tall boxes just as well (94-100 % of boxes tall on
   every eval page turned 90/270, <= 15 % on the upright ones). A page skewed by a few
   degrees keeps its lines horizontal: no rotation.
2. Which way up: the PP-OCR 0/180 line classifier (ch_ppocr_mobile_v2.0_cls, shipped in
   the rapidocr wheel) votes on pieces of the longest lines. It sees 48 x 192 pixels, so a
   whole line squeezed into that reads poorly (85 / 88 right on the eval pages turned 4
   ways); cut into pieces of the line's own proportions (4 heights wide, up to 3 per line,
   8 lines) it was right on 87 / 88 in ~15 ms. When the pieces' mean upside-down
   probability is undecided (between UNSURE_LOW and UNSURE_HIGH) and a recognizer is
   given, the recognizer reads the 4 longest lines both ways up and the more confident
   reading wins (88 / 88 right alone, but 100-300 ms a page every time).

`detect_orientation` takes the regions already detected on the scan, so an upright page
costs only the classifier run; a turned page is then turned upright (`upright`) and read
again, and `rotate_back` maps what was found there onto the scan (the page's angle says
which way its text runs there).

Angles: `angle` is how far the scan is turned counter-clockwise from upright, i.e.
`image == np.rot90(upright_image, angle // 90)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.base import PageBuffer, Quad, Recognizer, Region
from models.crops import crop_quad
from models.ppocr.classifier import cls_batch

ANGLES = (0, 90, 180, 270)
LINE_ASPECT = 2.0  # a box this much longer than high is a text line (it has a direction)
CLS_LINES = 8  # longest lines the classifier looks at
CLS_PIECES = 3  # pieces per line
PIECE_ASPECT = 4  # a piece is this many line heights wide (the classifier's 192 / 48)
UNSURE_LOW, UNSURE_HIGH = 0.2, 0.8  # mean upside-down probability the recognizer settles
REC_LINES = 4  # lines the recognizer reads both ways up when asked


@dataclass(frozen=True)
class Orientation:
    """`angle`: the scan is the upright page turned this far counter-clockwise (0, 90, 180,
    270); `confidence` 0..1; `method`: what decided which way up ("none" when the page
    has no text line to judge by, "classifier", "recognizer"); `sideways`: the share of
    line length that ran vertically."""

    angle: int
    confidence: float
    method: str
    sideways: float


class AngleClassifier:
    """The PP-OCR 0/180 line classifier's ONNX session: upside-down probability per crop."""

    def __init__(self, session, batch_size: int = 32) -> None:  # type: ignore[no-untyped-def]
        self.session = session
        self.batch_size = batch_size
        self._input = session.get_inputs()[0].name

    def upside_down(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        probs = [
            self.session.run(None, {self._input: cls_batch(crops[s : s + self.batch_size])})[0]
            for s in range(0, len(crops), self.batch_size)
        ]
        return np.concatenate(probs)[:, 1] if probs else np.zeros(0)


def detect_orientation(
    image: np.ndarray | PageBuffer,
    regions: Sequence[Region],
    classifier: AngleClassifier,
    recognizer: Recognizer | None = None,
) -> Orientation:
    """Which way the scan `image` is turned, judged from `regions`, the detector's boxes
    on it (page pixels; a `PageBuffer` may be narrowed). `recognizer` (optional) settles
    pages the classifier is unsure of."""
    line, long_side, short_side, sideways = _line_geometry(regions)
    if not line.any():
        return Orientation(0, 0.0, "none", 0.0)
    # crop_quad turns a tall crop counter-clockwise: a page turned 90 gives upside-down
    # crops, one turned 270 upright ones, as 180 and 0 do for wide crops.
    turns = (270, 90) if sideways > 0.5 else (0, 180)  # (crops upright, crops upside down)
    picked = [regions[i] for i in _longest(line, long_side / np.maximum(short_side, 1e-6))]
    crops = [_crop(image, r.quad) for r in picked]
    crops = [c for c in crops if c.shape[0] >= 4 and c.shape[1] >= 4]
    if not crops:
        return Orientation(0, 0.0, "none", sideways)
    pieces = [p for c in crops for p in _pieces(c)]
    p = float(classifier.upside_down(pieces).mean())
    flipped, confidence, method = p > 0.5, abs(2 * p - 1), "classifier"
    if recognizer is not None and UNSURE_LOW < p < UNSURE_HIGH:
        few = crops[:REC_LINES]
        as_is = recognizer.recognize(few)
        turned = recognizer.recognize([np.ascontiguousarray(c[::-1, ::-1]) for c in few])
        a = float(np.mean([t.confidence for t in as_is]))
        b = float(np.mean([t.confidence for t in turned]))
        flipped, confidence, method = b > a, abs(b - a), "recognizer"
    return Orientation(turns[int(flipped)], confidence, method, sideways)


def sideways_share(regions: Sequence[Region]) -> float:
    """The share of the text lines' length that runs vertically (> 0.5: the page lies on
    its side): geometry alone, no model run."""
    return _line_geometry(regions)[3]


def _line_geometry(
    regions: Sequence[Region],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Which boxes are text lines (long along one side), their long and short sides, and
    the share of line length running vertically."""
    quads = np.array([r.quad for r in regions], dtype=np.float64).reshape(-1, 4, 2)
    across = np.linalg.norm(quads[:, 1] - quads[:, 0], axis=1)  # along the quad's top edge
    down = np.linalg.norm(quads[:, 3] - quads[:, 0], axis=1)
    long_side, short_side = np.maximum(across, down), np.minimum(across, down)
    line = long_side >= LINE_ASPECT * np.maximum(short_side, 1e-6)
    if not line.any():
        return line, long_side, short_side, 0.0
    edge = np.where((across >= down)[:, None], quads[:, 1] - quads[:, 0], quads[:, 3] - quads[:, 0])
    vertical = np.abs(edge[:, 1]) > np.abs(edge[:, 0])
    return (
        line,
        long_side,
        short_side,
        float(long_side[line & vertical].sum() / long_side[line].sum()),
    )


def _longest(line: np.ndarray, aspect: np.ndarray) -> list[int]:
    """Indices of the CLS_LINES line-like boxes holding the most characters (longest
    relative to their height)."""
    idx = np.nonzero(line)[0]
    return [int(i) for i in idx[np.argsort(-aspect[idx], kind="stable")][:CLS_LINES]]


def _crop(image: np.ndarray | PageBuffer, quad: Quad) -> np.ndarray:
    if isinstance(image, PageBuffer):
        return crop_quad(image.pixels, image.local(quad))
    return crop_quad(image, quad)


def _pieces(crop: np.ndarray) -> list[np.ndarray]:
    """Up to CLS_PIECES pieces of a line crop, each PIECE_ASPECT heights wide (the last
    may be narrower, but at least half that)."""
    h, w = crop.shape[:2]
    step = PIECE_ASPECT * h
    starts = range(0, max(w - step // 2, 1), step)
    return [crop[:, x : x + step] for x in starts][:CLS_PIECES]


def upright(image: np.ndarray, angle: int) -> np.ndarray:
    """The scan turned back upright (a view: no copy)."""
    return np.rot90(image, -(angle // 90) % 4)


def rotate_back(quad: Quad, angle: int, shape: tuple[int, int]) -> Quad:
    """A quad found on `upright(image, angle)` in the pixels of `image`, whose (height,
    width) is `shape`: clockwise from its top-left corner in `image`, as the detector
    gives quads (so `Region.bbox` and `crop_quad` treat it like any other; the crop is
    the text as it lies on the scan, turned by `angle`)."""
    k = (angle // 90) % 4
    h, w = shape
    width, height = (h, w) if k % 2 else (w, h)  # the upright image's width and height
    pts = [(float(x), float(y)) for x, y in quad]
    for _ in range(k):  # np.rot90 by one step: (x, y) -> (y, width - x)
        pts = [(y, width - x) for x, y in pts]
        width, height = height, width
    # each quarter turn counter-clockwise brings the next corner to the top-left
    return tuple(pts[k:] + pts[:k])  # type: ignore[return-value]
