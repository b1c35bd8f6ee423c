"""models.orientation: which way a scan is turned, and mapping boxes back onto it.

Geometry and the vote are pinned with a fake classifier; rendered pages turned by
np.rot90 (and skewed a few degrees) go through the real PP-OCR engine and classifier.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.base import Region, TextLine
from models.orientation import Orientation, detect_orientation, rotate_back, upright
from models.page import read_page
from models.ppocr.det_post import order_clockwise
from ocrq.scoring import cer
from tests.fixtures_text import SAMPLE_LINES, render_line, render_page


def box(x0, y0, x1, y1):
    return Region(quad=((x0, y0), (x1, y0), (x1, y1), (x0, y1)), score=0.9)


@pytest.mark.parametrize("angle", [0, 90, 180, 270])
def test_rotate_back_maps_every_pixel_of_the_upright_page_onto_the_scan(angle):
    rng = np.random.default_rng(angle)
    page = rng.integers(0, 255, (37, 61), dtype=np.uint8)
    scan = np.rot90(page, angle // 90)
    assert np.array_equal(upright(scan, angle), page)
    for _ in range(50):
        y, x = int(rng.integers(0, 37)), int(rng.integers(0, 61))
        centre = (x + 0.5, y + 0.5)
        (sx, sy), *_ = rotate_back((centre,) * 4, angle, scan.shape)
        assert scan[int(sy), int(sx)] == page[y, x]


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_rotate_back_gives_the_detectors_corner_order_on_the_lines_pixels(angle):
    line = render_line("Upright crop", height=40)
    page = np.full((200, 500, 3), 255, np.uint8)
    page[50:90, 60 : 60 + line.shape[1]] = line
    quad = ((60.0, 50.0), (60.0 + line.shape[1], 50.0), (60.0 + line.shape[1], 90.0), (60.0, 90.0))
    scan = np.ascontiguousarray(np.rot90(page, angle // 90))
    mapped = rotate_back(quad, angle, scan.shape[:2])
    assert mapped == tuple(map(tuple, order_clockwise(np.array(mapped)).tolist()))
    x0, y0, x1, y1 = (int(v) for v in Region(mapped, 1.0).bbox)
    assert np.array_equal(scan[y0:y1, x0:x1], np.rot90(line, angle // 90))


class FakeClassifier:
    def __init__(self, p):
        self.p = p
        self.seen = []

    def upside_down(self, crops):
        self.seen.extend(crops)
        return np.full(len(crops), self.p)


class InkOnTheRight:
    """Confident when a crop's right half is darker than its left (as drawn below)."""

    def recognize(self, crops):
        out = []
        for c in crops:
            half = c.shape[1] // 2
            right = float(c[:, half:].mean() < c[:, :half].mean())
            out.append(TextLine("x", 0.9 * right + 0.05))
        return out


def test_wide_lines_mean_0_or_180_tall_lines_90_or_270():
    image = np.full((1000, 1000, 3), 255, np.uint8)
    wide = [box(50, 50 + 40 * k, 650, 80 + 40 * k) for k in range(10)]
    tall = [box(50 + 40 * k, 50, 80 + 40 * k, 650) for k in range(10)]
    assert detect_orientation(image, wide, FakeClassifier(0.05)).angle == 0
    assert detect_orientation(image, wide, FakeClassifier(0.95)).angle == 180
    # crop_quad turns a tall crop counter-clockwise: upright crops => the scan was turned 270
    assert detect_orientation(image, tall, FakeClassifier(0.05)).angle == 270
    assert detect_orientation(image, tall, FakeClassifier(0.95)).angle == 90
    cls = FakeClassifier(0.1)
    result = detect_orientation(image, wide, cls)
    assert result.method == "classifier" and result.confidence == pytest.approx(0.8)
    assert all(c.shape[1] <= 4 * c.shape[0] for c in cls.seen)  # pieces, not squeezed lines
    assert len(cls.seen) == 8 * 3  # 8 lines, 3 pieces each


