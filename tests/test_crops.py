from __future__ import annotations

import numpy as np

from models.crops import crop_quad, quad_size


def test_axis_aligned_crop_is_exact_slice():
    image = np.arange(60 * 80 * 3, dtype=np.uint8).reshape(60, 80, 3)
    quad = ((10.0, 5.0), (50.0, 5.0), (50.0, 25.0), (10.0, 25.0))
    crop = crop_quad(image, quad)
    assert crop.shape == (20, 40, 3)
    assert np.array_equal(crop, image[5:25, 10:50])


def test_rotated_quad_is_rectified():
    # A dark bar rotated by 30 degrees on white; the rectified crop is dark throughout.
    import cv2

    image = np.full((300, 300, 3), 255, np.uint8)
    rect = ((150.0, 150.0), (160.0, 30.0), 30.0)
    box = cv2.boxPoints(rect).astype(np.int32)
    cv2.fillPoly(image, [box], (0, 0, 0))
    from models.ppocr.det_post import order_clockwise

    inner = order_clockwise(cv2.boxPoints(((150.0, 150.0), (140.0, 20.0), 30.0)))
    crop = crop_quad(image, inner)
    assert abs(crop.shape[1] - 140) <= 2 and abs(crop.shape[0] - 20) <= 2
    assert crop.mean() < 20


def test_tall_crop_turned_to_a_line():
    image = np.zeros((200, 100, 3), np.uint8)
    crop = crop_quad(image, ((10, 10), (30, 10), (30, 110), (10, 110)))
    assert crop.shape == (20, 100, 3)


def test_quad_size_uses_longer_sides():
    q = np.array([[0, 0], [100, 0], [110, 30], [0, 20]], dtype=np.float32)
    w, h = quad_size(q)
    assert w == 110 and h == round(float(np.hypot(10, 30)))


def test_a_gray_page_gives_the_same_rgb_crops_as_its_rgb_copy():
    """Gray and bilevel pages stay one channel (ocrq.images); their crops are cut in gray
    and handed on as HxWx3, pixel for pixel what the page's RGB copy would give."""
    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, size=(120, 200), dtype=np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    straight = ((10.0, 5.0), (150.0, 5.0), (150.0, 45.0), (10.0, 45.0))
    tilted = ((12.0, 60.0), (180.0, 52.0), (182.0, 90.0), (14.0, 98.0))
    tall = ((20.0, 10.0), (40.0, 10.0), (40.0, 110.0), (20.0, 110.0))
    for quad in (straight, tilted, tall):
        crop = crop_quad(gray, quad)
        assert crop.ndim == 3 and crop.shape[2] == 3 and crop.flags.c_contiguous
        np.testing.assert_array_equal(crop, crop_quad(rgb, quad))
    assert crop_quad(gray, ((5.0, 5.0), (5.0, 5.0), (5.0, 5.0), (5.0, 5.0))).shape == (1, 1, 3)
