"""DBNet post-processing for the PP-OCR detector: a text probability map to clockwise
quads in page pixels.

threshold -> connected blobs (OpenCV contours) -> min-area rectangle -> mean probability
inside it (box score) -> grow the rectangle back out (the network predicts shrunk text
kernels) -> scale to the original image.
"""

from __future__ import annotations

import cv2
import numpy as np

from models.base import Quad, Region
from models.ppocr.det_pre import DetectorConfig, DetInput


def order_clockwise(points: np.ndarray) -> np.ndarray:
    """Order 4 points clockwise from top-left (image coordinates, y down)."""
    pts = np.asarray(points, dtype=np.float32).reshape(4, 2)
    by_x = pts[np.argsort(pts[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    tl, bl = left
    tr, br = right
    return np.array([tl, tr, br, bl], dtype=np.float32)


def box_score(prob: np.ndarray, quad: np.ndarray) -> float:
    """Mean probability inside a quad (map pixels)."""
    h, w = prob.shape
    x0 = int(np.clip(np.floor(quad[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(quad[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(np.floor(quad[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(quad[:, 1].max()), 0, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    shifted = (quad - np.array([x0, y0], dtype=np.float32)).round().astype(np.int32)
    cv2.fillPoly(mask, [shifted], 1)
    window = prob[y0 : y1 + 1, x0 : x1 + 1]
    n = int(mask.sum())
    if n == 0:
        return 0.0
    return float(window[mask.astype(bool)].sum() / n)


def unclip_rect(rect: tuple, ratio: float) -> tuple:
    """Grow a rotated rectangle by the DB offset distance on every side.

    Offsetting a rectangle outward by d with round joins and taking the min-area
    rectangle of the result gives exactly the rectangle with both sides + 2d, so no
    polygon clipping library is needed.
    """
    (cx, cy), (rw, rh), angle = rect
    area = rw * rh
    perimeter = 2.0 * (rw + rh)
    d = area * ratio / perimeter if perimeter > 0 else 0.0
    return ((cx, cy), (rw + 2 * d, rh + 2 * d), angle)


def db_postprocess(prob: np.ndarray, cfg: DetectorConfig) -> list[tuple[np.ndarray, float]]:
    """Probability map (HxW) -> [(quad 4x2 float32 in map pixels, clockwise from TL), score]."""
    bitmap = (prob > cfg.thresh).astype(np.uint8)
    if cfg.dilate:
        bitmap = cv2.dilate(bitmap, np.ones((2, 2), dtype=np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out: list[tuple[np.ndarray, float]] = []
    for contour in contours[: cfg.max_candidates]:
        rect = cv2.minAreaRect(contour)
        if min(rect[1]) < cfg.min_size:
            continue
        quad = cv2.boxPoints(rect)
        score = box_score(prob, quad)
        if score < cfg.box_thresh:
            continue
        grown = unclip_rect(rect, cfg.unclip_ratio)
        if min(grown[1]) < cfg.min_size + 2:
            continue
        out.append((order_clockwise(cv2.boxPoints(grown)), score))
    return out


def to_regions(boxes: list[tuple[np.ndarray, float]], det_in: DetInput) -> list[Region]:
    """Map quads from the probability map to original image pixels, clip, drop slivers."""
    h0, w0 = det_in.orig_shape
    regions = []
    for quad, score in boxes:
        q = quad.astype(np.float64).copy()
        q[:, 0] = np.clip(np.round(q[:, 0] * det_in.scale_x), 0, w0)
        q[:, 1] = np.clip(np.round(q[:, 1] * det_in.scale_y) - det_in.pad_top, 0, h0)
        width = np.linalg.norm(q[0] - q[1])
        height = np.linalg.norm(q[0] - q[3])
        if width <= 3 or height <= 3:
            continue
        quad_t: Quad = tuple((float(x), float(y)) for x, y in q)  # type: ignore[assignment]
        regions.append(Region(quad=quad_t, score=float(score)))
    return regions
