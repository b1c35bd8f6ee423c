"""models.layout: reading order, blocks, paragraphs and kinds from text-line boxes.

Synthetic boxes pin the rules (and that single-column pages keep `reading_order`'s order
exactly); rendered pages through the real PP-OCR engine check them on real detections.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from models.base import Region
from models.crops import crop_quad
from models.layout import KINDS, layout
from models.order import reading_order
from ocrq.scoring import cer
from tests.fixtures_text import SAMPLE_LINES, load_font, render_line, render_page


def box(x0, y0, x1, y1):
    return Region(quad=((x0, y0), (x1, y0), (x1, y1), (x0, y1)), score=0.9)


def turned(regions, degrees, centre=(0.0, 0.0)):
    """The regions' quads turned by `degrees` about `centre` (a skewed scan)."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    cx, cy = centre

    def turn(p):
        x, y = p[0] - cx, p[1] - cy
        return (cx + c * x - s * y, cy + s * x + c * y)

    return [Region(quad=tuple(turn(p) for p in r.quad), score=r.score) for r in regions]


def column(x0, y0, n, width=400, h=20, pitch=30, indent=(), short=(), gap_after=(), extra=12):
    """Boxes of one column of n lines; `indent`/`short`/`gap_after` list line numbers
    (`extra` pixels of space after a line in `gap_after`)."""
    out, y = [], y0
    for k in range(n):
        left = x0 + (30 if k in indent else 0)
        right = x0 + (width // 2 if k in short else width)
        out.append(box(left, y, right, y + h))
        y += pitch + (extra if k in gap_after else 0)
    return out


def texts(result, regions, labels):
    return [labels[regions.index(r)] for r in (regions[i] for i in result.order)]


# -- synthetic boxes ------------------------------------------------------------------------


def test_empty_and_single():
    assert layout([], (100, 100)).order == ()
    one = layout([box(10, 10, 200, 30)], (100, 300))
    assert one.order == (0,) and one.block == (0,) and one.paragraph == (0,)
    assert one.line == (0,) and one.kinds == ("text",)


def random_single_column(rng):
    """A single-column page as a detector might box it: lines of one or more boxes (words
    far apart, right-aligned amounts, a header row with a page number), paragraph gaps,
    indents, headings, jitter and sometimes a skew."""
    h = float(rng.uniform(14, 60))
    pitch = h * float(rng.uniform(0.95, 2.0))
    width = float(rng.uniform(15, 40)) * h
    left, y = float(rng.uniform(20, 200)), float(rng.uniform(20, 200))
    regions = []
    for _ in range(int(rng.integers(1, 45))):
        lh = h * (1.6 if rng.random() < 0.05 else 1.0)
        x0 = left + (2 * h if rng.random() < 0.2 else 0.0)
        x1 = left + width * float(rng.uniform(0.3, 1.0))
        parts = int(rng.choice([1, 1, 1, 2, 3]))
        cuts = np.sort(rng.uniform(x0, x1, parts - 1))
        edges = [x0, *cuts, x1]
        for a, b in zip(edges, edges[1:], strict=False):
            space = float(rng.uniform(0.3, 3.0)) * h if b != x1 else 0.0
            if b - space - a > h:
                jitter = float(rng.normal(0, h * 0.05))
                regions.append(box(a, y + jitter, b - space, y + lh + jitter))
        if rng.random() < 0.1:  # a right-aligned amount
            regions.append(box(left + width - 4 * h, y, left + width, y + lh))
        y += pitch + (lh - h) + (float(rng.uniform(0.5, 3)) * h if rng.random() < 0.15 else 0)
    if regions and rng.random() < 0.3:
        regions = turned(regions, float(rng.uniform(-3, 3)), (left, 0.0))
    order = rng.permutation(len(regions))
    return [regions[i] for i in order], (int(y + 200), int(left + width + 200))


def test_single_column_pages_read_exactly_as_reading_order():
    rng = np.random.default_rng(7)
    for _ in range(400):
        regions, shape = random_single_column(rng)
        result = layout(regions, shape)
        assert list(result.order) == reading_order(regions)
        assert sorted(result.order) == list(range(len(regions)))


def test_receipt_rows_stay_one_line_in_one_block():
    # items on the left, amounts right-aligned: "Milk ..... 1.20" boxed as two regions
    items = ["Milk", "Bread wholemeal", "Eggs x12", "Butter", "Coffee beans 1kg", "Apples"]
    regions, labels = [], []
    for k, name in enumerate(items):
        y = 100 + 40 * k
        regions += [box(20, y, 20 + 14 * len(name), y + 24), box(400, y + 2, 470, y + 26)]
        labels += [name, f"price {k}"]
    regions.append(box(20, 380, 120, 404))  # TOTAL, after a gap
    regions.append(box(390, 380, 470, 404))
    labels += ["TOTAL", "sum"]
    result = layout(regions, (500, 500))
    assert list(result.order) == reading_order(regions)
    assert texts(result, regions, labels)[:4] == ["Milk", "price 0", "Bread wholemeal", "price 1"]
    for k in range(len(items) + 1):
        a, b = 2 * k, 2 * k + 1
        assert result.line[a] == result.line[b] and result.block[a] == result.block[b]
    assert len({result.block[i] for i in range(2 * len(items))}) == 1


def test_two_columns_read_column_by_column_heading_first_number_last():
    # heading over two columns with offset baselines, page number centred at the bottom
    heading = [box(200, 20, 700, 60)]
    left = column(50, 100, 12, gap_after=(5,), indent=(6,))
    right = column(500, 110, 12, gap_after=(5,), indent=(0, 6))
    number = [box(440, 580, 470, 600)]
    regions = heading + left + right + number
    result = layout(regions, (640, 960))
    assert list(result.order) == list(range(len(regions)))
    blocks = result.blocks()
    assert [len(b) for b in blocks] == [1, 12, 12, 1]
    assert result.kinds == ("heading", "text", "text", "page-number")
    # paragraphs: left column breaks at its gap (line 6); right one at its gap too
    paras = [result.paragraph[i] for i in range(1, 13)]
    assert paras == [paras[0]] * 6 + [paras[0] + 1] * 6
    assert [result.line[i] for i in range(1, 13)] == list(range(12))
    # numbered across the page: heading 0, left column 1-12, right column 13-24, number 25
    assert result.page_lines() == tuple(range(len(regions)))


def test_a_tight_magazine_gutter_still_splits_columns():
    # boxes 20 px tall (the detector's, padded past the ink) 8 px apart across the gutter:
    # a 1.5 em gutter of ink once the padding is taken off
    left = column(50, 100, 12)
    right = column(458, 100, 12)
    regions = left + right
    result = layout(regions, (600, 900))
    assert list(result.order) == list(range(len(regions)))
    assert [len(b) for b in result.blocks()] == [12, 12]


def test_a_caption_across_the_gutter_inside_the_columns_is_read_after_them():
    # a picture between two columns, the lines beside it short (wrapped around it), its
    # caption (short centred lines) across the gutter, column text above and below it:
    # the columns first, the caption after them
    wrapped = (6, 7, 8, 9)
    left = column(50, 100, 16, short=wrapped)
    right = column(500, 100, 16)
    for k in wrapped:
        x0, y0, x1, y1 = right[k].bbox
        right[k] = box(x0 + 200, y0, x1, y1)
    caption = [box(380, 285 + 25 * k, 570, 301 + 25 * k) for k in range(4)]
    regions = left + right + caption
    result = layout(regions, (800, 960))
    assert list(result.order) == list(range(len(regions)))
    assert [len(b) for b in result.blocks()] == [16, 16, 4]


def test_blank_lines_both_columns_share_do_not_interleave_them():
    # a blank line at the same height in both columns: a full-width gap as wide as the
    # heading's; the gutter below the heading still splits the columns first
    heading = [box(200, 20, 700, 60)]
    cols = [column(x, 90, 12, gap_after=(3, 7), extra=30) for x in (50, 500)]
    regions = heading + cols[0] + cols[1]
    result = layout(regions, (600, 960))
    assert list(result.order) == list(range(len(regions)))
    assert [len(b) for b in result.blocks()] == [1, 4, 4, 4, 4, 4, 4]


def test_three_columns_with_title_and_number_over_the_middle_column_only():
    title = [box(520, 20, 820, 50)]  # larger print over the middle column only
    cols = [column(60 + 460 * c, 100, 10, width=400) for c in range(3)]
    number = [box(650, 450, 690, 470)]
    regions = title + cols[0] + cols[1] + cols[2] + number
    shuffled = list(reversed(regions))
    result = layout(shuffled, (500, 1400))
    assert [shuffled[i] for i in result.order] == regions
    assert result.kinds[0] == "heading" and result.kinds[-1] == "page-number"


def test_running_head_over_two_columns_is_read_first():
    head = [box(50, 20, 300, 40), box(860, 20, 900, 40)]  # "SECRETS" ... "13"
    regions = head + column(50, 80, 8) + column(500, 80, 8)
    result = layout(regions, (400, 950))
    assert list(result.order) == list(range(len(regions)))
    assert result.kinds[0] == "header" and len(result.blocks()[0]) == 2


def test_spread_keeps_each_pages_head_and_foot():
    # two pages side by side (a gutter of 10 line heights): each head, body, page number
    # belongs to its own page
    def page(x):
        return (
            [box(x + 150, 20, x + 250, 40)] + column(x, 80, 10) + [box(x + 190, 420, x + 210, 440)]
        )

    regions = page(0) + page(600)
    result = layout(regions, (460, 1000))
    assert list(result.order) == list(range(len(regions)))
    assert result.kinds == ("header", "text", "page-number") * 2


def test_skewed_two_columns_still_read_by_column():
    regions = column(50, 100, 15) + column(500, 100, 15)
    for degrees in (-3, 3):
        skewed = turned(regions, degrees, (450, 300))
        assert list(layout(skewed, (700, 1000)).order) == list(range(30))


def test_short_boxes_side_by_side_are_a_table_not_columns():
    # two columns of single words: no prose on either side, read row by row as today
    regions = [box(x, 50 + 30 * k, x + 60, 70 + 30 * k) for k in range(8) for x in (50, 400)]
    assert list(layout(regions, (400, 500)).order) == reading_order(regions)


def test_paragraphs_from_indent_and_spacing():
    regions = column(50, 50, 9, indent=(0, 4), short=(3, 5), gap_after=(5,))
    result = layout(regions, (500, 500))
    assert result.paragraph == (0, 0, 0, 0, 1, 1, 2, 2, 2)
    assert len(result.kinds) == 1
    # a centred block (most lines "indented") gets no paragraphs from indents
    centred = [
        box(50 + 40 * (k % 2), 50 + 30 * k, 450 - 40 * (k % 2), 70 + 30 * k) for k in range(7)
    ]
    assert set(layout(centred, (300, 500)).paragraph) == {0}


def test_kinds_heading_caption_footer():
    heading = [box(40, 20, 460, 60)]  # taller print
    body = column(40, 100, 5, width=420)
    caption = [box(100, 600, 400, 620)]  # under an empty picture-sized space
    body2 = column(40, 660, 4, width=420)
    footer = [box(40, 860, 300, 878)]
    regions = heading + body + caption + body2 + footer
    result = layout(regions, (900, 500))
    assert list(result.order) == list(range(len(regions)))
    assert result.kinds == ("heading", "text", "caption", "text", "footer")
    assert set(result.kinds) <= set(KINDS)


def test_cost_is_negligible_on_200_boxes():
    rng = np.random.default_rng(1)
    regions = [
        box(50 + 550 * c, 40 + 30 * k, 50 + 550 * c + int(rng.integers(300, 500)), 60 + 30 * k)
        for c in range(2)
        for k in range(100)
    ]
    layout(regions, (3100, 1200))
    t0 = time.perf_counter()
    for _ in range(10):
        layout(regions, (3100, 1200))
    per_page = (time.perf_counter() - t0) / 10
    assert per_page < 0.05, per_page  # ~5 ms measured; a page takes ~1 s to read


# -- rendered pages through the real engine -------------------------------------------------

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
]
HEIGHT = 32


