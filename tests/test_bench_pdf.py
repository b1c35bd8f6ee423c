"""`ocrq bench --pdf` (issue #29): page sets made into scanned PDFs, the PDF runners'
table with its ratios, and the option end to end on a rendered page (fixtures made here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from bench.command import bench
from bench.evalsets import discover
from bench.pdfbench import check_runners, format_table
from bench.pdfrunners import RUNNERS, PdfRow, add_ratios, page_count
from bench.pdfsets import build_sets
from ocrq.errors import UsageError
from tests.fixtures_text import render_line, render_page

PAGES = [["Invoice 2024-118", "Total due 1,234.50 EUR"], ["The quick brown fox"]]


def _pages(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i, lines in enumerate(PAGES):
        Image.fromarray(render_page(lines)).save(folder / f"p{i}.png", dpi=(200, 200))
        (folder / f"p{i}.gt.txt").write_text("\n".join(lines), encoding="utf-8")
    return folder


def test_page_sets_become_pdfs_and_book_sets_a_multipage_one_too(tmp_path):
    root = tmp_path / "eval"
    _pages(root / "sroie")
    _pages(root / "oldbooks")
    (root / "oldbooks" / "p1.uzn").write_text("0 0 100 100 Text\n")  # zoned: left out
    lines = root / "lines"
    lines.mkdir()
    for i in range(2):
        Image.fromarray(render_line(f"line {i}", height=40)).save(lines / f"l{i}.png")
        (lines / f"l{i}.gt.txt").write_text(f"line {i}")
    sets = build_sets(discover([root]), tmp_path / "pdf")
    by_name = {s.name: s for s in sets}
    assert list(by_name) == ["oldbooks", "sroie"]  # no line set; one zoned page left
    assert [d.path.name for d in by_name["sroie"].docs] == ["p0.pdf", "p1.pdf"]
    assert by_name["sroie"].conventions.casefold
    assert [d.path.name for d in by_name["oldbooks"].docs] == ["p0.pdf"]

    root2 = tmp_path / "books"
    _pages(root2 / "oldbooks")
    sets = {s.name: s for s in build_sets(discover([root2]), tmp_path / "pdf2")}
    multi = sets["oldbooks-multipage"]
    assert multi.pages == 2 and sets["oldbooks"].pages == 2
    if shutil.which("pdfinfo"):
        assert page_count(multi.docs[0].path) == 2


def test_pdf_runners_are_checked_and_the_table_has_both_ratios():
    assert check_runners([]) == RUNNERS
    with pytest.raises(UsageError, match="PDF runners"):
        check_runners(["queue"])
    rows = [
        PdfRow("sroie", "ocrmypdf-tesseract", 3, cer=0.3, cer_layout=0.2, pages_per_s=0.6),
        PdfRow("sroie", "ocrmypdf-rapidocr", 3, cer=0.2, cer_layout=0.05, pages_per_s=0.2),
        PdfRow("sroie", "ocrq-queue", 3, cer=0.2, cer_layout=0.03, pages_per_s=0.8),
        PdfRow("sroie", "ocrmypdf-ocrq", 3, status="not installed (ocrmypdf_ocrq)"),
    ]
    add_ratios(rows)
    table = format_table(rows).splitlines()
    assert table[0].endswith("| x tess | x rapid |")
    assert table[4] == "| sroie | ocrq-queue | 3 | 20.00 | 3.00 | 0.80 | - | - | 1.33 | 4.00 |"
    assert "not installed" in table[5]


def test_bench_pdf_refuses_image_runners(tmp_path):
    folder = _pages(tmp_path / "sroie")
    result = CliRunner().invoke(bench, [str(folder), "--pdf", "-r", "tesseract"])
    assert result.exit_code == UsageError.exit_code
    assert "PDF runners" in result.output


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_bench_pdf_runs_the_queue_on_pdfs_of_a_page_set(tmp_path):
    folder = _pages(tmp_path / "sroie")
    out = tmp_path / "pdf.json"
    args = [str(folder), "--pdf", "-r", "ocrq-queue", "--limit", "1", "--json", str(out)]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    assert "| sroie | ocrq-queue | 1 |" in result.output
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["status"] == "ok" and row["cer_layout"] < 0.1 and row["pages_per_s"] > 0
    assert data["meta"]["limit"] == 1 and data["meta"]["runners"] == ["ocrq-queue"]
