"""`ocrq bench --compose` (issue #30): column and turned pages composed from a page set,
whole-page scoring of zoned pages beside zone-by-zone scoring, the run's layout notes,
and the option end to end on rendered pages (fixtures made here, never the eval data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bench.command import bench
from bench.compose import (
    column_groups,
    column_zones,
    compose_sets,
    composed_sets,
    parse_kinds,
    paste,
    turn,
)
from bench.evalsets import (
    Conventions,
    Item,
    discover,
    read_zones,
    score_item,
    score_whole_page,
    whole_page_text,
)
from bench.layoutcheck import layout_notes
from bench.report import Row
from ocrq.errors import UsageError
from tests.fixtures_text import render_line, render_page

BOOK = [
    ["The first page of", "the book begins."],
    ["A second page with", "more of the story."],
    ["The third page ends", "the short chapter."],
]


def _book(root: Path, name: str = "oldbooks") -> Path:
    """Three bilevel pages of different sizes, with truth, in a folder named `name`."""
    folder = root / name
    folder.mkdir(parents=True)
    for i, lines in enumerate(BOOK):
        gray = render_page(lines, width=520 + 40 * i)[:, :, 0]
        Image.fromarray(np.where(gray < 128, 0, 255).astype(np.uint8)).convert("1").save(
            folder / f"p{i}.png"
        )
        (folder / f"p{i}.gt.txt").write_text(" ".join(lines), encoding="utf-8")
    return folder


def test_pages_are_pasted_side_by_side_at_their_own_size():
    left = np.zeros((30, 20), np.uint8)
    right = np.full((50, 10), 7, np.uint8)
    canvas = paste([left, right])
    assert canvas.shape == (50, 30) and canvas.dtype == np.uint8
    assert (canvas[:30, :20] == 0).all() and (canvas[30:, :20] == 255).all()  # white below
    assert (canvas[:, 20:] == 7).all()
    assert column_zones([left, right]) == [(0, 0, 20, 30), (20, 0, 30, 50)]
    colour = paste([left, np.zeros((10, 5, 4), np.uint8)])  # one RGBA page: all RGB
    assert colour.shape == (30, 25, 3)


def test_groups_take_spreads_and_wrapping_triples():
    assert column_groups(10, 2) == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert column_groups(5, 2) == [(0, 1), (2, 3)]
    assert column_groups(10, 3)[-1] == (8, 9, 0) and len(column_groups(10, 3)) == 5
    assert column_groups(2, 3) == []


def test_turn_is_counterclockwise_and_contiguous():
    page = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert turn(page, 90).shape == (3, 2) and turn(page, 90)[0, 0] == 2
    assert (turn(page, 180) == page[::-1, ::-1]).all()
    assert turn(page, 270).flags["C_CONTIGUOUS"]


def test_composed_sets_carry_truth_zones_and_the_sources_conventions(tmp_path):
    (source,) = discover([_book(tmp_path)])
    folders = compose_sets([source], ("columns", "rotated"), tmp_path / "out")
    names = [f.name for f in folders]
    assert names == [
        "oldbooks-2col",
        "oldbooks-3col",
        "oldbooks-rot90",
        "oldbooks-rot180",
        "oldbooks-rot270",
    ]
    sets = {s.name: s for s in discover(folders)}
    assert all(s.conventions.dehyphenate for s in sets.values())  # oldbooks' conventions
    (two,) = sets["oldbooks-2col"].items  # a spread: pages 0 and 1
    assert two.name == "p0+p1"
    assert (
        two.reference()
        == "The first page of the book begins.\n\nA second page with more of the story."
    )
    with Image.open(two.image) as picture:
        assert picture.mode == "1"  # bilevel stays bilevel
        assert picture.size == (520 + 560, Image.open(source.items[1].image).size[1])
    assert read_zones(two.zones) == [
        (0, 0, 520, two_h := _height(source, 0)),
        (520, 0, 1080, _height(source, 1)),
    ]
    assert two_h > 0
    assert len(sets["oldbooks-3col"].items) == 2  # triples starting at pages 0 and 2
    turned = sets["oldbooks-rot90"].items
    assert [i.name for i in turned] == ["p0-rot90", "p1-rot90", "p2-rot90"]
    assert turned[0].zones is None and turned[0].reference() == source.items[0].reference()
    with Image.open(turned[0].image) as picture, Image.open(source.items[0].image) as upright:
        assert picture.size == upright.size[::-1]


def _height(evalset, index: int) -> float:
    with Image.open(evalset.items[index].image) as picture:
        return float(picture.size[1])


def test_only_whole_page_truth_is_composed(tmp_path):
    _book(tmp_path / "root")
    lines = tmp_path / "root" / "lines"
    lines.mkdir()
    for i in range(3):
        Image.fromarray(render_line(f"line {i}", height=40)).save(lines / f"l{i}.png")
        (lines / f"l{i}.gt.txt").write_text(f"line {i}")
    zoned = tmp_path / "root" / "oldbooks" / "p0.uzn"
    zoned.write_text("0 0 100 100 Text\n")  # a UNLV-style page: its truth covers its zones
    sets = discover([tmp_path / "root"])
    made = composed_sets(sets, ("rotated",), (), tmp_path / "out")
    assert [s.name for s in made] == ["oldbooks-rot90", "oldbooks-rot180", "oldbooks-rot270"]
    assert [i.name for i in made[0].items] == ["p1-rot90", "p2-rot90"]
    with pytest.raises(UsageError, match="compose-from"):
        composed_sets(sets, ("rotated",), ("sroie",), tmp_path / "out2")
    with pytest.raises(UsageError, match="no page set"):
        composed_sets(sets, ("rotated",), ("lines",), tmp_path / "out3")


def test_compose_kinds_are_parsed_and_checked():
    assert parse_kinds(["columns,rotated", "columns"]) == ("columns", "rotated")
    assert parse_kinds([]) == ()
    with pytest.raises(UsageError, match="choose from"):
        parse_kinds(["colums"])


def _zoned(tmp_path: Path, truth: str, zones: str) -> Item:
    (tmp_path / "x.gt.txt").write_text(truth, encoding="utf-8")
    (tmp_path / "x.uzn").write_text(zones)
    return Item("x", tmp_path / "x.png", tmp_path / "x.gt.txt", tmp_path / "x.uzn")


def test_whole_page_keeps_the_engines_order_inside_the_zones(tmp_path):
    item = _zoned(
        tmp_path,
        "left one\nleft two\n\nright one\nright two",
        "0 0 100 100 Text\n100 0 100 100 Text\n",
    )
    by_columns = [
        (0, 0, 90, 10, "left one"),
        (0, 20, 90, 30, "left two"),
        (100, 0, 190, 10, "right one"),
        (100, 20, 190, 30, "right two"),
        (300, 0, 390, 10, "outside any zone"),
    ]
    across = [by_columns[i] for i in (0, 2, 1, 3, 4)]  # rows read across both columns
    zones = read_zones(item.zones)
    assert whole_page_text(across, zones).split("\n") == [
        "left one",
        "right one",
        "left two",
        "right two",
    ]
    conventions = Conventions()
    assert score_whole_page(item, conventions, by_columns) == (0, 37)
    wrong, n = score_whole_page(item, conventions, across)
    assert n == 37 and wrong > 0
    assert score_item(item, conventions, "", across) == (0, 37)  # zone by zone: order-free
    no_zones = Item("y", tmp_path / "y.png", item.truth)
    assert score_whole_page(no_zones, conventions, by_columns) is None


def test_layout_notes_compare_whole_page_with_zones_and_turned_with_upright():
    rows = [
        Row("queue", "oldbooks", 2, cer=0.0075),
        Row("queue", "oldbooks-rot90", 2, cer=0.0080),
        Row("queue", "oldbooks-2col", 2, cer=0.0080, cer_whole_page=0.0100),
        Row("tesseract", "oldbooks-rot90", 2, cer=0.85),  # no upright row of its own
        Row("rapidocr", "oldbooks", 2, status="not installed (rapidocr)"),
    ]
    notes = layout_notes(rows)
    assert notes == [
        "oldbooks-rot90 / queue: 0.80 % against 0.75 % upright (+0.05 points)",
        "oldbooks-2col / queue: whole page 1.00 % against 0.80 % zone by zone (+0.20 points)",
    ]


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract not installed")
def test_bench_compose_runs_the_composed_sets_beside_the_given_ones(tmp_path):
    folder = _book(tmp_path)
    out = tmp_path / "bench.json"
    args = [str(folder), "--compose", "columns", "--compose", "rotated", "-r", "tesseract@1"]
    result = CliRunner().invoke(bench, args + ["--no-warmup", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    rows = {r["set"]: r for r in data["rows"]}
    assert list(rows) == [
        "oldbooks",
        "oldbooks-2col",
        "oldbooks-3col",
        "oldbooks-rot90",
        "oldbooks-rot180",
        "oldbooks-rot270",
    ]
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows["oldbooks"]["cer"] < 0.05 and rows["oldbooks"]["cer_whole_page"] is None
    # scored both ways (Tesseract reads two short columns' rows as one line each, across
    # the gutter, so no figure is asserted for it here)
    assert rows["oldbooks-2col"]["cer"] is not None
    assert rows["oldbooks-2col"]["cer_whole_page"] is not None
    assert rows["oldbooks-rot180"]["cer_whole_page"] is None  # no zones: one score
    assert "CER whole" in result.output and "reading order and turned pages" in result.output
    assert data["meta"]["compose"] == ["columns", "rotated"]


def test_bench_compose_refuses_unknown_kinds_and_pdf_mixes(tmp_path):
    folder = _book(tmp_path)
    for extra in (
        ["--compose", "diagonal"],
        ["--compose-from", "oldbooks"],
        ["--pdf", "--compose", "rotated"],
    ):
        result = CliRunner().invoke(bench, [str(folder), "-r", "tesseract", *extra])
        assert result.exit_code == UsageError.exit_code, (extra, result.output)
