"""Searchable PDFs (producer/searchable_pdf.py), checked with poppler's own tools.

Inputs are made here: pages of text rendered by `tests.fixtures_text.render_page`, made a
scanned PDF with img2pdf, or saved as JPEG/PNG/TIFF. Their PageResults carry word boxes
measured from the rendered ink, as an engine would give them. Then: `pdftotext` reads the
words back in reading order, `pdftotext -bbox` puts them on their boxes, `pdftoppm` renders
each page as before, the embedded JPEG is the file's bytes, and the size stays bounded.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import img2pdf
import numpy as np
import pikepdf
import pytest
from PIL import Image

from ocrq.results import PageResult, RegionResult, Word
from producer.searchable_pdf import (
    ASCENT,
    DESCENT,
    add_text_layers,
    pdf_from_image,
    pdf_from_image_pages,
    pdf_from_pdf,
)
from tests.fixtures_text import load_font, render_page

LINE_HEIGHT, MARGIN, SPACING = 40, 60, 1.6
DPI = 150


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: install poppler-utils"
    return path


def pdftotext(pdf: Path, *args: str) -> str:
    return subprocess.run(
        [_tool("pdftotext"), *args, str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout


def text_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def bbox_words(pdf: Path) -> list[list[tuple[str, tuple[float, ...]]]]:
    """pdftotext -bbox: per page, (word, (x0, y0, x1, y1) in points from the top left)."""
    html = pdftotext(pdf, "-bbox")
    pages = []
    for page in re.findall(r"<page .*?</page>", html, re.S):
        words = re.findall(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>',
            page,
        )
        pages.append([(w[4], tuple(float(v) for v in w[:4])) for w in words])
    return pages


def render(pdf: Path, page: int, dpi: int = 72) -> np.ndarray:
    """Page `page` (from 0) rendered by pdftoppm."""
    png = subprocess.run(
        [_tool("pdftoppm"), "-png", "-r", str(dpi), "-f", str(page + 1), "-l", str(page + 1)]
        + [str(pdf)],
        capture_output=True,
        check=True,
    ).stdout
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def images_of(page: pikepdf.Page):
    """The page's images (get_images in newer pikepdf, images before)."""
    return page.get_images() if hasattr(page, "get_images") else page.images


def unescape(text: str) -> str:
    return text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")


def rendered_page(
    lines: list[str], page_no: int = 0, dpi: float = DPI, width: int | None = None
) -> tuple[np.ndarray, PageResult]:
    """A rendered page and its PageResult: a region per line, words with the boxes of
    their ink (rows: the line's ink; columns: each word's ink)."""
    image = render_page(lines, height=LINE_HEIGHT, width=width)
    font = load_font("DejaVuSans.ttf", max(6, round(LINE_HEIGHT * 0.6)))
    ink = image.min(axis=2) < 128
    regions, words = [], []
    for i, line in enumerate(lines):
        top = round(MARGIN + SPACING * LINE_HEIGHT * i)
        band = ink[top : round(top + SPACING * LINE_HEIGHT)]
        rows = np.flatnonzero(band.any(axis=1))
        y0, y1 = top + rows[0], top + rows[-1] + 1
        line_words, start = [], 0
        for token in line.split(" "):
            a = MARGIN + font.getlength(line[:start])
            b = MARGIN + font.getlength(line[: start + len(token)])
            cols = np.flatnonzero(band[:, max(0, int(a) - 1) : int(b) + 2].any(axis=0))
            x0, x1 = max(0, int(a) - 1) + cols[0], max(0, int(a) - 1) + cols[-1] + 1
            line_words.append(Word(token, (float(x0), float(y0), float(x1), float(y1)), 0.9))
            start += len(token) + 1
        quad = [[line_words[0].box[0], y0], [line_words[-1].box[2], y0]]
        quad += [[line_words[-1].box[2], y1], [line_words[0].box[0], y1]]
        regions.append(RegionResult(page_no, i, quad, line, 0.9, i))
        words.append(line_words)
    h, w = image.shape[:2]
    return image, PageResult(page_no, w, h, dpi, regions, words=words)


def scanned_pdf(path: Path, images: list[np.ndarray], dpi: float = DPI) -> Path:
    pngs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        pngs.append(buffer.getvalue())
    path.write_bytes(
        img2pdf.convert(*pngs, layout_fun=img2pdf.get_fixed_dpi_layout_fun((dpi, dpi)))
    )
    return path


