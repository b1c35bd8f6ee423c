"""Two-pass detection: the fine pass's scale follows the size of the text on the page."""

from __future__ import annotations

import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.base import PageBuffer, Region
from models.page import page_regions, read_page
from models.ppocr.det_pre import DetectorConfig, resize_ratio, target_size
from models.ppocr.engine import PPOCRConfig, load
from models.ppocr.scales import SMALL_PROBE_SHARE, fine_side, text_window, with_missed
from ocrq.config import EngineOptions
from ocrq.results import page_text
from ocrq.scoring import cer
from tests.fixtures_text import SAMPLE_LINES, render_page


def _box(height: float) -> Region:
    quad = ((0.0, 0.0), (100.0, 0.0), (100.0, height), (0.0, height))
    return Region(quad=quad, score=0.9)


def test_fine_side_puts_the_median_box_at_text_height():
    cfg = DetectorConfig(max_side=2000, text_height=32.0)
    boxes = [_box(h) for h in (60, 64, 64, 70, 200)]  # median 64 px in a 4000-px image

    def side(h, w, regions):
        return fine_side(h, w, regions, cfg, max(target_size(h, w, cfg)))

    assert side(4000, 3000, boxes) == 1984  # capped: max_side, in steps of 32
    assert side(1500, 1000, boxes) == 750  # 1500 * 32 / 64
    assert side(1500, 1000, []) == 1504  # nothing seen: full size


def _page(text_height: int, canvas: tuple[int, int]) -> np.ndarray:
    page = render_page(SAMPLE_LINES[:4], height=text_height)
    out = np.full((*canvas, 3), 255, dtype=np.uint8)
    out[: page.shape[0], : page.shape[1]] = page[: canvas[0], : canvas[1]]
    return out


@pytest.fixture(scope="module")
def engines():
    fp32 = EngineOptions(precision="fp32")
    single = load(fp32, Path("."), config=PPOCRConfig(DetectorConfig(probe_side=0)))
    return single, load(fp32, Path("."))  # two passes are the default


def _read_spying(engine, image, record) -> list:
    """Read a page (an array or a `PageBuffer`) with `record(image, config)` called at
    each of the real detector's passes; returns the page's (region, text) pairs."""
    predictor = engine.detector.predictor
    original = predictor.detect_measuring  # every pass, the probe's included, runs it

    def spy(img, cfg, page_means=None):
        record(img, cfg)
        return original(img, cfg, page_means)

    predictor.detect_measuring = spy
    try:
        return read_page(engine, image)
    finally:
        del predictor.detect_measuring


def _passes(engine, image) -> tuple[list[tuple[tuple[int, int], DetectorConfig]], list]:
    """((h, w) of the image each detector pass read, its config) in order, and the page's
    (region, text) pairs."""
    passes: list[tuple[tuple[int, int], DetectorConfig]] = []
    pairs = _read_spying(engine, image, lambda img, cfg: passes.append((img.shape[:2], cfg)))
    return passes, pairs


def _sides(engine, image) -> list[int]:
    """Scales of the detector's passes, as the long side the whole page had at each (a
    pass over a window of the page counts at its scale)."""
    passes, _ = _passes(engine, image)
    return [round(resize_ratio(*shape, cfg) * max(image.shape[:2])) for shape, cfg in passes]


def test_large_print_is_read_at_a_smaller_scale_with_the_same_text(engines):
    single, two_pass = engines
    image = _page(90, (2600, 2000))  # big type: the full 2000-px pass is not needed
    sides = _sides(two_pass, image)
    assert sides[0] == 896 and len(sides) <= 2 and sides[-1] < 2000 * 0.85
    expected = "\n".join(SAMPLE_LINES[:4])
    assert cer(page_text(page_regions(0, read_page(two_pass, image))), expected) <= 0.02
    assert cer(page_text(page_regions(0, read_page(single, image))), expected) <= 0.02


def test_small_print_keeps_the_full_scale(engines):
    _, two_pass = engines
    image = _page(22, (2600, 2000))
    assert _sides(two_pass, image) == [896, 2000]


def test_line_strips_take_one_pass_and_small_images_a_probe_at_half_scale(engines):
    _, two_pass = engines
    strip = render_page(SAMPLE_LINES[:1], height=40, margin=8)
    assert len(_sides(two_pass, strip)) == 1
    small = _page(30, (900, 760))
    full = max(target_size(900, 760, two_pass.detector.config))
    assert _sides(two_pass, small)[0] == round(full * SMALL_PROBE_SHARE)
    assert two_pass.detector.config.probe_side == 896


