"""The OCRmyPDF plugin (`ocrmypdf_ocrq`) through the real `ocrmypdf` CLI: a scanned PDF
made here (img2pdf of rendered pages) gets a text layer that `pdftotext` reads back as
the rendered lines, written by ocrq's engine (the PDF's creator says so), not Tesseract."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ocrmypdf", reason="OCRmyPDF is not installed (pip install 'ocrq[ocrmypdf]')")
import img2pdf  # noqa: E402  (an OCRmyPDF dependency)
import pikepdf  # noqa: E402  (an OCRmyPDF dependency)
from PIL import Image  # noqa: E402

from ocrq.results import RegionResult  # noqa: E402
from ocrq.scoring import cer  # noqa: E402
from tests.fixtures_text import render_page  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    [
        "Invoice 2024-118 for Harbour Supplies Ltd.",
        "Total due: 1,234.50 EUR by 30 June",
        "The quick brown fox jumps over the lazy dog.",
    ],
    [
        "Reading order runs top to bottom.",
        "Pack my box with six dozen liquor jugs!",
        "Page two ends here, with 42 words or so.",
    ],
]
DPI = 150


def scanned_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A PDF of grey page images, one per page (as a scanner makes them), lossless."""
    images = []
    for lines in pages:
        buf = io.BytesIO()
        Image.fromarray(render_page(lines, height=40)).convert("L").save(
            buf, format="PNG", dpi=(DPI, DPI)
        )
        images.append(buf.getvalue())
    path.write_bytes(img2pdf.convert(images))
    return path


def ocrmypdf(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # the plugin is importable from the checkout whether or not it is installed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "ocrmypdf", "--plugin", "ocrmypdf_ocrq", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def page_texts(pdf: Path, count: int) -> list[str]:
    pdftotext = shutil.which("pdftotext")
    assert pdftotext, "pdftotext not found: install poppler-utils"
    return [
        subprocess.run(
            [pdftotext, "-f", str(n), "-l", str(n), str(pdf), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for n in range(1, count + 1)
    ]


@pytest.mark.parametrize(
    "renderer",
    [
        pytest.param(["--jobs", "2"], id="fpdf2-word-tree"),
        pytest.param(["--jobs", "1", "--pdf-renderer", "sandwich"], id="sandwich"),
    ],
)
def test_text_layer_reads_the_rendered_lines(tmp_path, renderer):
    source = scanned_pdf(tmp_path / "scan.pdf", PAGES)
    out = tmp_path / "out.pdf"
    run = ocrmypdf(*renderer, "-O0", "--output-type", "pdf", str(source), str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    texts = page_texts(out, len(PAGES))
    for lines, text in zip(PAGES, texts, strict=True):
        truth = "\n".join(lines)
        assert cer(text, truth) < 0.03, (text, truth)
    with pikepdf.open(out) as pdf:
        creator = str(pdf.docinfo.get("/Creator", ""))
        assert len(pdf.pages) == len(PAGES)
    assert "ocrq" in creator and "Tesseract" not in creator, creator


def test_rotate_pages_and_deskew_are_refused_up_front(tmp_path):
    source = scanned_pdf(tmp_path / "scan.pdf", PAGES[:1])
    for flag in ("--rotate-pages", "--deskew"):
        run = ocrmypdf(flag, str(source), str(tmp_path / "out.pdf"), cwd=tmp_path)
        assert run.returncode == 1, run.stderr[-2000:]  # OCRmyPDF's ExitCode.bad_args
        assert f"{flag}: not supported by the ocrq engine" in run.stderr
        assert "Traceback" not in run.stderr
        assert not (tmp_path / "out.pdf").exists()


def test_ocr_engine_tesseract_still_picks_tesseract():
    from types import SimpleNamespace

    import ocrmypdf_ocrq

    assert ocrmypdf_ocrq.get_ocr_engine(SimpleNamespace(ocr_engine="tesseract")) is None
    assert ocrmypdf_ocrq.get_ocr_engine(SimpleNamespace(ocr_engine="none")) is None
    assert isinstance(
        ocrmypdf_ocrq.get_ocr_engine(SimpleNamespace(ocr_engine="auto")), ocrmypdf_ocrq.OcrqEngine
    )


def test_word_tree_groups_lines_and_paragraphs_and_clips_to_the_page():
    from ocrmypdf_ocrq.engine import page_tree

    def region(idx, x0, y0, x1, y1, text, line, paragraph=0):
        quad = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
        return RegionResult(0, idx, quad, text, 0.9, line=line, paragraph=paragraph)

    regions = [
        region(0, 10, 10, 110, 30, "Total due", 0),
        region(1, 300, 12, 420, 31, "12.50", 0),  # same visual line, another region
        region(2, 10, 50, 200, 70, "next line", 1),
        region(3, 10, 120, 260, 140, "new paragraph", 2, paragraph=1),
        region(4, 480, 150, 560, 170, "edge", 3, paragraph=1),  # runs off a 500 px page
        region(5, 10, 180, 60, 200, "   ", 4, paragraph=1),  # empty: left out
    ]
    tree = page_tree(regions, 500, 300, 150.0, page_number=3)
    assert tree.ocr_class == "ocr_page" and tree.dpi == 150.0 and tree.page_number == 3
    assert [len(p.children) for p in tree.paragraphs] == [2, 2]
    first = tree.lines[0]
    assert [w.text for w in first.words] == ["Total", "due", "12.50"]
    assert (first.bbox.left, first.bbox.right) == (10, 420)
    edge = tree.lines[-1].words[0]
    assert edge.text == "edge" and edge.bbox.right == 500
    assert tree.get_text_recursive() == "Total due 12.50 next line new paragraph edge"