def assert_on_boxes(pdf: Path, results: list[PageResult], tolerance: float = 1.5) -> None:
    """Every word of pdftotext -bbox sits on its PageResult box (in points)."""
    pages = bbox_words(pdf)
    for result in results:
        got = pages[result.page]
        want = [w for ws in result.words for w in ws]
        assert [unescape(t) for t, _ in got] == [w.text for w in want]
        scale = 72 / result.dpi
        for (text, box), word in zip(got, want, strict=True):
            expected = [v * scale for v in word.box]
            assert np.allclose(box, expected, atol=tolerance), (text, box, expected)


PAGE_ONE = ["The quick brown fox", "jumps over the lazy dog.", "Invoice 2024-118: 1,234.50 EUR"]
PAGE_TWO = ["Reading order runs", "top to bottom (and left to right)."]


def test_pdf_input_gets_text_in_order_on_its_boxes_and_renders_the_same(tmp_path):
    image_one, one = rendered_page(PAGE_ONE, 0)
    image_two, two = rendered_page(PAGE_TWO, 1)
    source = scanned_pdf(tmp_path / "scan.pdf", [image_one, image_two])
    out = tmp_path / "searchable.pdf"
    pdf_from_pdf(source, [one, two], out)

    assert pdftotext(source).strip() == ""  # the scan has no text of its own
    for args in ((), ("-raw",)):  # pdftotext's layout order, and content stream order
        pages = pdftotext(out, *args).split("\f")
        assert text_lines(pages[0]) == PAGE_ONE
        assert text_lines(pages[1]) == PAGE_TWO
    assert_on_boxes(out, [one, two])
    for page in (0, 1):
        assert np.array_equal(render(source, page, 100), render(out, page, 100))


def test_pdf_streams_are_copied_not_reencoded(tmp_path):
    image, result = rendered_page(PAGE_ONE)
    source = scanned_pdf(tmp_path / "scan.pdf", [image])
    out = tmp_path / "searchable.pdf"
    pdf_from_pdf(source, [result], out)
    with pikepdf.open(source) as before, pikepdf.open(out) as after:
        old, new = before.pages[0], after.pages[0]
        old_image = next(iter(images_of(old).values()))
        new_image = next(iter(images_of(new).values()))
        assert old_image.read_raw_bytes() == new_image.read_raw_bytes()
        assert old_image.Filter == new_image.Filter
        old_contents = old.obj.Contents
        old_streams = [old_contents] if isinstance(old_contents, pikepdf.Stream) else old_contents
        new_streams = list(new.obj.Contents)
        # q + the page's own streams + our layer
        assert len(new_streams) == len(old_streams) + 2
        for a, b in zip(old_streams, new_streams[1:-1], strict=True):
            assert a.read_raw_bytes() == b.read_raw_bytes()
        assert new_streams[0].read_bytes() == b"q\n"
        layer = new_streams[-1].read_bytes()
        assert layer.startswith(b"Q\nq\n") and b"3 Tr" in layer and layer.endswith(b"ET\nQ\n")


def test_pdf_text_pages_and_pages_without_result_get_nothing(tmp_path):
    images = [rendered_page(PAGE_ONE, p)[0] for p in range(3)]
    source = scanned_pdf(tmp_path / "scan.pdf", images)
    _, ocr = rendered_page(PAGE_ONE, 0)
    _, born_digital = rendered_page(PAGE_TWO, 1)
    born_digital = replace(born_digital, source="pdf-text")
    out = tmp_path / "searchable.pdf"
    pdf_from_pdf(source, [ocr, born_digital], out)
    with pikepdf.open(source) as before, pikepdf.open(out) as after:
        for page in (1, 2):
            assert repr(before.pages[page].obj.Contents) == repr(after.pages[page].obj.Contents)
            assert "/Font" not in after.pages[page].resources
    pages = pdftotext(out).split("\f")
    assert text_lines(pages[0]) == PAGE_ONE
    assert text_lines(pages[1]) == [] and text_lines(pages[2]) == []


