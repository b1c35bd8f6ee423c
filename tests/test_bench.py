"""`ocrq bench`: eval-set discovery, the scoring conventions, runner parsing, and real runs
of the command (our engine and the Tesseract CLI in pinned processes) on rendered pages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bench.command import bench
from bench.evalsets import (
    Conventions,
    Item,
    discover,
    read_zones,
    score_item,
    zone_text,
)
from bench.pool import run_pool
from bench.report import (
    Row,
    add_ratios,
    chart_grid,
    draw_chart,
    format_table,
    percentile,
)
from bench.runners import parse_runner, parse_tsv, ppocr_config
from ocrq.errors import UsageError
from tests.fixtures_text import render_line, render_page, render_runs

PAGE_TEXTS = [
    ["Invoice 2024-118", "Total due 1,234.50 EUR"],
    ["The quick brown fox", "jumps over the lazy dog."],
    ["Reading order runs", "top to bottom."],
]


def _save(image: np.ndarray, path: Path, truth: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    path.with_name(path.stem + ".gt.txt").write_text(truth, encoding="utf-8")
    return path


def _tree(root: Path) -> Path:
    """A small eval tree shaped like ../shared/eval: lines/, pages/{sroie,oldbooks,unlv}."""
    _save(render_line("A line of text", height=40), root / "lines" / "l1.png", "A line of text")
    _save(render_line("Second line", height=40), root / "lines" / "l2.png", "Second line")
    page = render_page(["TOTAL 5.00"])
    _save(page, root / "pages" / "sroie" / "r1.png", "TOTAL 5.00")
    _save(render_page(["an exam-", "ple here"]), root / "pages" / "oldbooks" / "b1.png", "x")
    unlv = _save(page, root / "pages" / "unlv" / "u1.png", "TOTAL 5.00")
    unlv.with_suffix(".uzn").write_text("10 20 300 40 Text\n")
    Image.fromarray(page).save(root / "pages" / "unlv" / "no_truth.png")  # ignored
    return root


def test_discover_finds_every_set_with_its_conventions(tmp_path):
    sets = {s.name: s for s in discover([_tree(tmp_path / "eval")])}
    assert set(sets) == {"lines", "sroie", "oldbooks", "unlv"}
    assert [i.name for i in sets["lines"].items] == ["l1", "l2"]
    assert sets["lines"].conventions == Conventions(line_images=True)
    assert sets["sroie"].conventions == Conventions(casefold=True)
    assert sets["oldbooks"].conventions == Conventions(dehyphenate=True)
    assert sets["unlv"].conventions == Conventions()
    (unlv,) = sets["unlv"].items  # the image without truth is not an item
    assert unlv.zones == tmp_path / "eval" / "pages" / "unlv" / "u1.uzn"
    assert sets["sroie"].items[0].zones is None
    assert [len(s.items) for s in discover([tmp_path / "eval"], limit=1)] == [1, 1, 1, 1]


def test_line_sets_are_recognized_by_shape_and_empty_folders_refused(tmp_path):
    _save(render_line("wide and short", height=36), tmp_path / "misc" / "a.png", "wide and short")
    _save(render_page(["a page", "of text", "lines"]), tmp_path / "docs" / "p.png", "a page")
    (lines,) = discover([tmp_path / "misc"])
    (pages,) = discover([tmp_path / "docs"])
    assert lines.conventions.line_images and not pages.conventions.line_images
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="gt.txt"):
        discover([tmp_path / "empty"])


def _item(tmp_path: Path, truth: str, zones: str | None = None) -> Item:
    truth_file = tmp_path / "x.gt.txt"
    truth_file.write_text(truth, encoding="utf-8")
    zone_file = None
    if zones is not None:
        zone_file = tmp_path / "x.uzn"
        zone_file.write_text(zones)
    return Item("x", tmp_path / "x.png", truth_file, zone_file)


def test_sroie_is_scored_case_insensitively(tmp_path):
    item = _item(tmp_path, "TOTAL  5.00\n")
    assert score_item(item, Conventions(casefold=True), "Total 5.00", []) == (0, 10)
    assert score_item(item, Conventions(), "Total 5.00", []) == (4, 10)


def test_oldbooks_hypothesis_is_dehyphenated(tmp_path):
    item = _item(tmp_path, "an example here")
    assert score_item(item, Conventions(dehyphenate=True), "an exam-\nple here", []) == (0, 15)
    assert score_item(item, Conventions(), "an exam-\nple here", [])[0] == 2


def test_zoned_pages_are_scored_inside_their_zones_only(tmp_path):
    item = _item(tmp_path, "Title\nbody text", zones="0 0 100 50 Text\n0 100 200 60 Text\n")
    boxes = [
        (10, 10, 60, 30, "Title"),
        (500, 10, 700, 30, "page number 7"),  # outside every zone
        (10, 110, 150, 140, "body text"),
    ]
    full_text = "\n".join(b[4] for b in boxes)
    assert score_item(item, Conventions(), full_text, boxes) == (0, 15)
    assert score_item(_item(tmp_path, "Title\nbody text"), Conventions(), full_text, boxes)[0] > 0
    assert read_zones(item.zones) == [(0, 0, 100, 50), (0, 100, 200, 160)]
    # overlapping zones never count a box twice
    assert zone_text(boxes[:1], [(0, 0, 100, 50), (0, 0, 100, 50)]).split() == ["Title"]


def test_runner_names():
    spec = parse_runner("ours-int8@1", 2)
    assert (spec.kind, spec.precision, spec.processes) == ("ours", "int8", 1)
    assert parse_runner("ours", 2).precision == "auto"  # the default engine, as workers run it
    assert parse_runner("queue", 2).precision == "auto"
    assert parse_runner("queue", 3).processes == 3
    assert parse_runner("tesseract", 2).kind == "tesseract"
    for bad in ("ours-fp16", "rapidocr-int8", "paddle", "ours@x", "ours@0", "queue[a=1]"):
        with pytest.raises(UsageError):
            parse_runner(bad, 2)


def test_engine_variants_take_settings_in_brackets():
    spec = parse_runner("ours-fp32[detector.max_side=1600; use_angle_cls=1]@1", 2)
    assert (spec.kind, spec.processes) == ("ours", 1)
    config = ppocr_config(spec.overrides)
    assert config.detector.max_side == 1600 and config.use_angle_cls is True
    assert config.recognizer == type(config.recognizer)()  # untouched
    for bad in ("detector.nope=1", "detector.max_side=big", "max_side"):
        with pytest.raises(UsageError):
            parse_runner(f"ours-fp32[{bad}]", 2)


def test_our_runners_take_another_recognizer_file():
    spec = parse_runner("queue[model=/m/rec32.onnx]@2", 2)
    assert (spec.kind, spec.model, spec.overrides, spec.processes) == (
        "queue",
        "/m/rec32.onnx",
        "",
        2,
    )
    spec = parse_runner("ours-int8[model=/m/rec32.onnx; detector.max_side=1600]", 2)
    assert spec.model == "/m/rec32.onnx" and spec.overrides == "detector.max_side=1600"
    assert parse_runner("ours", 2).model is None
    with pytest.raises(UsageError):
        parse_runner("tesseract[model=/m/rec32.onnx]", 2)


def test_tesseract_tsv_becomes_lines_with_boxes():
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    rows = [
        "5\t1\t1\t1\t1\t1\t10\t20\t30\t10\t96\tHello",
        "5\t1\t1\t1\t1\t2\t50\t22\t40\t10\t95\tworld",
        "4\t1\t1\t1\t2\t0\t10\t40\t80\t10\t-1\t",
        "5\t1\t1\t1\t2\t1\t10\t40\t80\t10\t91\tagain",
    ]
    read = parse_tsv("\n".join([header, *rows]))
    assert read.text == "Hello world\nagain"
    assert read.boxes[0] == (10.0, 20.0, 90.0, 32.0, "Hello world")
    assert read.lines == 2


def test_table_ratios_and_percentiles():
    rows = [
        Row("rapidocr", "s", 2, items=4, cer=0.05, items_per_s=0.5),
        Row("ours-fp32", "s", 2, items=4, cer=0.04, items_per_s=1.5),
        Row("ours-fp32@1", "s", 1, items=4, cer=0.04, items_per_s=1.0),
        Row("tesseract", "s", 2, status="not installed (tesseract not found)", items=4),
    ]
    add_ratios(rows)
    assert rows[1].vs_rapidocr == pytest.approx(3.0)
    assert rows[2].vs_rapidocr == pytest.approx(2.0)  # no 1-process RapidOCR: the one run
    table = format_table(rows)
    assert "not installed" in table and "3.00" in table and "4.00" in table
    assert percentile([3, 1, 2, 4], 50) == 2 and percentile([3, 1, 2, 4], 95) == 4
    assert percentile([], 50) is None


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract not installed")
def test_pool_pins_each_worker_to_its_own_core_and_splits_the_items(tmp_path):
    paths = [
        _save(render_page(t), tmp_path / f"p{i}.png", "\n".join(t))
        for i, t in enumerate(PAGE_TEXTS)
    ]
    spec = parse_runner("tesseract", 2)
    factory = ("bench.runners", "make_reader", (spec, str(tmp_path), "tesseract"))
    result = run_pool(factory, [(p, False) for p in paths], 2)
    assert result.error is None
    assert len(result.cores) == 2 and len(set(result.cores)) == min(2, len(_cores()))
    assert [r.index for r in result.items] == [0, 1, 2]
    assert "lazy dog" in result.items[1].text
    assert len(result.peak_rss_mb) == 2 and all(m > 5 for m in result.peak_rss_mb)


def _cores() -> list[int]:
    from ocrq.threads import allowed_cores

    return allowed_cores()


def _page_set(root: Path) -> Path:
    for i, lines in enumerate(PAGE_TEXTS):
        _save(render_page(lines), root / "pages" / f"page{i}.png", "\n".join(lines))
    return root / "pages"


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract not installed")
def test_bench_command_runs_ours_and_tesseract_and_writes_json_and_chart(tmp_path):
    folder = _page_set(tmp_path)
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    args = [str(folder), "-r", "ours-fp32", "-r", "tesseract", "--workers", "2"]
    args += ["--json", str(out_json), "--chart", str(out_png), "--models-dir", str(tmp_path)]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    assert "ours-fp32" in result.output and "tesseract" in result.output
    data = json.loads(out_json.read_text())
    rows = {r["runner"]: r for r in data["rows"]}
    assert set(rows) == {"ours-fp32", "tesseract"}
    for row in rows.values():
        assert row["status"] == "ok" and row["set"] == "pages" and row["items"] == 3
        assert row["cer"] < 0.1, row  # clean rendered text: both read it nearly perfectly
        assert row["items_per_s"] > 0 and row["p95_s"] >= row["p50_s"] > 0
        assert row["peak_rss_mb"] > 5 and row["processes"] == 2
    assert len(data["items"]) == 6
    assert {i["item"] for i in data["items"]} == {"page0.png", "page1.png", "page2.png"}
    assert data["meta"]["workers"] == 2
    with Image.open(out_png) as chart:
        assert chart.format == "PNG" and chart.size[0] > 300 and chart.size[1] > 200


def test_missing_peer_is_reported_not_installed(tmp_path):
    folder = _page_set(tmp_path)
    out_json = tmp_path / "bench.json"
    args = [str(folder), "-r", "tesseract", "--tesseract", str(tmp_path / "no-such-tesseract")]
    result = CliRunner().invoke(bench, args + ["--json", str(out_json)])
    assert result.exit_code == 0, result.output
    assert "not installed" in result.output
    (row,) = json.loads(out_json.read_text())["rows"]
    assert row["status"].startswith("not installed") and row["cer"] is None


def test_bench_refuses_a_folder_without_truth(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(bench, [str(tmp_path / "empty"), "-r", "tesseract"])
    assert result.exit_code == UsageError.exit_code
    assert "gt.txt" in result.output


BYLINE = [("Drawn by Mr. ", False), ("E", False), ("dwin ", True), ("L", False), ("andseer", True)]


def test_bench_small_caps_setting_reaches_our_engine(tmp_path):
    image, _ = render_runs(BYLINE)
    _save(image, tmp_path / "book" / "byline.png", "Drawn by Mr. Edwin Landseer")
    cer = {}
    for setting in ("keep", "lower", "auto"):
        out = tmp_path / f"{setting}.json"
        args = [str(tmp_path / "book"), "-r", "ours-fp32@1", "--small-caps", setting]
        result = CliRunner().invoke(
            bench, args + ["--json", str(out), "--models-dir", str(tmp_path)]
        )
        assert result.exit_code == 0, result.output
        data = json.loads(out.read_text())
        assert data["meta"]["small_caps"] == setting
        cer[setting] = data["rows"][0]["cer"]
    assert cer["lower"] == 0.0 and cer["keep"] > 0.2, cer  # 12 letters read as capitals
    assert cer["auto"] == 0.0, cer  # a name in running text: lowered


def test_rapidocr_reads_line_images_in_its_line_mode_and_pages_with_its_pipeline(tmp_path):
    from bench.runners import make_reader

    read = make_reader(parse_runner("rapidocr", 1), str(tmp_path))
    line = _save(render_line("Pack my box with six dozen", height=40), tmp_path / "l.png", "x")
    as_line, as_page = read(line, True), read(line, False)
    # Recognition only: the text, and no boxes (nothing was detected).
    assert as_line.text == "Pack my box with six dozen" and as_line.lines == 1
    assert as_line.boxes == []
    assert as_page.boxes and "dozen" in as_page.text  # detection ran: boxes come back
    page = _save(render_page(PAGE_TEXTS[1]), tmp_path / "p.png", "x")
    paged = read(page, False)
    assert paged.lines == 2 and "lazy dog" in paged.text


def _chart_rows(sets: list[str]) -> list[Row]:
    rows = []
    for n, name in enumerate(sets):
        for runner, cer, speed in (("queue", 0.006, 3.0), ("rapidocr", 0.045, 1.0)):
            rows.append(Row(runner, name, 2, items=4, cer=cer * (n + 1), items_per_s=speed))
    rows.append(Row("tesseract", sets[0], 2, status="not installed (tesseract)"))
    rows.append(Row("ours-fp32", sets[0], 2, items=4, cer=0.0, items_per_s=2.0))
    return rows


def test_chart_has_one_panel_per_set_two_to_a_row(tmp_path):
    assert [chart_grid(n) for n in (0, 1, 2, 3, 4, 5)] == [
        (1, 1),
        (1, 1),
        (1, 2),
        (2, 2),
        (2, 2),
        (3, 2),
    ]
    sizes = []
    for sets in (["lines"], ["lines", "sroie", "oldbooks"]):
        path = tmp_path / f"{len(sets)}.png"
        # a runner not installed is left out; a CER of 0 is drawn at the log axis' floor
        draw_chart(path, _chart_rows(sets), "test")
        with Image.open(path) as chart:
            sizes.append(chart.size)
    (w1, h1), (w3, h3) = sizes
    assert w3 > 1.8 * w1 and h3 > 1.6 * h1  # 2 x 2 panels against 1
    draw_chart(tmp_path / "none.png", [], "nothing ran")  # still a chart, not an error
    assert (tmp_path / "none.png").stat().st_size > 0