def test_a_small_page_of_large_print_is_never_read_upscaled(engines):
    _, two_pass = engines
    image = _page(40, (480, 680))  # below min_side: one pass would read it at 1056x736
    full = max(target_size(480, 680, two_pass.detector.config))
    sides = _sides(two_pass, image)
    assert sides[0] == round(full * SMALL_PROBE_SHARE) and max(sides) <= 680
    assert (
        cer(page_text(page_regions(0, read_page(two_pass, image))), "\n".join(SAMPLE_LINES[:4]))
        <= 0.02
    )


def test_a_mid_sized_page_of_large_print_gets_a_fine_pass_at_its_text_height(engines):
    _, two_pass = engines
    image = _page(56, (800, 1024))  # too small for the 896-px probe: once, one 1024-px pass
    sides = _sides(two_pass, image)
    assert len(sides) == 2 and sides[0] == 512 and 512 * 1.2 < sides[1] < 1024 * 0.85
    assert (
        cer(page_text(page_regions(0, read_page(two_pass, image))), "\n".join(SAMPLE_LINES[:4]))
        <= 0.02
    )


def test_small_print_on_a_small_page_is_read_at_full_scale_after_the_probe(engines):
    _, two_pass = engines
    image = _page(16, (480, 680))
    full = max(target_size(480, 680, two_pass.detector.config))  # 1056, upscaled
    sides = _sides(two_pass, image)
    assert sides[0] == round(full * SMALL_PROBE_SHARE) and len(sides) == 2
    assert abs(sides[1] - full) <= 32
    assert (
        cer(page_text(page_regions(0, read_page(two_pass, image))), "\n".join(SAMPLE_LINES[:4]))
        <= 0.05
    )


def test_text_window_grows_the_boxes_by_median_heights_and_skips_small_savings():
    boxes = [_box(h) for h in (10, 20, 30)]  # x 0..100, y 0..h; median height 20
    shifted = [Region(tuple((x + 500, y + 400) for x, y in b.quad), b.score) for b in boxes]
    assert text_window(2000, 1000, shifted, 2.0) == (460, 360, 641, 471)
    assert text_window(2000, 1000, shifted, 0.0) is None  # off
    assert text_window(2000, 1000, [], 2.0) is None  # nothing seen
    assert text_window(60, 110, boxes, 2.0) is None  # the window would be the whole page


def test_fine_pass_reads_only_the_window_around_the_text(engines):
    """Small print in one part of a large blank page: the full-scale pass reads a window
    around it, not the page, and its boxes come back in page pixels."""
    _, two_pass = engines
    image = _small_print_on_a_large_page()
    passes, pairs = _passes(two_pass, image)
    shapes = [shape for shape, _ in passes]
    assert shapes[0] == (2600, 2000) and len(shapes) == 2
    assert shapes[1][0] * shapes[1][1] < 0.3 * 2600 * 2000, shapes
    assert cer(page_text(page_regions(0, pairs)), "\n".join(SAMPLE_LINES[:4])) <= 0.02
    for region, _ in pairs:
        x0, y0, x1, y1 = region.bbox
        assert x0 >= 200 and x1 <= 1200 and y0 >= 300 and y1 <= 1100, region.bbox


def _small_print_on_a_large_page() -> np.ndarray:
    image = np.full((2600, 2000, 3), 255, dtype=np.uint8)
    image[300:1100, 200:1200] = _page(22, (800, 1000))
    return image


def test_a_handed_over_page_is_narrowed_to_its_text_and_freed_before_the_fine_pass(engines):
    """A page in a `PageBuffer` (as a worker hands each page over) keeps only the window
    the fine pass reads: the whole page is freed before that pass runs, and the regions
    and text are those of the page read in place."""
    _, two_pass = engines
    in_place = read_page(two_pass, _small_print_on_a_large_page())
    image = _small_print_on_a_large_page()
    whole = weakref.ref(image)
    page = PageBuffer(image)
    del image
    alive_at_passes: list[bool] = []
    handed_over = _read_spying(
        two_pass, page, lambda img, cfg: alive_at_passes.append(whole() is not None)
    )
    assert alive_at_passes == [True, False]  # the probe read the page; the fine pass did not
    assert page.shape == (2600, 2000) and page.origin != (0, 0)
    assert page.pixels.size < 0.3 * 2600 * 2000 * 3
    assert handed_over == in_place  # same quads (page pixels), same text


def test_page_buffer_narrows_in_page_coordinates():
    pixels = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    page = PageBuffer(pixels.copy())
    page.narrow(5, 4, 25, 18)
    page.narrow(10, 6, 20, 12)  # inside what is kept, still in page coordinates
    assert page.origin == (10, 6) and page.shape == (20, 30)
    assert np.array_equal(page.pixels, pixels[6:12, 10:20])
    assert page.local(((10.0, 6.0), (20.0, 6.0), (20.0, 12.0), (10.0, 12.0))) == (
        (0.0, 0.0),
        (10.0, 0.0),
        (10.0, 6.0),
        (0.0, 6.0),
    )