def test_inherited_resources_and_a_font_name_already_taken(tmp_path):
    """The page's resources are inherited from its /Pages node and already hold a font
    named /OcrqF0 (a visible Courier): both texts are there, the page renders the same."""
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(300, 200))
    courier = pikepdf.Dictionary(
        Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Courier
    )
    pdf.Root.Pages.Resources = pikepdf.Dictionary(
        Font=pikepdf.Dictionary(OcrqF0=pdf.make_indirect(courier))
    )
    page = pdf.pages[0].obj
    del page["/Resources"]
    # leaves a changed state (no q/Q): our layer must not inherit it
    page.Contents = pdf.make_stream(b"2 0 0 2 0 0 cm BT /OcrqF0 12 Tf 10 80 Td (Printed) Tj ET")
    source = tmp_path / "inherited.pdf"
    pdf.save(source)
    region = RegionResult(0, 0, [[20, 20], [220, 20], [220, 60], [20, 60]], "Scanned words", 0.9)
    out = tmp_path / "searchable.pdf"
    pdf_from_pdf(source, [PageResult(0, 600, 400, 144, [region])], out)
    assert text_lines(pdftotext(out, "-raw")) == ["Printed", "Scanned words"]
    words = dict(bbox_words(out)[0])
    first, second = words["Scanned"], words["words"]
    assert np.allclose(first[:2], (10, 10), atol=0.5) and np.allclose(
        second[2:], (110, 30), atol=0.5
    )
    assert np.array_equal(render(source, 0, 100), render(out, 0, 100))
    with pikepdf.open(out) as result:
        fonts = result.pages[0].resources.Font
        assert fonts.OcrqF0.BaseFont == pikepdf.Name.Courier
        assert sorted(fonts.keys()) == ["/OcrqF0", "/OcrqF0x1"]


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
def test_mediabox_origin_and_rotation(tmp_path, rotate):
    """A page whose MediaBox does not start at 0,0 and that is shown turned by /Rotate:
    the words land where the page image (upright, as displayed) has them. Checked by
    pdftotext -bbox (in displayed coordinates) and, independently, by rendering a copy
    whose text layer is made visible."""
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(300, 200))
    pdf.pages[0].obj.MediaBox = pikepdf.Array([100, 50, 400, 250])
    pdf.pages[0].obj.Rotate = rotate
    source = tmp_path / "rotated.pdf"
    pdf.save(source)
    shown_w, shown_h = (300, 200) if rotate in (0, 180) else (200, 300)
    dpi = 144  # 2 px a point
    box = (40.0, 60.0, 300.0, 140.0)  # one word, in displayed pixels
    region = RegionResult(0, 0, [[40, 60], [300, 60], [300, 140], [40, 140]], "HEHEHE", 0.9)
    result = PageResult(0, shown_w * 2, shown_h * 2, dpi, [region])
    out = tmp_path / "searchable.pdf"
    pdf_from_pdf(source, [result], out)

    ((text, got),) = bbox_words(out)[0]
    assert text == "HEHEHE"
    assert np.allclose(got, [v / 2 for v in box], atol=0.5), got

    visible = tmp_path / "visible.pdf"
    with pikepdf.open(out) as copy:
        layer = copy.pages[0].obj.Contents[-1]
        layer.write(layer.read_bytes().replace(b"3 Tr", b"0 Tr"))
        copy.save(visible)
    ink = np.argwhere(render(visible, 0, 144).min(axis=2) < 128)
    (y0, x0), (y1, x1) = ink.min(axis=0), ink.max(axis=0) + 1
    assert render(visible, 0, 144).shape[:2] == (shown_h * 2, shown_w * 2)
    # capitals: from the box top (ascent = cap height) to the baseline
    size = (box[3] - box[1]) / (ASCENT + DESCENT)
    # Helvetica is not embedded: the viewer draws its own stand-in (URW's Nimbus Sans
    # where installed, with wider side bearings), so the ink may stop short of the box
    # by a little; a turned or shifted layer would miss it by a whole word.
    assert abs(x0 - box[0]) <= 6 and abs(x1 - box[2]) <= 16, (x0, x1)
    assert abs(y0 - box[1]) <= 3 and abs(y1 - (box[3] - DESCENT * size)) <= 3, (y0, y1)


