"""Lines read across a column gutter are cut there; the layout sees the words' extents."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.base import Region, TextLine
from models.gutters import inked, split_at_gutters
from models.page import page_regions, read_page
from models.ppocr.engine import load
from ocrq.config import EngineOptions
from ocrq.results import page_text
from ocrq.scoring import cer
from tests.fixtures_text import render_columns
from tests.test_ppocr_bilevel import LEFT, RIGHT

HEIGHT = 40  # every line's box height, in page pixels


def _line(y: float, words: list[tuple[str, float, float]], pad: float = 10) -> tuple:
    """A line box around `words` ((word, page x0, page x1)) at `y`, padded as the
    detector pads, with the words placed in its crop's columns."""
    x0, x1 = words[0][1] - pad, words[-1][2] + pad
    quad = ((x0, y), (x1, y), (x1, y + HEIGHT), (x0, y + HEIGHT))
    spans = tuple((w, a - x0, b - x0, 0.9) for w, a, b in words)
    text = " ".join(w for w, *_ in words)
    return Region(quad=quad, score=0.8), TextLine(text=text, confidence=0.9, words=spans)


def _column_lines(row: int, x: float, shift: int) -> list[tuple[str, float, float]]:
    """Four words filling 400 px from x, their spaces moved by `shift` from row to row."""
    cuts = [x, x + 90 + shift, x + 200 - shift, x + 300 + shift, x + 400]
    return [(f"w{row}{i}", cuts[i] + (8 if i else 0), cuts[i + 1] - 8) for i in range(4)]


def _two_columns(joined_row: int | None = None) -> list[tuple]:
    """Eight rows of two 400-px columns with a 50-px gutter (x 450..500); `joined_row`
    read as one line across it."""
    pairs = []
    for row in range(8):
        y, shift = 100 + row * 60, (row * 7) % 20
        left, right = _column_lines(row, 50, shift), _column_lines(row + 10, 500, -shift)
        if row == joined_row:
            pairs.append(_line(y, left + right))
        else:
            pairs += [_line(y, left), _line(y, right)]
    return pairs


def test_a_line_across_the_gutter_is_cut_in_two_where_the_others_leave_it_blank():
    pairs = _two_columns(joined_row=3)
    out = split_at_gutters(pairs)
    assert len(out) == 16
    apart = _two_columns()
    left, right = out[6], out[7]
    assert left[1].text == apart[6][1].text and right[1].text == apart[7][1].text
    assert left[0].bbox[2] < 460 and right[0].bbox[0] > 490  # cut tight to the words
    # ... and the outer ends are the joined line's own
    assert left[0].bbox[0] == pytest.approx(40) and right[0].bbox[2] == pytest.approx(902)
    # words stay on their printed boxes: each part's spans start at its own crop
    assert right[1].words[0][1] == pytest.approx(500 + 0 - right[0].bbox[0], abs=1)
    assert split_at_gutters(apart) == apart  # nothing across: nothing cut


def test_a_wide_word_space_in_one_column_is_not_cut():
    pairs = []
    for row in range(8):
        words = _column_lines(row, 50, (row * 13) % 40)
        if row == 3:  # a 60-px space: the lines around it have words there
            words = [(words[0][0], 58, 150), (words[1][0], 210, 260), *words[2:]]
        pairs.append(_line(100 + row * 60, words))
    assert split_at_gutters(pairs) == pairs


def test_a_heading_over_the_gutter_is_not_cut():
    pairs = _two_columns()
    heading = _line(20, [("Big", 300, 440), ("Title", 510, 700)])
    tall = (
        Region(
            quad=((290, 10), (710, 10), (710, 10 + 2 * HEIGHT), (290, 10 + 2 * HEIGHT)), score=0.8
        ),
        heading[1],
    )
    assert split_at_gutters([tall, *pairs]) == [tall, *pairs]


def test_inked_narrows_a_box_to_its_words():
    region, line = _line(100, [("one", 100, 180), ("two", 200, 300)], pad=30)
    x0, y0, x1, y1 = inked(region, line).bbox
    assert (x0, x1) == (pytest.approx(96), pytest.approx(304))  # a tenth of a line height
    assert (y0, y1) == (100, 140)
    bare = TextLine("one two", 0.9, None)
    assert inked(region, bare) is region  # words not placed: as detected
    speck, one = _line(100, [("1", 300, 303)], pad=25)  # a character at a speck box's edge
    assert inked(speck, one) is speck


@pytest.fixture(scope="module")
def engine():
    return load(EngineOptions(precision="fp32"), Path("."))


def test_justified_columns_one_em_apart_are_read_column_by_column(engine):
    """Justified type (34 px) with a 34-px gutter: the detector's padded boxes close
    it, and it joins some lines across it."""
    image = render_columns([LEFT, RIGHT], 34, 34, size=(2000, 1500))
    text = page_text(page_regions(0, read_page(engine, image)))
    assert cer(text, "\n".join(LEFT + RIGHT)) <= 0.03, text
