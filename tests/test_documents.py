"""ocrq.documents: pages of images, multi-page TIFFs and PDFs, one at a time.

Every PDF is made here: scans with img2pdf (lossless PNG, CCITT G4, and JBIG2 built by
hand from a G4 strip), born-digital pages drawn with pikepdf (Helvetica, a standard font
pdfium and poppler both have), mixed documents, and the hostile cases."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import img2pdf
import numpy as np
import pikepdf
import pytest
from pikepdf import Array, Dictionary, Name
from PIL import Image

from ocrq.config import InputLimits, settings_from_env
from ocrq.documents import (
    ASSUMED_DPI,
    RASTER_DPI,
    PageSource,
    count_pages,
    read_page,
)
from ocrq.errors import BadImage, InputRejected, UsageError
from ocrq.images import gray_if_neutral
from tests.fixtures_pdf import (
    SCAN_DPI,
    _helvetica,
    _pdf_bytes,
    _text_ops,
    combine,
    ink_box,
    png_bytes,
    scan_image,
    scan_pdf,
    text_pdf,
    write,
)

LIMITS = InputLimits()


# --------------------------------------------------------------------------- makers


# ------------------------------------------------------------------------ page counts


def test_counts_images_tiffs_and_pdfs(tmp_path: Path) -> None:
    png = write(tmp_path, "one.png", png_bytes(scan_image(["one"])))
    tiff = tmp_path / "three.tif"
    frames = [Image.fromarray(scan_image([f"frame {i}"])) for i in range(3)]
    frames[0].save(tiff, save_all=True, append_images=frames[1:])
    text = write(tmp_path, "text.pdf", text_pdf([["a"], ["b"], ["c"], ["d"]]))
    scans = write(tmp_path, "scans.pdf", scan_pdf([scan_image(["x"]), scan_image(["y"])]))
    assert count_pages(png, LIMITS) == 1
    assert count_pages(tiff, LIMITS) == 3
    assert count_pages(text, LIMITS) == 4
    assert count_pages(str(scans), LIMITS) == 2


def test_a_plain_image_counts_one_without_being_decoded(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.png", png_bytes(scan_image(["x"]))[:200])
    assert count_pages(broken, LIMITS) == 1  # its one job fails with the reason
    with pytest.raises(BadImage, match="truncated PNG"):
        read_page(broken, 0, LIMITS)


# ----------------------------------------------------------------------------- images


def test_image_page_keeps_the_images_decoding_and_dpi(tmp_path: Path) -> None:
    colour = scan_image(["Colour page"], colour=True)
    path = write(tmp_path, "c.png", png_bytes(colour, dpi=150))
    page = read_page(path, 0, LIMITS)
    assert page.source == "image" and page.size_pt is None and page.text_lines == []
    assert page.dpi == pytest.approx(150, abs=0.1)
    assert np.array_equal(page.pixels, colour)
    assert (page.width, page.height) == (colour.shape[1], colour.shape[0])

    gray_scan = scan_image(["Gray page"])  # RGB with equal channels: kept gray, as ever
    plain = read_page(write(tmp_path, "g.png", png_bytes(gray_scan, dpi=None)), 0, LIMITS)
    assert plain.dpi == ASSUMED_DPI  # no resolution in the file
    assert plain.pixels.ndim == 2 and np.array_equal(plain.pixels, gray_scan[..., 0])
    with pytest.raises(BadImage, match="no page 2"):
        read_page(path, 1, LIMITS)


def test_tiff_frames_are_read_alone(tmp_path: Path) -> None:
    frames = [scan_image([f"Frame number {i}"] * (i + 1)) for i in range(3)]
    path = tmp_path / "scan.tif"
    pil = [Image.fromarray(f) for f in frames]
    pil[0].save(
        path, save_all=True, append_images=pil[1:], compression="tiff_deflate", dpi=(240, 240)
    )
    for i, frame in enumerate(frames):
        page = read_page(path, i, LIMITS)
        assert page.source == "image" and page.dpi == pytest.approx(240, abs=0.1)
        assert np.array_equal(page.pixels, gray_if_neutral(frame))
    with pytest.raises(BadImage, match="no page 4: the TIFF has 3"):
        read_page(path, 3, LIMITS)

    # Break frame 0's compressed data: frame 2 still reads (frame 0 is never decoded
    # to reach it), and frame 0 fails alone.
    data = bytearray(path.read_bytes())
    with Image.open(path) as im:
        start, length = im.tag_v2[273][0], im.tag_v2[279][0]
    data[start : start + length] = bytes(length)
    broken = write(tmp_path, "broken.tif", bytes(data))
    assert count_pages(broken, LIMITS) == 3
    assert np.array_equal(read_page(broken, 2, LIMITS).pixels, gray_if_neutral(frames[2]))
    with pytest.raises(BadImage, match="TIFF"):
        read_page(broken, 0, LIMITS)


def test_tiff_over_the_page_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.tif"
    pil = [Image.fromarray(scan_image([str(i)])) for i in range(4)]
    pil[0].save(path, save_all=True, append_images=pil[1:])
    with pytest.raises(InputRejected, match="4 pages, over the page limit 3"):
        count_pages(path, InputLimits(max_pages=3))


# ---------------------------------------------------------------------- scanned PDFs


def test_embedded_scans_come_back_pixel_identical(tmp_path: Path) -> None:
    gray = scan_image(["A gray scanned page", "with two lines"])
    colour = scan_image(["A colour scan"], colour=True)
    path = write(tmp_path, "scans.pdf", scan_pdf([gray, colour]))
    for page_no, expected in enumerate([gray_if_neutral(gray), colour]):
        page = read_page(path, page_no, LIMITS)
        assert page.source == "embedded" and page.text_lines == []
        assert page.pixels.dtype == np.uint8 and page.pixels.flags.c_contiguous
        assert np.array_equal(page.pixels, expected)
        assert (page.height, page.width) == expected.shape[:2]
        assert page.dpi == pytest.approx(SCAN_DPI, rel=1e-4)
        w_pt, h_pt = page.size_pt
        assert (w_pt, h_pt) == pytest.approx(
            (page.width * 72 / SCAN_DPI, page.height * 72 / SCAN_DPI), rel=1e-4
        )
        assert page.origin_pt == pytest.approx((0, 0), abs=1e-3)


def test_bilevel_scans_ccitt_and_jbig2(tmp_path: Path) -> None:
    ink = scan_image(["Fax G4 and JBIG2", "bilevel pages"])[..., 0] < 128
    bilevel = np.where(ink, 0, 255).astype(np.uint8)
    g4 = io.BytesIO()
    Image.fromarray(bilevel).convert("1").save(
        g4, format="TIFF", compression="group4", dpi=(SCAN_DPI, SCAN_DPI)
    )
    ccitt = write(tmp_path, "ccitt.pdf", img2pdf.convert(g4.getvalue()))
    assert b"/CCITTFaxDecode" in ccitt.read_bytes()
    jbig2 = write(tmp_path, "jbig2.pdf", jbig2_pdf(ink))
    for path in (ccitt, jbig2):
        page = read_page(path, 0, LIMITS)
        assert page.source == "embedded"
        assert np.array_equal(page.pixels, bilevel)
        assert page.dpi == pytest.approx(SCAN_DPI, rel=1e-4)


def _g4_strip(ink: np.ndarray) -> bytes:
    """T.6 (G4) data of a bilevel image, from a one-strip TIFF. Pillow writes "1" images
    BlackIsZero: 1 bits are paper, and G4 codes 0 bits as white runs, so ink goes in as 1."""
    out = io.BytesIO()
    bits = Image.fromarray(np.where(ink, 255, 0).astype(np.uint8)).convert("1")
    bits.save(out, format="TIFF", compression="group4", tiffinfo={278: ink.shape[0]})
    with Image.open(io.BytesIO(out.getvalue())) as tif:
        (start,), (length,) = tif.tag_v2[273], tif.tag_v2[279]
    return out.getvalue()[start : start + length]


def jbig2_pdf(ink: np.ndarray) -> bytes:
    """A page holding one JBIG2 image (PDF's embedded JBIG2: segments, no file header): a
    page-information segment and an immediate generic region coded with MMR (G4)."""
    height, width = ink.shape

    def segment(number: int, kind: int, data: bytes) -> bytes:
        # number, flags (type, 1-byte page association), no referred-to segments, page 1
        return struct.pack(">IBBBI", number, kind, 0, 1, len(data)) + data

    page_info = struct.pack(">IIIIBH", width, height, 0, 0, 0, 0)
    region = struct.pack(">IIIIB", width, height, 0, 0, 0) + b"\x01" + _g4_strip(ink)
    data = segment(0, 48, page_info) + segment(1, 38, region)
    pdf = pikepdf.new()
    image = pdf.make_stream(
        data,
        Type=Name.XObject,
        Subtype=Name.Image,
        Width=width,
        Height=height,
        ColorSpace=Name.DeviceGray,
        BitsPerComponent=1,
        Filter=Name.JBIG2Decode,
    )
    w_pt, h_pt = width * 72 / SCAN_DPI, height * 72 / SCAN_DPI
    page = Dictionary(
        Type=Name.Page,
        MediaBox=Array([0, 0, w_pt, h_pt]),
        Resources=Dictionary(XObject=Dictionary(Im0=image)),
        Contents=pdf.make_stream(f"q {w_pt} 0 0 {h_pt} 0 0 cm /Im0 Do Q".encode()),
    )
    pdf.pages.append(pikepdf.Page(page))
    return _pdf_bytes(pdf)


def _placed_image_pdf(pixels: np.ndarray, matrix: str, box: tuple[float, float], **page) -> bytes:
    """A page of size `box` drawing one PNG-lossless image with the `cm` matrix given."""
    pdf = pikepdf.open(io.BytesIO(scan_pdf([pixels])))
    first = pdf.pages[0]
    name = next(iter(first.Resources.XObject.keys()))
    first.MediaBox = Array([0, 0, *box])
    first.Contents = pdf.make_stream(f"q {matrix} cm {name} Do Q".encode())
    for key, value in page.items():
        first[Name("/" + key)] = value
    return _pdf_bytes(pdf)


def test_embedded_scans_are_turned_upright(tmp_path: Path) -> None:
    image = scan_image(["Upright", "text"], colour=True)
    h, w = image.shape[:2]
    w_pt, h_pt = w * 72 / SCAN_DPI, h * 72 / SCAN_DPI
    cases = {
        # /Rotate 90: shown turned clockwise
        "rotate": (
            _placed_image_pdf(image, f"{w_pt} 0 0 {h_pt} 0 0", (w_pt, h_pt), Rotate=90),
            np.rot90(image, -1),
        ),
        # the image drawn turned a quarter counter-clockwise by its matrix
        "matrix": (
            _placed_image_pdf(image, f"0 {w_pt} {-h_pt} 0 {h_pt} 0", (h_pt, w_pt)),
            np.rot90(image, 1),
        ),
        # mirrored by its matrix
        "mirror": (
            _placed_image_pdf(image, f"{-w_pt} 0 0 {h_pt} {w_pt} 0", (w_pt, h_pt)),
            image[:, ::-1],
        ),
    }
    for name, (data, expected) in cases.items():
        path = write(tmp_path, f"{name}.pdf", data)
        page = read_page(path, 0, LIMITS)
        assert page.source == "embedded", name
        assert np.array_equal(page.pixels, expected), name
        # what pdfium draws for the page agrees (the check is not just our own idea of up)
        drawn = _rendered_at(path, page.dpi)
        h, w = expected.shape[:2]
        assert drawn.shape[:2] in ((h, w), (h, w + 1), (h + 1, w), (h + 1, w + 1)), name
        diff = drawn[:h, :w].astype(int) - gray_if_neutral(expected).astype(int)
        assert np.abs(diff).mean() < 20, name


def _rendered_at(path: Path, dpi: float) -> np.ndarray:
    """The page as pdfium draws it at `dpi` (rounding its size up)."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(path.read_bytes())
    try:
        page = doc[0]
        bitmap = page.render(scale=dpi / 72, rev_byteorder=True)
        out = gray_if_neutral(np.array(bitmap.to_numpy()))
        page.close()
        return out
    finally:
        doc.close()


def test_a_scan_covering_most_of_the_page_says_where_it_is(tmp_path: Path) -> None:
    image = scan_image(["Nearly full page"])
    h, w = image.shape[:2]
    w_pt, h_pt = w * 72 / SCAN_DPI, h * 72 / SCAN_DPI
    margin = 0.02 * w_pt  # 96 % of the page
    data = _placed_image_pdf(
        image, f"{w_pt} 0 0 {h_pt} {margin} {margin}", (w_pt + 2 * margin, h_pt + 2 * margin)
    )
    page = read_page(write(tmp_path, "margin.pdf", data), 0, LIMITS)
    assert page.source == "embedded" and np.array_equal(page.pixels, gray_if_neutral(image))
    assert page.origin_pt == pytest.approx((margin, margin), abs=1e-3)


def test_scans_pdfium_cannot_hand_over_as_they_are_are_drawn_at_their_dpi(tmp_path: Path) -> None:
    image = scan_image(["Stamped scan"])
    h, w = image.shape[:2]
    w_pt, h_pt = w * 72 / SCAN_DPI, h * 72 / SCAN_DPI
    # stretched (non-square pixels: 200 x 100 dpi)
    stretched = _placed_image_pdf(image, f"{w_pt} 0 0 {2 * h_pt} 0 0", (w_pt, 2 * h_pt))
    page = read_page(write(tmp_path, "stretched.pdf", stretched), 0, LIMITS)
    assert page.source == "rasterized"
    assert page.dpi == pytest.approx(72 * np.sqrt(w * h / (w_pt * 2 * h_pt)), rel=1e-3)
    # a scan with visible text drawn over it: rendered, at least at RASTER_DPI
    pdf = pikepdf.open(io.BytesIO(scan_pdf([image])))
    first = pdf.pages[0]
    first.Resources.Font = Dictionary(F1=_helvetica(pdf))
    first.contents_add(pdf.make_stream(_text_ops(["STAMP"], h_pt, size=10).encode()))
    page = read_page(write(tmp_path, "stamped.pdf", _pdf_bytes(pdf)), 0, LIMITS, pdf_text="ocr")
    assert page.source == "rasterized" and page.dpi == pytest.approx(RASTER_DPI)


def test_a_scan_inside_a_form_xobject_is_found(tmp_path: Path) -> None:
    image = scan_image(["Wrapped in a form"])
    pdf = pikepdf.open(io.BytesIO(scan_pdf([image])))
    first = pdf.pages[0]
    (name, xobject), *_ = first.Resources.XObject.items()
    w_pt, h_pt = float(first.MediaBox[2]), float(first.MediaBox[3])
    # the form scales by 2 and draws the image at half size: the image fills the page
    form = pdf.make_stream(
        f"q {w_pt / 2} 0 0 {h_pt / 2} 0 0 cm {name} Do Q".encode(),
        Type=Name.XObject,
        Subtype=Name.Form,
        BBox=Array([0, 0, w_pt, h_pt]),
        Matrix=Array([2, 0, 0, 2, 0, 0]),
        Resources=Dictionary(XObject=Dictionary({name: xobject})),
    )
    first.Resources.XObject = Dictionary(Fx0=form)
    first.Contents = pdf.make_stream(b"q /Fx0 Do Q")
    page = read_page(write(tmp_path, "form.pdf", _pdf_bytes(pdf)), 0, LIMITS)
    assert page.source == "embedded"
    assert np.array_equal(page.pixels, gray_if_neutral(image))
    assert page.dpi == pytest.approx(SCAN_DPI, rel=1e-4)


def test_a_masked_scan_is_drawn_at_its_own_dpi(tmp_path: Path) -> None:
    image = scan_image(["Soft-masked scan"])
    pdf = pikepdf.open(io.BytesIO(scan_pdf([image])))
    (_, xobject), *_ = pdf.pages[0].Resources.XObject.items()
    h, w = image.shape[:2]
    mask = np.full((h, w), 255, np.uint8)
    mask[:, : w // 2] = 0  # the left half shows the page under the scan: white
    xobject.SMask = pdf.make_stream(
        mask.tobytes(),
        Type=Name.XObject,
        Subtype=Name.Image,
        Width=w,
        Height=h,
        ColorSpace=Name.DeviceGray,
        BitsPerComponent=8,
    )
    page = read_page(write(tmp_path, "masked.pdf", _pdf_bytes(pdf)), 0, LIMITS)
    assert page.source == "rasterized" and page.dpi == pytest.approx(SCAN_DPI, rel=1e-3)
    assert (page.height, page.width) == (h, w)
    assert page.pixels[:, : w // 2 - 2].min() > 250  # as displayed: masked out
    right = (slice(None), slice(w // 2 + 2, None))
    assert np.abs(page.pixels[right].astype(int) - gray_if_neutral(image)[right]).mean() < 10


# -------------------------------------------------------------------- text and mixed


def test_text_layer_of_born_digital_pages(tmp_path: Path) -> None:
    lines = ["Invoice 2024-118 (paid)", "Total 1,234.50 EUR", "Thank you"]
    path = write(tmp_path, "text.pdf", text_pdf([lines]))
    page = read_page(path, 0, LIMITS)
    assert page.source == "pdf-text" and page.pixels is None
    assert page.dpi == RASTER_DPI and (page.width, page.height) == (2550, 3300)
    assert page.size_pt == (612.0, 792.0)
    assert [line.text for line in page.text_lines] == lines
    assert [w for w, _ in page.text_lines[0].words] == ["Invoice", "2024-118", "(paid)"]
    # The boxes hold the ink pdfium draws for the page at the same dpi, line by line.
    drawn = read_page(path, 0, LIMITS, pdf_text="ocr")
    assert drawn.source == "rasterized" and drawn.dpi == RASTER_DPI
    assert (drawn.width, drawn.height) == (page.width, page.height)
    tops = []
    for line in page.text_lines:
        x0, y0, x1, y1 = line.box
        assert 0 <= x0 < x1 <= page.width and 0 <= y0 < y1 <= page.height
        assert 24 * 300 / 72 * 0.8 < y1 - y0 < 24 * 300 / 72 * 1.5  # about one 24-pt line
        band = drawn.pixels[int(y0) : int(y1) + 1]
        ink = ink_box(band)
        assert x0 - 3 <= ink[0] and ink[2] <= x1 + 3
        assert (band < 128).sum() == (drawn.pixels[int(y0 - 30) : int(y1 + 30)] < 128).sum()
        tops.append(y0)
    assert tops == sorted(tops)
    assert abs(page.text_lines[0].box[0] - 300) < 10  # the text starts 72 pt (1 in) in


def test_text_layer_boxes_follow_page_rotation(tmp_path: Path) -> None:
    path = write(tmp_path, "rotated.pdf", text_pdf([["Rotated page"]], rotate=90))
    page = read_page(path, 0, LIMITS)
    assert page.size_pt == (792.0, 612.0) and (page.width, page.height) == (3300, 2550)
    (line,) = page.text_lines
    x0, y0, x1, y1 = line.box
    assert y1 - y0 > 3 * (x1 - x0)  # the line runs down the displayed page
    drawn = read_page(path, 0, LIMITS, pdf_text="ocr").pixels
    ink = ink_box(drawn)
    assert x0 - 3 <= ink[0] and ink[2] <= x1 + 3 and y0 - 3 <= ink[1] and ink[3] <= y1 + 3


def _sandwich(image: np.ndarray, words: str) -> bytes:
    """A scan with an invisible OCR text layer over it (what OCR tools write)."""
    pdf = pikepdf.open(io.BytesIO(scan_pdf([image])))
    first = pdf.pages[0]
    first.Resources.Font = Dictionary(F1=_helvetica(pdf))
    top = float(first.MediaBox[3])
    first.contents_add(pdf.make_stream(_text_ops([words], top, mode=3, size=10).encode()))
    return _pdf_bytes(pdf)


def test_text_hidden_behind_a_scan_is_not_born_digital(tmp_path: Path) -> None:
    image = scan_image(["Text under the scan"])
    pdf = pikepdf.open(io.BytesIO(scan_pdf([image])))
    first = pdf.pages[0]
    first.Resources.Font = Dictionary(F1=_helvetica(pdf))
    under = pdf.make_stream(b"BT /F1 8 Tf 10 10 Td (Text under the scan) Tj ET")
    first.Contents = Array([under, first.Contents])  # drawn first: the scan covers it
    path = write(tmp_path, "under.pdf", _pdf_bytes(pdf))
    page = read_page(path, 0, LIMITS)
    assert page.source == "embedded" and np.array_equal(page.pixels, gray_if_neutral(image))
    assert read_page(path, 0, LIMITS, pdf_text="keep").source == "pdf-text"


def test_mixed_document_under_each_text_mode(tmp_path: Path) -> None:
    scan = scan_image(["Scanned page"])
    ocred = scan_image(["Scanned and OCRed"])
    path = write(
        tmp_path,
        "mixed.pdf",
        combine(
            text_pdf([["Born digital"]]), scan_pdf([scan]), _sandwich(ocred, "Scanned and OCRed")
        ),
    )
    assert count_pages(path, LIMITS) == 3
    sources = {
        mode: [read_page(path, i, LIMITS, pdf_text=mode).source for i in range(3)]
        for mode in ("auto", "keep", "ocr")
    }
    assert sources == {
        "auto": ["pdf-text", "embedded", "embedded"],  # the OCR layer is redone
        "keep": ["pdf-text", "embedded", "pdf-text"],  # any text layer is kept
        "ocr": ["rasterized", "embedded", "embedded"],
    }
    kept = read_page(path, 2, LIMITS, pdf_text="keep")
    assert [line.text for line in kept.text_lines] == ["Scanned and OCRed"]
    assert np.array_equal(read_page(path, 2, LIMITS).pixels, gray_if_neutral(ocred))
    with pytest.raises(ValueError, match="pdf_text"):
        read_page(path, 0, LIMITS, pdf_text="maybe")
    with pytest.raises(BadImage, match="no page 4: the PDF has 3"):
        read_page(path, 3, LIMITS)


def test_rasterized_pages_stay_within_the_pixel_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "text.pdf", text_pdf([["Small budget"]]))
    limits = InputLimits(max_pixels=2_000_000)
    page = read_page(path, 0, limits, pdf_text="ocr")
    assert page.source == "rasterized" and page.width * page.height <= 2_000_000
    assert 140 < page.dpi < RASTER_DPI  # the most that fits: ~146 dpi for a Letter page
    assert page.pixels.shape[:2] == (page.height, page.width)


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils")
def test_rasterized_page_matches_pdftoppm(tmp_path: Path) -> None:
    a4 = (595.28, 841.89)  # not whole pixels at 300 dpi: 2480.33 x 3507.88
    path = write(tmp_path, "a4.pdf", text_pdf([["Cross-checked with poppler"]], size=a4))
    page = read_page(path, 0, LIMITS, pdf_text="ocr")
    assert page.dpi == RASTER_DPI
    subprocess.run(
        ["pdftoppm", "-r", "300", "-gray", "-f", "1", "-l", "1", str(path), str(tmp_path / "p")],
        check=True,
    )
    (out,) = tmp_path.glob("p*.pgm")
    poppler = np.asarray(Image.open(out))
    assert poppler.shape == page.pixels.shape == (3508, 2481)
    ours, theirs = ink_box(page.pixels), ink_box(poppler)
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) <= 4


# ----------------------------------------------------------------------- hostile PDFs


def test_encrypted_pdf(tmp_path: Path) -> None:
    pdf = pikepdf.open(io.BytesIO(text_pdf([["Secret text"]])))
    data = _pdf_bytes(pdf, encryption=pikepdf.Encryption(user="s3cret", owner="owner", R=6))
    path = write(tmp_path, "locked.pdf", data)
    with pytest.raises(BadImage, match=r"^encrypted: it needs its password \(ocrq run --password"):
        count_pages(path, LIMITS)
    wrong = replace(LIMITS, pdf_passwords=("guess", "nope"))
    with pytest.raises(BadImage, match=r"^encrypted: none of the 2 password\(s\) given opens it$"):
        read_page(path, 0, wrong)
    # every password is tried, in order: the right one need not be first
    right = replace(LIMITS, pdf_passwords=("guess", "s3cret"))
    assert count_pages(path, right) == 1
    page = read_page(path, 0, right)
    assert [line.text for line in page.text_lines] == ["Secret text"]
    assert "s3cret" not in repr(right)


def test_password_file_setting(tmp_path: Path) -> None:
    secrets = tmp_path / "pdf-passwords"
    secrets.write_text("first one\n\n  \nsecond\r\n", encoding="utf-8")
    settings = settings_from_env({"OCRQ_PDF_PASSWORD_FILE": str(secrets)})
    assert settings.limits.pdf_passwords == ("first one", "second")
    assert settings_from_env({}).limits.pdf_passwords == ()
    with pytest.raises(UsageError, match="OCRQ_PDF_PASSWORD_FILE cannot be read"):
        settings_from_env({"OCRQ_PDF_PASSWORD_FILE": str(tmp_path / "absent")})


def test_unreadable_pdfs(tmp_path: Path) -> None:
    good = scan_pdf([scan_image(["a"]), scan_image(["b"])])
    cases = {
        "cut.pdf": (good[: len(good) // 2], r"not a readable PDF: truncated"),
        "cut_late.pdf": (good[:-40], r"not a readable PDF: truncated"),
        "notes.pdf": (
            b"Just some notes, not a PDF.\n" * 20,
            r"not a readable PDF: no %PDF header \(looks like text\)",
        ),
        "junk.pdf": (
            b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n",
            r"not a readable PDF: corrupt",
        ),
        "empty.pdf": (b"", r"not a readable PDF: no %PDF header|empty file"),
    }
    for name, (data, reason) in cases.items():
        path = write(tmp_path, name, data)
        with pytest.raises(BadImage, match=reason):
            count_pages(path, LIMITS)
        with pytest.raises(BadImage, match=reason):
            read_page(path, 0, LIMITS)


def test_pdf_with_no_pages(tmp_path: Path) -> None:
    path = write(tmp_path, "none.pdf", _pdf_bytes(pikepdf.new()))
    with pytest.raises(BadImage, match="^PDF has no pages$"):
        count_pages(path, LIMITS)


def test_limits_pages_size_and_roots(tmp_path: Path) -> None:
    path = write(tmp_path, "three.pdf", text_pdf([["a"], ["b"], ["c"]]))
    with pytest.raises(InputRejected, match="PDF has 3 pages, over the page limit 2"):
        count_pages(path, InputLimits(max_pages=2))
    with pytest.raises(InputRejected, match="over the page limit 2"):
        read_page(path, 0, InputLimits(max_pages=2))
    with pytest.raises(InputRejected, match="over the file-size limit of 100"):
        count_pages(path, InputLimits(max_file_bytes=100))
    elsewhere = tmp_path / "roots"
    elsewhere.mkdir()
    outside = InputLimits(input_roots=(str(elsewhere),))
    with pytest.raises(InputRejected, match="outside the configured input roots"):
        count_pages(path, outside)
    with pytest.raises(InputRejected, match="outside the configured input roots"):
        read_page(path, 0, outside)
    assert count_pages(path, InputLimits(input_roots=(str(tmp_path),))) == 3


def test_pixel_bombs(tmp_path: Path) -> None:
    limits = InputLimits(max_pixels=1_000_000)
    huge = write(tmp_path, "huge.pdf", text_pdf([["Huge"]], size=(14_400, 14_400)))
    assert count_pages(huge, limits) == 1
    with pytest.raises(
        InputRejected, match="14400x14400 pt: over the pixel limit 1000000 even at 50 dpi"
    ):
        read_page(huge, 0, limits, pdf_text="ocr")
    # an image too large to decode, whatever it is drawn at
    big = write(tmp_path, "big.pdf", scan_pdf([np.full((1200, 1000), 255, np.uint8)]))
    with pytest.raises(InputRejected, match="1000x1200 image, over the pixel limit 1000000"):
        read_page(big, 0, limits)


def test_a_broken_page_fails_alone(tmp_path: Path) -> None:
    pdf = pikepdf.open(io.BytesIO(text_pdf([["one"], ["two"], ["three"]])))
    data = bytearray(_pdf_bytes(pdf, object_stream_mode=pikepdf.ObjectStreamMode.disable))
    marker = f"\n{pdf.pages[1].obj.objgen[0]} 0 obj\n".encode()
    start = data.index(marker) + len(marker)
    data[start : start + 2] = b"}}"  # page 2's dictionary no longer parses
    path = write(tmp_path, "broken.pdf", bytes(data))
    assert count_pages(path, LIMITS) == 3
    assert read_page(path, 0, LIMITS).text_lines[0].text == "one"
    with pytest.raises(BadImage, match="corrupt PDF: page 2 cannot be loaded"):
        read_page(path, 1, LIMITS)
    assert read_page(path, 2, LIMITS).text_lines[0].text == "three"


def test_javascript_attachments_and_forms_are_left_alone(tmp_path: Path) -> None:
    pdf = pikepdf.open(io.BytesIO(text_pdf([["Visible text"]])))
    # JavaScript on open and on a field; an attached file; an AcroForm text field
    pdf.Root.OpenAction = Dictionary(S=Name.JavaScript, JS=pikepdf.String("app.alert('hi');"))
    pdf.attachments["payload.exe"] = pikepdf.AttachedFileSpec(pdf, b"MZ not really")
    field = pdf.make_indirect(
        Dictionary(
            Type=Name.Annot,
            Subtype=Name.Widget,
            FT=Name.Tx,
            T=pikepdf.String("name"),
            V=pikepdf.String("typed value"),
            Rect=Array([72, 72, 300, 100]),
            AA=Dictionary(K=Dictionary(S=Name.JavaScript, JS=pikepdf.String("event.value=1;"))),
        )
    )
    pdf.pages[0].Annots = Array([field])
    pdf.Root.AcroForm = Dictionary(Fields=Array([field]))
    path = write(tmp_path, "active.pdf", _pdf_bytes(pdf))
    assert count_pages(path, LIMITS) == 1
    page = read_page(path, 0, LIMITS)
    assert [line.text for line in page.text_lines] == ["Visible text"]
    drawn = read_page(path, 0, LIMITS, pdf_text="ocr")
    assert drawn.source == "rasterized" and drawn.pixels.min() < 128


def test_page_source_is_frozen() -> None:
    page = PageSource(None, 300.0, 10, 10, None, "pdf-text")
    with pytest.raises(AttributeError):
        page.dpi = 72.0  # type: ignore[misc]