def test_jpeg_is_embedded_byte_for_byte(tmp_path):
    image, result = rendered_page(PAGE_ONE)
    jpeg = tmp_path / "page.jpg"
    Image.fromarray(image).save(jpeg, quality=80)
    out = tmp_path / "page.pdf"
    pdf_from_image(jpeg, result, out)
    assert jpeg.read_bytes() in out.read_bytes()
    assert text_lines(pdftotext(out)) == PAGE_ONE
    assert_on_boxes(out, [result])
    with pikepdf.open(out) as pdf:
        (name,) = images_of(pdf.pages[0])
        assert images_of(pdf.pages[0])[name].Filter == pikepdf.Name.DCTDecode
        w, h = (float(v) for v in pdf.pages[0].mediabox[2:])
        assert (w, h) == pytest.approx((result.width * 72 / DPI, result.height * 72 / DPI))


def test_exif_turned_jpeg_keeps_its_bytes_and_the_upright_boxes(tmp_path):
    """A JPEG stored on its side with EXIF orientation 6 (turn 90 degrees clockwise to
    show): the page is its bytes plus /Rotate, and the OCR boxes (upright, as ocrq reads
    the image) land on the shown page."""
    upright, result = rendered_page(PAGE_ONE)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    jpeg = tmp_path / "turned.jpg"
    stored.save(jpeg, quality=85, exif=exif)
    out = tmp_path / "turned.pdf"
    pdf_from_image(jpeg, result, out)
    assert jpeg.read_bytes() in out.read_bytes()
    with pikepdf.open(out) as pdf:
        assert int(pdf.pages[0].obj.Rotate) == 90
    assert text_lines(pdftotext(out)) == PAGE_ONE
    assert_on_boxes(out, [result])


