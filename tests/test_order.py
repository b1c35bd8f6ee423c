from __future__ import annotations

from models.base import Region
from models.order import group_lines, reading_order


def box(x0, y0, x1, y1):
    return Region(quad=((x0, y0), (x1, y0), (x1, y1), (x0, y1)), score=0.9)


def test_lines_top_to_bottom_words_left_to_right():
    regions = [
        box(300, 102, 400, 130),  # line 2, right
        box(10, 10, 100, 40),  # line 1, left
        box(10, 100, 200, 128),  # line 2, left
        box(150, 14, 280, 42),  # line 1, right (slightly lower baseline)
    ]
    assert group_lines(regions) == [[1, 3], [2, 0]]
    assert reading_order(regions) == [1, 3, 2, 0]


def test_skewed_line_stays_one_line_but_close_lines_do_not_merge():
    regions = [box(0, 0, 100, 20), box(110, 8, 210, 28), box(0, 24, 100, 44)]
    # box 1 overlaps box 0 by 12/20 (same line); box 2 overlaps line 1 by 4/20 only
    assert group_lines(regions) == [[0, 1], [2]]


def test_empty():
    assert reading_order([]) == []


def test_two_columns_with_offset_baselines_do_not_chain_lines():
    # Left column lines at y = 0, 30, 60; right column lines offset by half a line.
    # Each box must stay with its side-by-side neighbour only.
    left = [box(0, y, 200, y + 20) for y in (0, 30, 60)]
    right = [box(300, y, 500, y + 20) for y in (12, 42, 72)]
    regions = left + right
    for line in group_lines(regions):
        ys = [regions[i].bbox[1] for i in line]
        assert max(ys) - min(ys) <= 12, line  # only side-by-side boxes share a line
    left_order = [i for i in reading_order(regions) if i < 3]
    assert left_order == [0, 1, 2]


def test_stacked_boxes_never_share_a_line():
    # a tall box (drop cap) beside two lines must not merge the two lines into one
    regions = [box(0, 0, 40, 60), box(50, 0, 400, 28), box(50, 32, 400, 60)]
    lines = group_lines(regions)
    assert not any({1, 2} <= set(line) for line in lines)
