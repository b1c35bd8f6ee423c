"""DB post-processing and detector pre-processing on synthetic inputs (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from models.ppocr.det_post import (
    box_score,
    db_postprocess,
    order_clockwise,
    to_regions,
    unclip_rect,
)
from models.ppocr.det_pre import DetectorConfig, DetInput, preprocess, target_size, vertical_pad


def prob_map(shape, blobs, value=0.9):
    prob = np.zeros(shape, dtype=np.float32)
    for x0, y0, x1, y1 in blobs:
        prob[y0:y1, x0:x1] = value
    return prob


def test_target_size_multiples_of_32_and_limits():
    cfg = DetectorConfig(min_side=736, max_side=2000)
    h, w = target_size(100, 200, cfg)  # upscaled: short side to 736
    assert (h % 32, w % 32) == (0, 0)
    assert abs(h - 736) <= 16 and abs(w - 1472) <= 16
    h, w = target_size(4000, 3000, cfg)  # downscaled: long side capped
    assert h <= 2000 + 16 and h % 32 == 0 and abs(w / h - 0.75) < 0.02


def test_preprocess_normalizes_to_minus_one_one_and_pads_lines():
    cfg = DetectorConfig()
    line = np.full((40, 800, 3), 255, dtype=np.uint8)
    line[10:30, 100:700] = 0
    det_in = preprocess(line, cfg)
    tensor = det_in.tensor()
    assert tensor.dtype == np.float32 and tensor.shape[:2] == (1, 3)
    assert tensor.max() == pytest.approx(1.0) and tensor.min() == pytest.approx(-1.0)
    # 800/40 = 20 > max_aspect 16: padded to 50 rows (5 above and below), and a line
    # strip is not upscaled to min_side: 50x800 -> 64x800
    assert det_in.pad_top == vertical_pad(40, 800, cfg) == 5
    assert tensor.shape[2:] == det_in.size == (64, 800)
    page = np.zeros((1000, 800, 3), dtype=np.uint8)
    assert preprocess(page, cfg).pad_top == 0


def test_db_postprocess_finds_each_blob_and_grows_it():
    prob = prob_map((200, 400), [(20, 20, 220, 40), (50, 100, 350, 130)])
    cfg = DetectorConfig(unclip_ratio=1.5)
    boxes = db_postprocess(prob, cfg)
    assert len(boxes) == 2
    boxes.sort(key=lambda b: b[0][:, 1].min())
    quad, score = boxes[0]
    # the dilated kernel's 1-px rim of zeros is inside the box: a bit below 0.9
    assert 0.8 < score <= 0.9
    # rectangle ~200x20 (+1 px of dilation): d = area * 1.5 / perimeter ~ 13.6
    w = np.linalg.norm(quad[1] - quad[0])
    h = np.linalg.norm(quad[3] - quad[0])
    assert 224 < w < 232 and 44 < h < 52
    assert quad[0, 0] < 20 and quad[0, 1] < 20  # grown outward around the kernel


def test_db_postprocess_drops_weak_and_tiny_blobs():
    prob = prob_map((100, 100), [(10, 10, 60, 30)], value=0.4)  # above thresh, below box_thresh
    prob[70:72, 70:72] = 0.95  # 2x2 speck: below min_size
    assert db_postprocess(prob, DetectorConfig(thresh=0.3, box_thresh=0.5)) == []
    assert len(db_postprocess(prob, DetectorConfig(thresh=0.3, box_thresh=0.35))) == 1


def test_unclip_rect_matches_offset_distance():
    rect = ((50.0, 50.0), (100.0, 20.0), 0.0)
    (_, (w, h), _) = unclip_rect(rect, 2.0)
    d = 100 * 20 * 2.0 / 240
    assert w == pytest.approx(100 + 2 * d) and h == pytest.approx(20 + 2 * d)


def test_box_score_is_mean_inside_quad():
    prob = np.zeros((50, 50), dtype=np.float32)
    prob[:, :25] = 1.0
    quad = np.array([[10, 10], [40, 10], [40, 20], [10, 20]], dtype=np.float32)
    assert box_score(prob, quad) == pytest.approx(15 / 31, abs=0.02)


def test_order_clockwise_from_top_left():
    pts = np.array([[10, 20], [0, 0], [10, 0], [0, 20]], dtype=np.float32)
    assert order_clockwise(pts).tolist() == [[0, 0], [10, 0], [10, 20], [0, 20]]


def test_to_regions_maps_back_to_image_pixels():
    quad = np.array([[10, 40], [90, 40], [90, 60], [10, 60]], dtype=np.float32)
    det_in = DetInput(np.zeros((1, 1, 3), np.uint8), 2.0, 0.5, 5, (30, 300))
    (region,) = to_regions([(quad, 0.8)], det_in)
    assert region.quad[0] == (20.0, 15.0)
    assert region.quad[2] == (180.0, 25.0)
    assert region.score == pytest.approx(0.8)
