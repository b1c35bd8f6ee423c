"""Word boxes: the recognizer's word spans along a crop (`TextLine.words`, from its CTC
steps snapped to the ink) and their page boxes (`RegionResult.words`), checked against the
true ink extents of rendered words with the real PP-OCR engine (FP32, one thread)."""

from __future__ import annotations

import time
from dataclasses import replace

import cv2
import numpy as np
import pytest

from models.crops import crop_quad
from models.page import page_regions, read_page
from models.registry import load_engine
from models.words import line_spans, page_words, word_ranges
from ocrq.config import EngineOptions
from ocrq.results import RegionResult, words_of
from tests.fixtures_text import render_line, render_page, render_runs, render_spaced

MIN_IOU = 0.7

# (text, height, font): fonts and sizes, a line set with wide spaces, punctuation.
LINES = [
    ("The quick brown fox jumps over the lazy dog.", 40, "DejaVuSans.ttf"),
    ("Invoice 2024-118: total 1,234.50 EUR", 48, "DejaVuSerif.ttf"),
    ("Pack my box with six dozen liquor jugs!", 28, "DejaVuSans-Bold.ttf"),
    ("Reading order runs top to bottom.", 64, "DejaVuSerif-Italic.ttf"),
    ("Wide     spacing     between     these     words", 36, "DejaVuSans.ttf"),
    ('"Hello," she said; (quietly) - why not? Yes!', 44, "DejaVuSerif.ttf"),
    ("Batch OCR with pinned workers", 24, "DejaVuSansMono.ttf"),
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return load_engine(EngineOptions(precision="fp32"), tmp_path_factory.mktemp("models"), 1)


def ink_words(image: np.ndarray, words: int) -> list[tuple[int, int]]:
    """The true [x0, x1) of each of the `words` words in a rendered strip: its ink columns
    cut at the `words - 1` widest blank stretches, which must be wider than every other
    (word spaces, not letters' side bearings)."""
    ink = (image.min(axis=2) if image.ndim == 3 else image) < 128
    cols = np.flatnonzero(ink.any(axis=0))
    gaps = np.diff(cols)
    order = np.argsort(-gaps, kind="stable")
    cuts = np.sort(order[: words - 1])
    if words < len(cols):
        assert words == 1 or gaps[order[words - 2]] > gaps[order[words - 1]], "ambiguous"
    starts = np.concatenate(([cols[0]], cols[cuts + 1]))
    stops = np.concatenate((cols[cuts], [cols[-1]])) + 1
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def x_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


# --- spans along a line, no model ------------------------------------------------------


def test_word_ranges_split_on_spaces_as_words_of_does():
    text = " ab  c d! "
    assert [text[a:b] for a, b in word_ranges(text)] == ["ab", "c", "d!"]
    region = RegionResult(0, 0, [[0, 0], [10, 0], [10, 1], [0, 1]], text, 0.9)
    assert [w.text for w in words_of(region)] == ["ab", "c", "d!"]
    assert word_ranges("   ") == []


def test_spans_from_steps_alone_then_snapped_to_ink():
    # "ab cd" emitted at steps 1, 2, (space) 4, 6, 7 (columns x 8); ink at 4-21 and 36-60
    text, steps = "ab cd", np.array([1, 2, 4, 6, 7])
    probs = np.array([0.9, 0.7, 0.99, 0.8, 0.6])
    (a, b) = line_spans(text, steps * 8, probs, 8)
    assert a == ("ab", 2.0, 26.0, 0.8) and b == ("cd", 42.0, 66.0, 0.7)
    ink = np.zeros(80, dtype=bool)
    ink[4:22] = ink[36:61] = True
    (a, b) = line_spans(text, steps * 8, probs, 8, ink, scale=0.5)
    assert a[1:3] == (2.0, 11.0)  # ink 4-22, in crop columns (half the input's)
    assert b[1:3] == (19.0, 30.5)  # ink starts at 36 but may move out 4 columns at most
    # a speck far off is no word's; a word with no ink of its own keeps its estimate
    ink[:] = False
    ink[70] = True
    assert line_spans(text, steps * 8, probs, 8, ink) == line_spans(text, steps * 8, probs, 8)
    assert line_spans("", np.array([]), np.array([]), 8) == ()


# --- crop spans on the page: the inverse of crop_quad ----------------------------------


@pytest.mark.parametrize(
    "quad",
    [
        ((40.0, 30.0), (340.0, 30.0), (340.0, 80.0), (40.0, 80.0)),  # axis-aligned
        ((40.4, 30.6), (340.4, 30.6), (340.4, 80.6), (40.4, 80.6)),  # fractional
        ((40.0, 30.0), (330.0, 90.0), (320.0, 139.0), (30.0, 79.0)),  # tilted
        ((200.0, 20.0), (250.0, 20.0), (250.0, 320.0), (200.0, 320.0)),  # tall: turned
        ((200.0, 20.0), (252.0, 24.0), (230.0, 322.0), (178.0, 318.0)),  # tall, tilted
    ],
)
def test_page_words_invert_crop_quad(quad):
    """A blob drawn on the page, found in the crop crop_quad cuts (turned if tall), comes
    back from page_words onto the blob."""
    page = np.full((400, 400, 3), 255, dtype=np.uint8)
    q = np.array(quad)
    wide = np.linalg.norm(q[1] - q[0]) > np.linalg.norm(q[3] - q[0])
    centre = q.mean(axis=0) + 0.3 * (q[1] - q[0] if wide else q[3] - q[0])  # along the line
    cx, cy = (int(round(v)) for v in centre)
    cv2.rectangle(page, (cx - 4, cy - 4), (cx + 4, cy + 4), (0, 0, 0), -1)
    crop = crop_quad(page, quad)
    assert crop.shape[1] > crop.shape[0]  # read as a line
    cols = np.flatnonzero((crop.min(axis=2) < 128).any(axis=0))
    ((_, x0, y0, x1, y1, _),) = page_words(quad, [("w", cols[0], cols[-1] + 1, 1.0)])
    assert x0 - 3 <= cx - 4 and cx + 5 <= x1 + 3, (x0, x1, cx)
    assert y0 <= cy - 4 and cy + 5 <= y1, (y0, y1, cy)
    # along the line the box is as narrow as the blob (across, the strip's full height)
    if wide and q[1, 1] == q[0, 1]:
        assert x1 - x0 <= 9 + 3
    elif not wide and q[1, 0] == q[2, 0]:
        assert y1 - y0 <= 9 + 3
    xs, ys = q[:, 0], q[:, 1]
    assert xs.min() <= x0 and x1 <= xs.max() and ys.min() <= y0 and y1 <= ys.max()


# --- the real engine ---------------------------------------------------------------------


def test_word_spans_fit_the_printed_words(engine):
    crops = [render_line(text, height=h, font=font) for text, h, font in LINES]
    lines = engine.recognizer.recognize(crops)
    ious = []
    for (text, h, font), crop, line in zip(LINES, crops, lines, strict=True):
        assert line.words is not None, line
        assert [w[0] for w in line.words] == line.text.split(), line
        assert len(line.words) == len(text.split()), (line.text, text)  # else no truth to match
        truth = ink_words(crop, len(text.split()))
        for (word, x0, x1, conf), true in zip(line.words, truth, strict=True):
            iou = x_iou((x0, x1), true)
            ious.append(iou)
            assert iou >= MIN_IOU, (font, h, word, (x0, x1), true)
            assert 0.0 < conf <= 1.0
        mean_conf = np.mean([w[3] for w in line.words])
        assert abs(mean_conf - line.confidence) < 0.1
    print(f"\nword x-IoU over {len(ious)} words: mean {np.mean(ious):.3f}, min {min(ious):.3f}")
    assert np.mean(ious) >= 0.9


def test_spans_follow_the_text_as_finally_written(engine):
    """A thin space dropped before ';' joins its word to the mark: one span over both."""
    image, _, _ = render_spaced(
        [("identity", 11), (";", 16), ("and", 16), ("the", 16), ("carts", 9), ("!", 16)]
        + [("legs", 16), ("at", 16), ("rest", 16)]
    )
    (line,) = engine.recognizer.recognize([image])
    assert "identity;" in line.text and "carts!" in line.text, line.text
    assert [w[0] for w in line.words] == line.text.split()
    truth = ink_words(image, len(line.text.split()))
    for (word, x0, x1, _), true in zip(line.words, truth, strict=True):
        assert x_iou((x0, x1), true) >= MIN_IOU, (word, (x0, x1), true)


def test_spans_follow_small_capitals_rewritten(engine):
    """Small capitals lowered ("EDWIN" read, "Edwin" written): the spans carry the words
    as written, each on its printed word."""
    image, _ = render_runs(
        [("Drawn by Mr. ", False), ("E", False), ("dwin ", True), ("L", False), ("andseer", True)]
    )
    (line,) = engine.recognizer.recognize([image])
    assert "Edwin Landseer" in line.text, line.text
    assert [w[0] for w in line.words] == line.text.split()
    truth = ink_words(image, len(line.words))
    for (word, x0, x1, _), true in zip(line.words, truth, strict=True):
        assert x_iou((x0, x1), true) >= MIN_IOU, (word, (x0, x1), true)


def test_page_words_are_in_page_pixels(engine):
    texts = ["Invoice 2024-118: total 1,234.50 EUR", "Wide     spacing     here", "Paid by card."]
    height = 36
    page = render_page(texts, height=height)
    page = np.pad(page, ((150, 0), (200, 0), (0, 0)), constant_values=255)  # off the corner
    regions = page_regions(3, read_page(engine, page))
    pitch = 1.6 * height
    read: dict[int, list[str]] = {}
    for region in regions:
        assert region.page == 3 and region.words is not None
        xs = [p[0] for p in region.quad]
        ys = [p[1] for p in region.quad]
        n = int((np.mean(ys) - 150 - 60) // pitch)  # its line of the page
        read.setdefault(n, []).extend(w[0] for w in region.words)
        top = int(150 + 60 + pitch * n)
        left = int(min(xs))
        # the region's own columns of its line: wide spaces can part a line into regions
        band = page[top : int(top + pitch), left : int(np.ceil(max(xs)))]
        truth = ink_words(band, len(region.words))
        for (word, x0, y0, x1, y1, conf), (t0, t1) in zip(region.words, truth, strict=True):
            assert x_iou((x0, x1), (left + t0, left + t1)) >= MIN_IOU, (word, (x0, x1), t0, t1)
            assert min(xs) <= x0 < x1 <= max(xs) and min(ys) <= y0 < y1 <= max(ys)
            assert y0 < top + pitch / 2 < y1  # on its own line of the page
            assert 0 < conf <= 1
        assert words_of(region)[0].box == tuple(region.words[0][1:5])
    assert [read[n] for n in range(len(texts))] == [t.split() for t in texts]
    assert regions[0].words[0][1] > 200 + 60 - 5  # the page's columns, not the crop's


def test_engines_without_spans_leave_words_to_words_of():
    from models.base import Region, TextLine

    quad = ((10.0, 10.0), (110.0, 10.0), (110.0, 30.0), (10.0, 30.0))
    (region,) = page_regions(0, [(Region(quad, 0.9), TextLine("two words", 0.8))])
    assert region.words is None
    assert [w.text for w in words_of(region)] == ["two", "words"]


def test_cost_of_word_spans_on_a_page_of_30_lines(engine):
    """Recognition time of a page's 30 crops with and without word spans (best of 7,
    alternated): the spans are a few numpy passes over each crop's input columns."""
    words = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
    texts = [
        f"Line {n}: {words[n % 8]} {words[(n + 3) % 8]}, {words[(n + 5) % 8]}." for n in range(30)
    ]
    page = render_page(texts, height=32)
    regions = engine.detector.detect(page)
    assert len(regions) == 30
    crops = [crop_quad(page, r.quad) for r in regions]
    recognizer = engine.recognizer
    on, off = recognizer.config, replace(recognizer.config, word_boxes=False)
    best = {True: np.inf, False: np.inf}
    try:
        for _ in range(7):
            for spans in (True, False):
                recognizer.config = on if spans else off
                started = time.perf_counter()
                lines = recognizer.recognize(crops)
                best[spans] = min(best[spans], time.perf_counter() - started)
                assert all((line.words is not None) == spans for line in lines)
    finally:
        recognizer.config = on
    extra = best[True] - best[False]
    print(
        f"\n30 lines: {best[False] * 1000:.1f} ms without word spans, "
        f"{best[True] * 1000:.1f} ms with ({extra * 1000:+.2f} ms, "
        f"{100 * extra / best[False]:+.1f} %)"
    )
    assert best[True] <= 1.1 * best[False]  # measured +0.1-2 %; the rest is noise