def _rect(x0: float, y0: float, x1: float, y1: float) -> Region:
    return Region(quad=((x0, y0), (x1, y0), (x1, y1), (x0, y1)), score=0.8)


def test_with_missed_adds_back_only_uncovered_line_like_probe_boxes():
    fine = [_rect(100, 100, 900, 130), _rect(100, 200, 900, 230)]
    found = _rect(98, 98, 905, 133)  # the fine pass has it
    lost = _rect(100, 300, 900, 335)  # a whole line the fine pass lost
    speck = _rect(500, 400, 530, 430)  # a stray mark at the probe's scale: not a line
    halved = _rect(100, 196, 1700, 232)  # 42 % covered, over the quarter: not added
    got = with_missed(fine, [found, lost, speck, halved], (2000, 2000), 0.25)
    assert got == [*fine, lost]
    assert with_missed(fine, [lost], (2000, 2000), 0.0) == fine  # off
    assert with_missed([], [lost, speck], (2000, 2000), 0.25) == [lost]


def test_a_line_the_fine_pass_loses_is_read_from_the_probe(engines, monkeypatch):
    """The fine pass drops the third line's boxes (as the drop-capital line of book page
    e049 was lost at some scales); the page's text still has that line."""
    import models.ppocr.scales as scales

    _, two_pass = engines
    image = _page(22, (800, 1400))
    passes, _ = _passes(two_pass, image)
    assert len(passes) == 2  # small print: a probe, then a fine pass
    original = scales.detect_window

    def losing(predictor, page, coarse, cfg, page_means=None, narrow=False):
        regions = original(predictor, page, coarse, cfg, page_means, narrow)
        centres = sorted((r.bbox[1] + r.bbox[3]) / 2 for r in regions)
        starts = [c for i, c in enumerate(centres) if i == 0 or c - centres[i - 1] > 10]
        assert len(starts) == 4, starts  # one group of boxes per line
        third = (starts[2] - 5, starts[3] - 5)
        return [r for r in regions if not third[0] <= (r.bbox[1] + r.bbox[3]) / 2 < third[1]]

    monkeypatch.setattr(scales, "detect_window", losing)
    pairs = read_page(two_pass, image)
    assert cer(page_text(page_regions(0, pairs)), "\n".join(SAMPLE_LINES[:4])) <= 0.02
    off = replace(two_pass.detector.config, missed_coverage=0.0)
    monkeypatch.setattr(two_pass.detector, "config", off)
    lost = page_text(page_regions(0, read_page(two_pass, image)))
    assert SAMPLE_LINES[2] not in lost and cer(lost, "\n".join(SAMPLE_LINES[:4])) > 0.1


def test_a_handed_over_page_releases_the_detectors_memory_before_its_crops_are_read(engines):
    """The detector's arena is emptied between detection and recognition for a page in a
    `PageBuffer` (a worker's), so the two peaks do not add up; a caller that keeps its
    own array keeps the arena warm, as before."""
    _, two_pass = engines
    calls: list[str] = []
    detector, recognizer = two_pass.detector, two_pass.recognizer
    release, recognize = detector.release_memory, recognizer.recognize
    detector.release_memory = lambda: (calls.append("release"), release())[1]
    recognizer.recognize = lambda crops: (calls.append("recognize"), recognize(crops))[1]
    try:
        image = render_page(SAMPLE_LINES[:3], height=18)
        in_place = read_page(two_pass, image)
        assert "release" not in calls and "recognize" in calls
        calls.clear()
        assert read_page(two_pass, PageBuffer(image.copy())) == in_place
        assert calls[-2:] == ["release", "recognize"]
    finally:
        del detector.release_memory, recognizer.recognize


def test_a_jobs_before_page_hook_runs_for_each_page_before_it_is_read(engines):
    """`read_pages(..., before_page)` (a worker's heap trim before a large page) is told
    each page's size after it is decoded and before the detector reads it."""
    from worker.pipeline import read_pages

    _, two_pass = engines
    detector = two_pass.detector
    events: list[tuple[str, int]] = []
    detect_page = detector.detect_page

    def spy(page):
        events.append(("detect", page.shape[0] * page.shape[1]))
        return detect_page(page)

    pages = [render_page(SAMPLE_LINES[:2], height=18), render_page(SAMPLE_LINES[:1], height=30)]
    sizes = [p.shape[0] * p.shape[1] for p in pages]
    detector.detect_page = spy
    try:
        read = list(
            read_pages(two_pass, iter(pages), lambda pixels: events.append(("before", pixels)))
        )
    finally:
        del detector.detect_page
    assert len(read) == 2 and [{r.page for r in p.regions} for p in read] == [{0}, {1}]
    assert events == [(kind, n) for n in sizes for kind in ("before", "detect")]
