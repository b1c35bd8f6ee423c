"""Cut a detected quad out of a page as an upright, rectified crop.

A quad (clockwise from top-left) is mapped onto a w x h rectangle with a perspective
transform; axis-aligned quads take a plain slice (no resampling, no copy beyond the slice).
"""

from __future__ import annotations

import cv2
import numpy as np

from models.base import Quad


def quad_size(quad: np.ndarray) -> tuple[int, int]:
    """(width, height) of the rectangle a quad is rectified to: its longer opposite sides."""
    width = max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[3] - quad[2]))
    height = max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2]))
    return max(1, int(round(width))), max(1, int(round(height)))


def _axis_aligned(q: np.ndarray) -> bool:
    return bool(
        q[0, 1] == q[1, 1] and q[3, 1] == q[2, 1] and q[0, 0] == q[3, 0] and q[1, 0] == q[2, 0]
    )


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An HxW gray image as HxWx3 (a crop: small); an RGB one as it is."""
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def crop_quad(image: np.ndarray, quad: Quad | np.ndarray, rotate_tall: float = 1.5) -> np.ndarray:
    """Rectified HxWx3 crop of `quad` from `image` (HxWx3, or HxW gray: cut in gray, then
    made RGB). A crop at least `rotate_tall` times taller than wide is turned 90 degrees
    counter-clockwise (vertical text read as a line)."""
    q = np.asarray(quad, dtype=np.float32).reshape(4, 2)
    h_img, w_img = image.shape[:2]
    if _axis_aligned(q):
        x0, y0 = int(max(0, np.floor(q[0, 0]))), int(max(0, np.floor(q[0, 1])))
        x1, y1 = int(min(w_img, np.ceil(q[2, 0]))), int(min(h_img, np.ceil(q[2, 1])))
        crop = image[y0:y1, x0:x1]
        if crop.size == 0:
            crop = np.zeros((1, 1, *image.shape[2:]), dtype=np.uint8)
    else:
        w, h = quad_size(q)
        dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
        matrix = cv2.getPerspectiveTransform(q, dst)
        crop = cv2.warpPerspective(
            image, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
        )
    if crop.shape[0] >= rotate_tall * crop.shape[1]:
        crop = np.rot90(crop)
    return np.ascontiguousarray(as_rgb(crop))
