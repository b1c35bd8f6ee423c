"""A bilevel scan keeps the detector's probe boxes unless a box runs across a gutter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.base import Region
from models.page import page_regions
from models.ppocr.bilevel import is_bilevel, probe_suffices
from models.ppocr.engine import load
from ocrq.config import EngineOptions
from ocrq.results import page_text
from ocrq.scoring import cer
from tests.fixtures_text import render_columns
from tests.test_ppocr_scales import _passes

LEFT = [
    "The quick brown fox jumps over",
    "the lazy dog while the farmer",
    "counts his sheep in the field",
    "and the miller grinds his corn",
    "beside the river that runs down",
    "to the town where the market is",
    "held on every second Saturday",
    "from early spring until autumn.",
]
RIGHT = [
    "Pack my box with six dozen jugs",
    "of the finest liquor in the land",
    "said the merchant to his clerk,",
    "who wrote it all down in a book",
    "bound in red leather with gold",
    "letters on its spine and a lock",
    "to keep its secrets from anyone",
    "who might come looking for them.",
]


def _rect(x0: float, y0: float, x1: float, y1: float) -> Region:
    return Region(quad=((x0, y0), (x1, y0), (x1, y1), (x0, y1)), score=0.9)


def test_is_bilevel_tells_a_scanners_text_mode_from_grey():
    page = np.full((400, 300), 255, dtype=np.uint8)
    page[100:120, 50:250] = 0
    assert is_bilevel(page)
    assert is_bilevel(np.stack([page] * 3, axis=2))  # bilevel stored as RGB
    grey = page.copy()
    grey[::4, ::20] = 128  # 5 % of the rows' pixels grey: a grey-scale scan
    assert not is_bilevel(grey)
    tinted = np.stack([page] * 3, axis=2)
    tinted[100:120, 50:250, 0] = 255  # a colour: red and black differ
    assert not is_bilevel(tinted)


def _ink_page(lines: list[list[tuple[int, int]]], line_h: int = 20, step: int = 30) -> np.ndarray:
    """A white page with a black bar for each (x0, x1) word on each line."""
    page = np.full((step * len(lines) + 100, 1000), 255, dtype=np.uint8)
    for i, words in enumerate(lines):
        y = 50 + i * step
        for x0, x1 in words:
            page[y : y + line_h, x0:x1] = 0
    return page


def test_a_box_across_a_gutter_is_seen_and_a_wide_word_space_is_not():
    # Two columns, words in 40..440 and 500..900: a 60-px gutter with nothing in it; the
    # word spaces fall elsewhere on every line, as in print.
    columns = [
        [(40, 150 + 25 * i), (170 + 25 * i, 440), (500, 600 + 30 * i), (620 + 30 * i, 900)]
        for i in range(8)
    ]
    page = _ink_page(columns)
    apart = [_rect(38, 48 + i * 30, 442, 72 + i * 30) for i in range(8)]
    apart += [_rect(498, 48 + i * 30, 902, 72 + i * 30) for i in range(8)]
    assert probe_suffices(page, apart, 1.0)
    assert probe_suffices(page, apart, 0.5)  # looked at the probe's smaller scale
    joined = apart[:3] + [_rect(38, 138, 902, 162)] + apart[4:8] + apart[8:11] + apart[12:]
    assert not probe_suffices(page, joined, 1.0)
    assert not probe_suffices(page, joined, 0.5)
    # One column, one line with a 60-px word space: the lines around it have ink there.
    prose = [[(40, 150 + 80 * i), (170 + 80 * i, 900)] for i in range(8)]
    prose[3] = [(40, 400), (460, 900)]
    single = [_rect(38, 48 + i * 30, 902, 72 + i * 30) for i in range(8)]
    assert probe_suffices(_ink_page(prose), single, 1.0)
    assert not probe_suffices(_ink_page(prose), [], 1.0)  # nothing found: no verdict


@pytest.fixture(scope="module")
def engine():
    return load(EngineOptions(precision="fp32"), Path("."))


def _two_columns(gutter: int) -> np.ndarray:
    # 34-px type on a 2000-px page: the probe sees its lines about 20 px high, above the
    # bilevel floor (17) and below the height at which the probe's boxes always stood.
    return render_columns([LEFT, RIGHT], 34, gutter, size=(2000, 1400))


def test_a_bilevel_page_of_columns_is_read_from_the_probe_alone(engine):
    image = _two_columns(gutter=80)
    passes, pairs = _passes(engine, image)
    assert len(passes) == 1  # the probe
    assert cer(page_text(page_regions(0, pairs)), "\n".join(LEFT + RIGHT)) <= 0.02


def test_the_same_page_in_grey_or_with_a_narrow_gutter_gets_the_fine_pass(engine):
    grey = _two_columns(gutter=80)
    grey[grey == 0] = 40  # a grey-scale scan of the same page
    passes, pairs = _passes(engine, grey)
    assert len(passes) == 2
    assert cer(page_text(page_regions(0, pairs)), "\n".join(LEFT + RIGHT)) <= 0.02
    narrow = _two_columns(gutter=24)  # 0.7 em: the probe reads across it
    assert len(_passes(engine, narrow)[0]) == 2


def test_the_probe_floor_can_be_turned_off(engine, monkeypatch):
    from dataclasses import replace

    off = replace(engine.detector.config, bilevel_probe_height=0)
    monkeypatch.setattr(engine.detector, "config", off)
    assert len(_passes(engine, _two_columns(gutter=80))[0]) == 2