def test_no_text_line_no_rotation():
    image = np.full((100, 100, 3), 255, np.uint8)
    assert detect_orientation(image, [], FakeClassifier(0.9)) == Orientation(0, 0.0, "none", 0.0)
    squares = [box(10, 10, 30, 30), box(50, 50, 70, 70)]
    assert detect_orientation(image, squares, FakeClassifier(0.9)).angle == 0


def test_recognizer_settles_an_unsure_classifier():
    image = np.full((400, 800, 3), 255, np.uint8)
    image[:, 400:] = 0  # every line's right half is ink: confident as is, not turned
    lines = [box(100, 40 + 40 * k, 700, 70 + 40 * k) for k in range(6)]
    result = detect_orientation(image, lines, FakeClassifier(0.6), InkOnTheRight())
    assert result.angle == 0 and result.method == "recognizer"
    # a sure classifier is not second-guessed
    result = detect_orientation(image, lines, FakeClassifier(0.9), InkOnTheRight())
    assert result.angle == 180 and result.method == "classifier"


# -- rendered pages through the real engine -------------------------------------------------

LINES = SAMPLE_LINES * 2


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from models.registry import load_engine
    from ocrq.config import EngineOptions

    return load_engine(EngineOptions(precision="fp32"), tmp_path_factory.mktemp("models"), 1)


@pytest.fixture(scope="module")
def classifier(engine):
    return engine.classifier


def skewed(page, degrees):
    h, w = page.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(page, matrix, (w, h), borderValue=(255, 255, 255))


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


@pytest.mark.parametrize("angle", [0, 90, 180, 270])
def test_turned_page_found_read_upright_and_mapped_back(engine, classifier, angle):
    page = render_page(LINES, height=36)
    scan = np.ascontiguousarray(np.rot90(page, angle // 90))
    regions = engine.detector.detect(scan)
    found = detect_orientation(scan, regions, classifier, engine.recognizer)
    assert found.angle == angle, found
    assert detect_orientation(scan, regions, classifier).angle == angle  # classifier alone
    pairs = read_page(engine, np.ascontiguousarray(upright(scan, found.angle)))
    assert cer("\n".join(t.text for _, t in pairs), "\n".join(LINES)) <= 0.03
    h, w = scan.shape[:2]
    direct = [r.bbox for r in regions]
    for region, line in pairs:
        mapped = Region(rotate_back(region.quad, found.angle, scan.shape[:2]), region.score)
        x0, y0, x1, y1 = mapped.bbox
        assert -1 <= x0 < x1 <= w + 1 and -1 <= y0 < y1 <= h + 1
        # it lands on the scan's text: on a line the detector found there, and the scan's
        # pixels inside it, turned upright, read the same
        assert max(iou(mapped.bbox, d) for d in direct) >= 0.6
        x0, y0, x1, y1 = (round(v) for v in mapped.bbox)
        pixels = np.ascontiguousarray(upright(scan[max(y0, 0) : y1, max(x0, 0) : x1], angle))
        (again,) = engine.recognizer.recognize([pixels])
        assert cer(again.text, line.text) <= 0.05, (again.text, line.text)


@pytest.mark.parametrize("degrees", [3, -3, 5, -5])
def test_small_skew_is_not_a_rotation(engine, classifier, degrees):
    scan = skewed(render_page(LINES, height=36), degrees)
    regions = engine.detector.detect(scan)
    found = detect_orientation(scan, regions, classifier, engine.recognizer)
    assert found.angle == 0 and found.sideways < 0.1, found


def test_skewed_page_turned_upside_down(engine, classifier):
    scan = np.ascontiguousarray(np.rot90(skewed(render_page(LINES, height=36), 3), 2))
    found = detect_orientation(scan, engine.detector.detect(scan), classifier, engine.recognizer)
    assert found.angle == 180, found