def paragraphs(seed, count=2, lines=4, width=480):
    """Filled lines of random words: `count` paragraphs, the last line of each short."""
    rng = np.random.default_rng(seed)
    font = load_font("DejaVuSans.ttf", int(round(HEIGHT * 0.6)))
    out = []
    for _ in range(count):
        para = []
        for k in range(lines):
            limit = width * (0.5 if k == lines - 1 else 1.0) - (40 if k == 0 else 0)
            words = [str(rng.choice(WORDS))]
            while font.getlength(" ".join([*words, "xxxxxxx"])) <= limit:
                words.append(str(rng.choice(WORDS)))
            para.append(" ".join(words))
        out.append(para)
    return out


def render_column(paras, width=520, margin=20):
    """Paragraphs set with a first-line indent, one line pitch of 1.6 x HEIGHT."""
    font = load_font("DejaVuSans.ttf", int(round(HEIGHT * 0.6)))
    n = sum(len(p) for p in paras)
    image = Image.new("RGB", (width, int(2 * margin + 1.6 * HEIGHT * n)), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    k = 0
    for para in paras:
        for j, text in enumerate(para):
            y = margin + 1.6 * HEIGHT * k + HEIGHT / 2
            draw.text((margin + (40 if j == 0 else 0), y), text, font=font, fill=0, anchor="lm")
            k += 1
    return np.asarray(image).copy()


def compose(ncols, heading="A Heading Across The Columns", number="17", gutter=40):
    """Columns pasted side by side, a heading centred above them, a page number below."""
    cols = [paragraphs(c) for c in range(ncols)]
    images = [render_column(c) for c in cols]
    width = sum(i.shape[1] for i in images) + gutter * (ncols - 1)
    body = np.full((max(i.shape[0] for i in images), width, 3), 255, np.uint8)
    x = 0
    for image in images:
        body[: image.shape[0], x : x + image.shape[1]] = image
        x += image.shape[1] + gutter
    parts = []
    for text, height, pad in ((heading, 56, 120), (number, HEIGHT, 100)):
        strip = np.full((pad, width, 3), 255, np.uint8)
        line = render_line(text, height=height)
        x0 = (width - line.shape[1]) // 2
        strip[30 : 30 + line.shape[0], x0 : x0 + line.shape[1]] = line
        parts.append(strip)
    page = np.concatenate([parts[0], body, parts[1]])
    return page, cols, [(i * (520 + gutter), (i + 1) * 520 + i * gutter) for i in range(ncols)]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from models.registry import load_engine
    from ocrq.config import EngineOptions

    return load_engine(EngineOptions(precision="fp32"), tmp_path_factory.mktemp("models"), 1)


def read_in(engine, page, regions, order):
    lines = engine.recognizer.recognize([crop_quad(page, regions[i].quad) for i in order])
    return [t.text for t in lines]


@pytest.mark.parametrize("ncols", [2, 3])
def test_rendered_columns_heading_and_page_number(engine, ncols):
    page, cols, spans = compose(ncols)
    regions = engine.detector.detect(page)
    result = layout(regions, page.shape[:2])
    truth = ["A Heading Across The Columns"]
    truth += [line for col in cols for para in col for line in para] + ["17"]
    got = read_in(engine, page, regions, result.order)
    assert cer("\n".join(got), "\n".join(truth)) <= 0.02, got
    old = read_in(engine, page, regions, reading_order(regions))
    assert cer("\n".join(old), "\n".join(truth)) > 0.3  # today's order interleaves
    blocks = result.blocks()
    assert result.kinds == ("heading",) + ("text",) * ncols + ("page-number",)
    for (x0, x1), members in zip(spans, blocks[1:-1], strict=True):
        centres = [(regions[i].bbox[0] + regions[i].bbox[2]) / 2 for i in members]
        assert all(x0 <= c <= x1 for c in centres) and len(members) == 8
        assert [result.line[i] for i in members] == list(range(8))
        paras = [result.paragraph[i] for i in members]
        assert paras == [paras[0]] * 4 + [paras[0] + 1] * 4


def test_rendered_single_column_pages_keep_todays_order(engine):
    pages = [
        render_page(SAMPLE_LINES, height=36),
        render_page(SAMPLE_LINES * 3 + ["", "Page 3"], height=28, spacing=1.3),
        render_page(["CHAPTER ONE", ""] + [" ".join(WORDS[k : k + 6]) for k in range(20)]),
    ]
    for page in pages:
        regions = engine.detector.detect(page)
        assert len(regions) >= 4
        assert list(layout(regions, page.shape[:2]).order) == reading_order(regions)


def test_rendered_receipt_rows_stay_lines(engine):
    rows = [("Milk", "1.20"), ("Bread", "2.05"), ("Eggs x12", "3.99"), ("Tea", "4.50")]
    rows += [("Coffee beans", "12.00"), ("TOTAL", "23.74")]
    font = load_font("DejaVuSans.ttf", 22)
    image = Image.new("RGB", (620, 80 + 50 * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for k, (item, price) in enumerate(rows):
        y = 60 + 50 * k
        draw.text((40, y), item, font=font, fill=0, anchor="lm")
        draw.text((580, y), price, font=font, fill=0, anchor="rm")
    page = np.asarray(image).copy()
    regions = engine.detector.detect(page)
    result = layout(regions, page.shape[:2])
    assert list(result.order) == reading_order(regions)
    got = read_in(engine, page, regions, result.order)
    assert cer(" ".join(got), " ".join(f"{a} {b}" for a, b in rows)) <= 0.05, got
    assert len(set(result.block)) == 1
    by_line = {}
    for i in result.order:
        by_line.setdefault(result.line[i], []).append(i)
    assert len(by_line) == len(rows)