def test_mirrored_exif_jpeg_is_stored_upright_losslessly(tmp_path):
    """EXIF orientation 2 (mirrored) cannot be a /Rotate: the frame is turned upright and
    stored as PNG (the JPEG's decoded pixels, losslessly)."""
    upright, result = rendered_page(PAGE_TWO)
    exif = Image.Exif()
    exif[0x0112] = 2
    jpeg = tmp_path / "mirrored.jpg"
    Image.fromarray(upright).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        jpeg, quality=95, exif=exif
    )
    out = tmp_path / "mirrored.pdf"
    pdf_from_image(jpeg, result, out)
    with pikepdf.open(out) as pdf:
        assert "/Rotate" not in pdf.pages[0].obj or int(pdf.pages[0].obj.Rotate) == 0
        (raw,) = images_of(pdf.pages[0]).values()
        assert raw.Filter == pikepdf.Name.FlateDecode
        embedded = np.asarray(pikepdf.PdfImage(raw).as_pil_image().convert("RGB"))
    with Image.open(jpeg) as im:
        decoded = np.asarray(im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert np.array_equal(embedded, decoded)
    assert text_lines(pdftotext(out)) == PAGE_TWO
    assert_on_boxes(out, [result])


def test_png_pixels_are_kept_losslessly(tmp_path):
    image, result = rendered_page(PAGE_TWO)
    png = tmp_path / "page.png"
    Image.fromarray(image).save(png)
    out = tmp_path / "page.pdf"
    pdf_from_image(png, result, out)
    with pikepdf.open(out) as pdf:
        (raw,) = images_of(pdf.pages[0]).values()
        embedded = np.asarray(pikepdf.PdfImage(raw).as_pil_image().convert("RGB"))
    assert np.array_equal(embedded, image)
    assert text_lines(pdftotext(out)) == PAGE_TWO
    assert_on_boxes(out, [result])


def test_tiff_frames_become_pages(tmp_path):
    image_one, one = rendered_page(PAGE_ONE, 0)
    image_two, two = rendered_page(PAGE_TWO, 1, dpi=200)
    tiff = tmp_path / "scan.tif"
    frames = [Image.fromarray(image_one).convert("L"), Image.fromarray(image_two).convert("L")]
    frames[0].save(tiff, save_all=True, append_images=frames[1:], compression="tiff_deflate")
    out = tmp_path / "scan.pdf"
    pdf_from_image_pages(tiff, [one, two], out)
    pages = pdftotext(out).split("\f")
    assert text_lines(pages[0]) == PAGE_ONE and text_lines(pages[1]) == PAGE_TWO
    assert_on_boxes(out, [one, two])


def test_size_is_the_input_plus_the_text(tmp_path):
    """A realistic page (a Letter-wide scan at 150 dpi, 24 lines): the searchable PDF is
    at most the scan + 5 % + the length of its text."""
    lines = [f"Line {n}: the quick brown fox jumps over the lazy dog {n * 7}" for n in range(24)]
    image, result = rendered_page(lines, width=1275)
    text_bytes = len("\n".join(lines).encode())
    source = scanned_pdf(tmp_path / "scan.pdf", [image])
    out = tmp_path / "searchable.pdf"
    pdf_from_pdf(source, [result], out)
    assert out.stat().st_size <= source.stat().st_size * 1.05 + text_bytes
    jpeg = tmp_path / "page.jpg"
    Image.fromarray(image).save(jpeg, quality=75)
    from_jpeg = tmp_path / "from_jpeg.pdf"
    pdf_from_image(jpeg, result, from_jpeg)
    assert from_jpeg.stat().st_size <= jpeg.stat().st_size * 1.05 + text_bytes
    # what a document of our own making costs beyond its image and its text: the PDF's
    # structure in deflated object streams and the words' positions (1.3 KB here; 2.4
    # KB before object streams and 0.1 pt positions)
    overhead = from_jpeg.stat().st_size - jpeg.stat().st_size - text_bytes
    assert overhead < 2000
    assert text_lines(pdftotext(out)) == lines == text_lines(pdftotext(from_jpeg))


def test_characters_outside_winansi_are_kept_and_odd_text_does_not_crash(tmp_path):
    words = ["Łódź", "Ωμέγα", "東京", "€5", "naïve", "(a\\b)", "🙂", "x\x00y\u200b"]
    boxes = [(20 + 90 * i, 40, 100 + 90 * i, 80) for i in range(len(words))]
    region_words = [Word(t, b, 0.8) for t, b in zip(words, boxes, strict=True)]
    region = RegionResult(0, 0, [[20, 40], [800, 40], [800, 80], [20, 80]], " ".join(words), 0.8)
    blank = RegionResult(0, 1, [[20, 100], [60, 100], [60, 120], [20, 120]], "  ", 0.1, 1)
    result = PageResult(0, 850, 200, 100, [region, blank], words=[region_words, []])
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(850 * 72 / 100, 200 * 72 / 100))
    source = tmp_path / "blank.pdf"
    pdf.save(source)
    out = tmp_path / "searchable.pdf"
    pdf_from_pdf(source, [result], out)
    got = text_lines(pdftotext(out))
    # control characters are dropped; a zero-width space is kept as the character it is
    assert got == ["Łódź Ωμέγα 東京 €5 naïve (a\\b) 🙂 xy\u200b"]


def test_more_distinct_characters_than_one_font_holds(tmp_path):
    """Over 189 characters outside WinAnsi: they spread over several fonts."""
    chars = [chr(0x4E00 + i) for i in range(500)]
    words = ["".join(chars[i : i + 25]) for i in range(0, 500, 25)]
    regions, word_lists = [], []
    for i, word in enumerate(words):
        box = (10.0, 10.0 + 30 * i, 610.0, 35.0 + 30 * i)
        regions.append(
            RegionResult(
                0, i, [[10, box[1]], [610, box[1]], [610, box[3]], [10, box[3]]], word, 0.5, i
            )
        )
        word_lists.append([Word(word, box, 0.5)])
    result = PageResult(0, 620, 620, 72, regions, words=word_lists)
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(620, 620))
    with pdf:
        assert add_text_layers(pdf, [result]) == 1
        fonts = pdf.pages[0].resources.Font
        assert len(fonts) == 3  # 500 characters in 3 fonts of 189; WinAnsi font 0 unused
        pdf.save(tmp_path / "cjk.pdf")
    assert text_lines(pdftotext(tmp_path / "cjk.pdf", "-raw")) == words


def test_image_page_size_must_match_the_result(tmp_path):
    image, result = rendered_page(PAGE_TWO)
    png = tmp_path / "page.png"
    Image.fromarray(image).save(png)
    wrong = replace(result, width=result.width + 40)
    with pytest.raises(ValueError, match="not the PDF page's size"):
        pdf_from_image(png, wrong, tmp_path / "out.pdf")
