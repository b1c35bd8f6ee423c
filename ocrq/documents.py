"""Documents in: a file is one or more pages, a page is one job.

`count_pages` (the producer, at submit time) says how many pages a file has; `read_page`
(a worker, for its one job) gives one page as a `PageSource`: its pixels, or the text
layer a born-digital PDF page already carries.

- Images (and each frame of a multi-page TIFF) go through `ocrq.images`, with its checks;
  only the asked-for frame is decoded. Their dpi is the file's own (JFIF, EXIF, pHYs, TIFF
  tags) when it lies in `images.DPI_RANGE`, else `ASSUMED_DPI`.
- PDFs are read with pdfium (pypdfium2). A page is one of:
  "embedded"   its only drawn content is one opaque, axis-aligned image covering at least
               `FULL_PAGE` of it (a scan): that image's pixels at their own resolution,
               turned upright as displayed (image matrix and /Rotate), not resampled;
  "rasterized" anything else, rendered at `RASTER_DPI` or less (the page must stay within
               `limits.max_pixels`; a page that would be over it even at `MIN_DPI` is a
               pixel bomb). A scan pdfium cannot hand over as is (a soft mask, a skewed
               or stretched placement, an image it decodes only while drawing, or pixels
               that do not match the page as drawn) is rendered at the scan's own
               resolution instead; a scan with more drawn over it, at that or RASTER_DPI,
               whichever is higher;
  "pdf-text"   its text layer, kept (see `read_page` for when).
- Only pages are drawn. pdfium runs no JavaScript unless a form environment with a
  JavaScript engine is set up: we never set one up (no `init_forms`; the pypdfium2 build
  has no V8 anyway), never open attachments, and never fill forms. Form fields and other
  annotations show as their stored appearance, as in any viewer.
- Every failure is a `BadImage` (or `InputRejected` for a limit) with a short reason.
  BaseException is never caught: a PDF that crashes pdfium is the worker's process
  isolation's business.

pdfium is not thread-safe: every call into it here holds `_PDFIUM_LOCK`.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

import cv2
import numpy as np
import pypdfium2 as pdfium
import pypdfium2.internal as pdfium_i
import pypdfium2.raw as pdfium_c

from ocrq.config import PDF_TEXT_MODES, InputLimits
from ocrq.errors import BadImage, InputRejected
from ocrq.images import count_frames, gray_if_neutral, looks_like_text, magic_format, read_frame
from ocrq.inputs import PathArg, check_input_path, open_input

# What a page's pixels (or text) came from: `PageSource.source`.
IMAGE, EMBEDDED, RASTERIZED, PDF_TEXT = "image", "embedded", "rasterized", "pdf-text"

ASSUMED_DPI = 300.0  # an image that gives no (plausible) resolution of its own
RASTER_DPI = 300.0  # the most a PDF page is rendered at (and a kept text layer's notional dpi)
MIN_DPI = 50.0  # a page that does not fit the pixel limit at this dpi is a pixel bomb
FULL_PAGE = 0.9  # share of the page an image must cover to be the page's scan
# A page whose text layer has more than this share of characters without a Unicode
# mapping (broken ToUnicode: extraction gives garbage) is read with OCR under "auto".
MAX_UNMAPPED = 0.1
# Page objects looked at to tell what a page is made of; a page with more is "complex":
# rendered (never "embedded"), and under "auto" OCRed.
MAX_SURVEY_OBJECTS = 10_000
# An embedded scan is checked against the page drawn at about this many pixels, in
# CHECK_TILES x CHECK_TILES tiles: a tile whose mean colour differs by more than
# CHECK_TOLERANCE levels means the scan alone is not what the page shows, and the page
# is drawn instead. (Scans of every kind in the tests differ by under 2; a soft mask
# hiding half of a text page, by 18.)
CHECK_PIXELS = 250_000
CHECK_TILES = 8
CHECK_TOLERANCE = 6.0
_PDF_TAIL = 1024  # "%%EOF" must be within this many bytes of the end (as for Acrobat)
# A linearized file states its length (/L) in its first object
_LINEARIZED = re.compile(rb"/Linearized\s+[\d.]+[^>]*?/L\s+(\d+)")

_PDFIUM_LOCK = threading.RLock()

Box = tuple[float, float, float, float]  # x0, y0, x1, y1: pixels, top-left origin


@dataclass(frozen=True)
class TextLayerLine:
    """One line of a PDF page's own text: its text and box (x0, y0, x1, y1) in pixels at the
    page's `dpi`, top-left origin, and its words with their boxes."""

    text: str
    box: Box
    words: tuple[tuple[str, Box], ...] = ()


@dataclass(frozen=True)
class PageSource:
    """One page, ready for a worker: pixels to OCR, or a kept text layer."""

    # uint8, HxW gray or HxWx3 RGB (as `ocrq.images` decodes); None for "pdf-text"
    pixels: np.ndarray | None
    # pixels per inch: an image's own (else ASSUMED_DPI); a PDF page's pixels relative to
    # its points (an embedded scan's own resolution); "pdf-text": RASTER_DPI, notionally
    dpi: float
    width: int  # pixels (the page at `dpi`, notionally, for "pdf-text")
    height: int
    size_pt: tuple[float, float] | None  # a PDF page's width, height in points, after /Rotate
    source: str  # IMAGE | EMBEDDED | RASTERIZED | PDF_TEXT
    text_lines: list[TextLayerLine] = field(default_factory=list)  # "pdf-text" only
    # where pixel (0, 0) is on the PDF page, in points from its top-left corner: (0, 0)
    # except for an "embedded" scan that covers less than the whole page
    origin_pt: tuple[float, float] = (0.0, 0.0)


# ----------------------------------------------------------------------------- files


def _head(path: PathArg, limits: InputLimits, size: int = 1024) -> bytes:
    """The first bytes of a checked input file (roots, type and size as `read_input`)."""
    real = check_input_path(path, limits)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise BadImage(f"cannot open file: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise InputRejected("file changed between check and read")
        try:
            return fh.read(size)
        except OSError as exc:
            raise BadImage(f"read error: {exc.strerror or exc}") from None


def _kind(path: PathArg, head: bytes) -> str:
    """Which reader a file needs, from its first bytes: "pdf", "tiff" or "image" (any
    other content goes to `ocrq.images`, which names it). Content decides, not the name;
    only a .pdf name on content of no known format is "not a readable PDF"."""
    if b"%PDF-" in head[:1024]:  # pdfium, like Acrobat, allows junk before the header
        return "pdf"
    fmt = magic_format(head)
    if fmt == "TIFF":
        return "tiff"
    if fmt is None and os.fsdecode(path).lower().endswith(".pdf"):
        what = looks_like_text(head)
        detail = f" (looks like {what})" if what else ""
        raise BadImage(f"not a readable PDF: no %PDF header{detail}")
    return "image"


def count_pages(path: PathArg, limits: InputLimits) -> int:
    """Pages in a file: 1 for an image, a multi-page TIFF's frames, a PDF's pages.

    The path is checked like `ocrq.inputs.check_input_path` (roots, type, size) first.
    Raises `BadImage` with a reason for a PDF that is not readable, is encrypted and none of
    `limits.pdf_passwords` opens it, or has no pages; `InputRejected` over `limits.max_pages` or
    `limits.max_file_bytes`. Only headers are read: a plain image counts 1 unread (a broken
    one fails its job when read)."""
    kind = _kind(path, _head(path, limits))
    if kind == "tiff":
        return count_frames(path, limits)
    if kind == "image":
        return 1
    with open_input(path, limits) as (fh, size), _pdf(fh, size, limits) as doc:
        return len(doc)


def read_page(
    path: PathArg,
    page_no: int,
    limits: InputLimits,
    pdf_text: str = "auto",
) -> PageSource:
    """Page `page_no` (from 0) of a file, alone: one page's pixels are held, never more.

    `pdf_text` says what to do with a PDF page's own text layer:
      "ocr"  always pixels;
      "keep" the text layer of every page that has one (any text, even an invisible OCR
             layer over a scan), pixels for the others;
      "auto" the text layer of a born-digital page, pixels otherwise. Born-digital: the
             page draws visible text (render mode other than invisible or clip-only), no
             single image covers `FULL_PAGE` of it (a scan with an OCR layer, visible or
             hidden behind the scan, is OCRed again) and at most `MAX_UNMAPPED` of its
             characters lack a Unicode mapping.
    Raises `BadImage` / `InputRejected` with a reason, as `count_pages` does, and for a
    page that does not exist, cannot be loaded, or is over the pixel limit."""
    if pdf_text not in PDF_TEXT_MODES:
        raise ValueError(f"pdf_text must be one of {', '.join(PDF_TEXT_MODES)}, not {pdf_text!r}")
    if page_no < 0:
        raise BadImage(f"no page {page_no + 1}")
    kind = _kind(path, _head(path, limits))
    if kind != "pdf":
        pixels, dpi = read_frame(path, page_no, limits)
        height, width = pixels.shape[:2]
        return PageSource(pixels, dpi or ASSUMED_DPI, width, height, None, IMAGE)
    with open_input(path, limits) as (fh, size), _pdf(fh, size, limits) as doc:
        if page_no >= len(doc):
            raise BadImage(f"no page {page_no + 1}: the PDF has {len(doc)} page(s)")
        return _read_pdf_page(doc, page_no, limits, pdf_text)


# ------------------------------------------------------------------------------- PDF

NEEDS_PASSWORD = (
    "encrypted: it needs its password (ocrq run --password, or OCRQ_PDF_PASSWORD_FILE where "
    "the pages are read)"
)


def _truncated(head: bytes, tail: bytes, size: int) -> str | None:
    """Why a PDF of `size` bytes, starting with `head` and ending with `tail`, looks cut
    short, or None."""
    if b"%%EOF" not in tail[-_PDF_TAIL:]:
        return "truncated (no %%EOF at the end)"
    stated = _LINEARIZED.search(head[:1024])
    if stated is not None and int(stated.group(1)) > size:
        return f"truncated ({size} of the {int(stated.group(1))} bytes it says it has)"
    return None


def _load(fh: BinaryIO, passwords: tuple[str, ...]) -> tuple[ctypes.c_void_p, object]:
    """A pdfium document handle over `fh` and the reader buffers it needs kept alive: opened
    with no password, else with the first of `passwords` that opens it. Call under the
    lock."""
    for password in (None, *passwords):
        fh.seek(0)
        reader, held = pdfium_i.get_bufreader(fh)
        secret = None if password is None else (password + "\x00").encode("utf-8")
        handle = pdfium_c.FPDF_LoadCustomDocument(reader, secret)
        if handle:
            return handle, held
        code = pdfium_c.FPDF_GetLastError()
        if code != pdfium_c.FPDF_ERR_PASSWORD:
            break
    if code == pdfium_c.FPDF_ERR_PASSWORD:
        if passwords:
            raise BadImage(f"encrypted: none of the {len(passwords)} password(s) given opens it")
        raise BadImage(NEEDS_PASSWORD)
    if code == pdfium_c.FPDF_ERR_SECURITY:
        raise BadImage("encrypted with an unsupported security handler")
    reason = {
        pdfium_c.FPDF_ERR_FORMAT: "corrupt (no valid PDF structure)",
        pdfium_c.FPDF_ERR_FILE: "cannot be read",
    }.get(code, f"corrupt (pdfium error {code})")
    raise BadImage(f"not a readable PDF: {reason}")


@contextmanager
def _pdf(fh: BinaryIO, size: int, limits: InputLimits) -> Iterator[pdfium.PdfDocument]:
    """An open PDF of at least one and at most `limits.max_pages` pages, under the lock.
    pdfium reads from `fh` what the pages asked for need (a custom document), so a job
    reading one page of a long PDF holds that page, not the whole file."""
    head = fh.read(1024)
    fh.seek(max(0, size - _PDF_TAIL))
    tail = fh.read(_PDF_TAIL)
    fh.seek(0)
    if not size:
        raise BadImage("empty file (0 bytes)")
    if b"%PDF-" not in head:
        what = looks_like_text(head)
        raise BadImage(
            "not a readable PDF: no %PDF header" + (f" (looks like {what})" if what else "")
        )
    cut = _truncated(head, tail, size)
    if cut:
        # pdfium rebuilds a cut file's cross-reference table from what is left and may
        # show fewer pages than the file had: refuse it rather than lose pages quietly
        raise BadImage(f"not a readable PDF: {cut}")
    with _PDFIUM_LOCK:
        # `held` (the reader's buffers) and `fh`, open until this returns, outlive the document
        handle, held = _load(fh, limits.pdf_passwords)
        # The helper takes ownership of the handle (closes it); no forms, no JavaScript.
        doc = pdfium.PdfDocument(handle)
        try:
            pages = len(doc)
            if pages <= 0:
                raise BadImage("PDF has no pages")
            if pages > limits.max_pages:
                raise InputRejected(
                    f"PDF has {pages} pages, over the page limit {limits.max_pages}"
                )
            yield doc
        finally:
            doc.close()


def _read_pdf_page(
    doc: pdfium.PdfDocument, page_no: int, limits: InputLimits, pdf_text: str
) -> PageSource:
    label = f"page {page_no + 1}"
    try:
        page = doc.get_page(page_no)
    except pdfium.PdfiumError:
        raise BadImage(f"corrupt PDF: {label} cannot be loaded") from None
    textpage = None
    try:
        geo = _Geometry.of(page, label)
        survey = _survey(page, geo, limits, label)
        born_digital = survey.visible_text and not survey.full_page_image
        if pdf_text == "keep" or (pdf_text == "auto" and born_digital):
            textpage = page.get_textpage()
            lines, unmapped = _text_lines(textpage, geo, RASTER_DPI)
            if lines and (pdf_text == "keep" or unmapped <= MAX_UNMAPPED):
                width, height = geo.pixels(RASTER_DPI)
                return PageSource(
                    None, RASTER_DPI, width, height, geo.size, PDF_TEXT, text_lines=lines
                )
        if survey.scan is not None:
            got = _embedded(page, survey.scan, geo, limits, label)
            if got is not None:
                return got
            # a scan pdfium cannot hand over as is: drawn at its own resolution; one with
            # more drawn over it: at least at RASTER_DPI, for what is drawn over it
            dpi = survey.scan.dpi if survey.scan.alone else max(survey.scan.dpi, RASTER_DPI)
            return _rasterize(page, geo, limits, label, dpi=dpi)
        return _rasterize(page, geo, limits, label)
    except MemoryError:
        raise BadImage(f"PDF {label} too large to render (out of memory)") from None
    except (pdfium.PdfiumError, ValueError, KeyError, OverflowError) as exc:
        raise BadImage(f"corrupt PDF: {label}: {' '.join(str(exc).split())[:120]}") from None
    finally:
        if textpage is not None:
            textpage.close()
        page.close()


# A 2-D affine matrix (a, b, c, d, e, f): x' = a x + c y + e, y' = b x + d y + f (PDF's).
Matrix = tuple[float, float, float, float, float, float]


def _then(m: Matrix, n: Matrix) -> Matrix:
    """`m` followed by `n`."""
    a, b, c, d, e, f = m
    A, B, C, D, E, F = n
    return (
        a * A + b * C,
        a * B + b * D,
        c * A + d * C,
        c * B + d * D,
        e * A + f * C + E,
        e * B + f * D + F,
    )


def _apply(m: Matrix, x: float, y: float) -> tuple[float, float]:
    return (m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5])


@dataclass(frozen=True)
class _Geometry:
    """A page's visible box and rotation: maps page space to points from the top-left
    of the page as displayed (what pdfium renders)."""

    size: tuple[float, float]  # width, height in points, after /Rotate
    to_device: Matrix

    @classmethod
    def of(cls, page: pdfium.PdfPage, label: str) -> _Geometry:
        x0, y0, x1, y1 = page.get_bbox()
        width, height = page.get_size()
        if not all(map(math.isfinite, (x0, y0, x1, y1, width, height))) or min(width, height) <= 0:
            raise BadImage(f"corrupt PDF: {label} has an empty or invalid page box")
        to_device = {
            0: (1.0, 0.0, 0.0, -1.0, -x0, y1),
            90: (0.0, 1.0, 1.0, 0.0, -y0, -x0),
            180: (-1.0, 0.0, 0.0, 1.0, x1, -y0),
            270: (0.0, -1.0, -1.0, 0.0, y1, x1),
        }[page.get_rotation()]
        return cls((float(width), float(height)), to_device)

    def pixels(self, dpi: float) -> tuple[int, int]:
        """The page's size in whole pixels at `dpi`, rounded up as pdftoppm does, but a
        size a hair over a whole number (float error: 3300.0000000000005, or a scan's dpi
        from float32 page sizes) is that number."""
        return tuple(max(1, math.ceil(v * dpi / 72.0 - 0.01)) for v in self.size)

    def fit_dpi(self, limits: InputLimits, label: str, dpi: float = RASTER_DPI) -> float:
        """`dpi`, lowered as far as the pixel limit needs; a pixel bomb below MIN_DPI."""
        width, height = self.size
        fit = 72.0 * math.sqrt(limits.max_pixels / (width * height))
        dpi = min(dpi, fit)
        while dpi >= MIN_DPI and math.prod(self.pixels(dpi)) > limits.max_pixels:
            dpi *= 0.999
        if dpi < MIN_DPI:
            raise InputRejected(
                f"PDF {label} is {width:.0f}x{height:.0f} pt: over the pixel limit "
                f"{limits.max_pixels} even at {MIN_DPI:.0f} dpi"
            )
        return dpi


@dataclass(frozen=True)
class _Scan:
    """A full-page image and where it lands on the displayed page."""

    image: pdfium.PdfImage
    to_device: Matrix  # image space (unit square) -> points from the displayed top-left
    px: tuple[int, int]  # its width, height in pixels
    dpi: float  # its effective resolution on the page (from its area)
    alone: bool  # nothing else to see on the page (what is under an opaque scan is not)
    opaque: bool  # no mask or soft mask, a known colour space: its samples are the page


@dataclass
class _Survey:
    visible_text: bool = False
    full_page_image: bool = False
    scan: _Scan | None = None


_HIDDEN_TEXT = (pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE, pdfium_c.FPDF_TEXTRENDERMODE_CLIP)
_QUIET_ANNOTS = (pdfium_c.FPDF_ANNOT_LINK, pdfium_c.FPDF_ANNOT_POPUP)


def _chain(obj: pdfium.PdfObject) -> Matrix:
    """What takes coordinates of `obj`'s content stream to page space (its Form XObjects)."""
    m: Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    form = obj.container
    while form is not None:
        m = _then(m, tuple(form.get_matrix().get()))
        form = form.container
    return m


def _rect(m: Matrix, points: list[tuple[float, float]]) -> Box:
    moved = [_apply(m, x, y) for x, y in points]
    xs, ys = [p[0] for p in moved], [p[1] for p in moved]
    return (min(xs), min(ys), max(xs), max(ys))


def _is_painted(obj: pdfium.PdfObject) -> bool:
    if obj.type == pdfium_c.FPDF_PAGEOBJ_TEXT:
        return pdfium_c.FPDFTextObj_GetTextRenderMode(obj) not in _HIDDEN_TEXT
    if obj.type == pdfium_c.FPDF_PAGEOBJ_PATH:
        fill, stroke = ctypes.c_int(0), ctypes.c_int(0)
        if not pdfium_c.FPDFPath_GetDrawMode(obj, fill, stroke):
            return True
        return fill.value != pdfium_c.FPDF_FILLMODE_NONE or bool(stroke.value)
    return obj.type in (pdfium_c.FPDF_PAGEOBJ_IMAGE, pdfium_c.FPDF_PAGEOBJ_SHADING)


def _survey(page: pdfium.PdfPage, geo: _Geometry, limits: InputLimits, label: str) -> _Survey:
    """What the page draws: visible text? one image over (nearly) all of it, and is that
    image all there is to see? Also refuses an image over the pixel limit (pdfium would
    decode it whole to draw it)."""
    out = _Survey()
    page_w, page_h = geo.size
    drawn: list[tuple[int, Box]] = []  # painted objects other than images: order, box
    images: list[tuple[int, pdfium.PdfImage, Matrix, Box]] = []
    everywhere = (-math.inf, -math.inf, math.inf, math.inf)
    complex_page = False
    objects = page.get_objects(max_depth=8)
    order = 0
    while True:
        try:
            obj = next(objects, None)
        except pdfium.PdfiumError:  # an object pdfium cannot tell: draw the page instead
            complex_page = True
            break
        if obj is None:
            break
        order += 1
        if order > MAX_SURVEY_OBJECTS:
            complex_page = True
            break
        if obj.type == pdfium_c.FPDF_PAGEOBJ_FORM:
            continue
        if obj.type == pdfium_c.FPDF_PAGEOBJ_IMAGE:
            try:
                w, h = obj.get_px_size()
                matrix = tuple(obj.get_matrix().get())
            except pdfium.PdfiumError:
                drawn.append((order, everywhere))
                continue
            if w * h > limits.max_pixels:
                raise InputRejected(
                    f"PDF {label} has a {w}x{h} image, over the pixel limit {limits.max_pixels}"
                )
            to_device = _then(_then(matrix, _chain(obj)), geo.to_device)
            box = _rect(to_device, [(0, 0), (1, 0), (1, 1), (0, 1)])
            images.append((order, obj, to_device, box))
            continue
        if not _is_painted(obj):
            continue
        if obj.type == pdfium_c.FPDF_PAGEOBJ_TEXT:
            out.visible_text = True
        try:
            left, bottom, right, top = obj.get_bounds()
        except pdfium.PdfiumError:
            drawn.append((order, everywhere))
            continue
        corners = [(left, bottom), (right, bottom), (right, top), (left, top)]
        drawn.append((order, _rect(_then(_chain(obj), geo.to_device), corners)))

    def covered(box: Box) -> float:
        w = min(box[2], page_w) - max(box[0], 0.0)
        h = min(box[3], page_h) - max(box[1], 0.0)
        return max(w, 0.0) * max(h, 0.0) / (page_w * page_h)

    big = [entry for entry in images if covered(entry[3]) >= FULL_PAGE]
    out.full_page_image = bool(big)
    if len(big) != 1 or complex_page:
        return out
    order, image, to_device, box = big[0]

    def hidden(other_order: int, other: Box, slack: float = 0.5) -> bool:
        """Drawn before the scan and inside it: the opaque scan covers it."""
        return other_order < order and (
            other[0] >= box[0] - slack
            and other[1] >= box[1] - slack
            and other[2] <= box[2] + slack
            and other[3] <= box[3] + slack
        )

    px = image.get_px_size()
    a, b, c, d = to_device[:4]
    area = abs(a * d - b * c)  # points^2 the image covers
    if min(px) <= 0 or area <= 0:
        return out
    dpi = 72.0 * math.sqrt(px[0] * px[1] / area)
    others = [o for o in drawn if not hidden(*o)]
    others += [(o, bx) for o, _, _, bx in images if o != order and not hidden(o, bx)]
    alone = not others and not _annotated(page)
    try:
        opaque = not pdfium_c.FPDFPageObj_HasTransparency(image) and (
            image.get_metadata().colorspace != pdfium_c.FPDF_COLORSPACE_UNKNOWN
        )
    except pdfium.PdfiumError:
        opaque = False
    out.scan = _Scan(image, to_device, px, dpi, alone, opaque)
    return out


def _annotated(page: pdfium.PdfPage) -> bool:
    """True when an annotation that draws something (not a link or popup) is on the page."""
    for i in range(max(pdfium_c.FPDFPage_GetAnnotCount(page), 0)):
        annot = pdfium_c.FPDFPage_GetAnnot(page, i)
        if not annot:
            return True
        try:
            if pdfium_c.FPDFAnnot_GetSubtype(annot) not in _QUIET_ANNOTS:
                return True
        finally:
            pdfium_c.FPDFPage_CloseAnnot(annot)
    return False


def _axis(vec: tuple[float, float]) -> tuple[int, int] | None:
    """(axis, sign) of a vector along x (0) or y (1) within 1 %, else None."""
    x, y = vec
    if abs(y) <= 0.01 * abs(x):
        return (0, 1 if x > 0 else -1)
    if abs(x) <= 0.01 * abs(y):
        return (1, 1 if y > 0 else -1)
    return None


def _embedded(
    page: pdfium.PdfPage, scan: _Scan, geo: _Geometry, limits: InputLimits, label: str
) -> PageSource | None:
    """The scan's own pixels, upright as displayed; None when they cannot be taken as
    they are (the caller then renders the page at the scan's resolution)."""
    if not (scan.alone and scan.opaque):
        return None
    # Image space: the unit square, the first row of samples at y = 1.
    top_left = _apply(scan.to_device, 0.0, 1.0)
    top_right = _apply(scan.to_device, 1.0, 1.0)
    bottom_left = _apply(scan.to_device, 0.0, 0.0)
    along_u = _axis((top_right[0] - top_left[0], top_right[1] - top_left[1]))  # columns
    along_v = _axis((bottom_left[0] - top_left[0], bottom_left[1] - top_left[1]))  # rows
    if along_u is None or along_v is None or along_u[0] == along_v[0]:
        return None  # skewed or sheared on the page
    extent = [abs(top_right[0] - top_left[0]) + abs(bottom_left[0] - top_left[0])]
    extent.append(abs(top_right[1] - top_left[1]) + abs(bottom_left[1] - top_left[1]))
    px_x, px_y = scan.px if along_u[0] == 0 else scan.px[::-1]
    dpi_x, dpi_y = 72.0 * px_x / extent[0], 72.0 * px_y / extent[1]
    if abs(dpi_x - dpi_y) > 0.02 * max(dpi_x, dpi_y):
        return None  # stretched: square pixels only come from rendering
    try:
        bitmap = scan.image.get_bitmap(render=False)
    except pdfium.PdfiumError:
        return None  # a filter pdfium decodes only while drawing
    try:
        pixels = _bitmap_pixels(bitmap)
    finally:
        bitmap.warn_on_close = False  # copied out of it: nothing uses its buffer after this
        bitmap.close()
    if pixels is None or pixels.shape[1::-1] != scan.px:
        return None
    if along_u[0] == 1:  # columns run down the page: transpose
        pixels = pixels.swapaxes(0, 1)
    x_sign, y_sign = (along_u[1], along_v[1]) if along_u[0] == 0 else (along_v[1], along_u[1])
    if y_sign < 0:
        pixels = pixels[::-1]
    if x_sign < 0:
        pixels = pixels[:, ::-1]
    pixels = gray_if_neutral(np.ascontiguousarray(pixels))
    corners = (top_left, top_right, bottom_left)
    origin = (min(p[0] for p in corners), min(p[1] for p in corners))
    dpi = (dpi_x + dpi_y) / 2
    if not _drawn_alike(page, geo, pixels, origin, dpi):
        return None
    height, width = pixels.shape[:2]
    return PageSource(pixels, dpi, width, height, geo.size, EMBEDDED, origin_pt=origin)


def _bitmap_pixels(bitmap: pdfium.PdfBitmap) -> np.ndarray | None:
    """A pdfium bitmap as our own uint8 gray or RGB array; None for a format we do not
    take as is (alpha)."""
    view = bitmap.to_numpy()
    fmt = bitmap.format
    if fmt == pdfium_c.FPDFBitmap_Gray:
        return np.array(view, dtype=np.uint8, order="C")
    if fmt in (pdfium_c.FPDFBitmap_BGR, pdfium_c.FPDFBitmap_BGRx):
        channels = [0, 1, 2] if bitmap.rev_byteorder else [2, 1, 0]
        return np.ascontiguousarray(view[:, :, channels])
    return None


def _render(page: pdfium.PdfPage, width: int, height: int) -> np.ndarray:
    """The page drawn on white into a new width x height RGB array. pdfium draws straight
    into it: the page is held once."""
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    bitmap = pdfium_c.FPDFBitmap_CreateEx(
        width, height, pdfium_c.FPDFBitmap_BGR, pixels.ctypes.data, width * 3
    )
    if not bitmap:
        raise MemoryError(f"pdfium cannot make a {width}x{height} bitmap")
    try:
        pdfium_c.FPDFBitmap_FillRect(bitmap, 0, 0, width, height, 0xFFFFFFFF)
        # Annotations are drawn as stored (their appearance streams); form fields are not
        # filled: no form environment, see the module doc. RGB order, not pdfium's BGR.
        flags = pdfium_c.FPDF_ANNOT | pdfium_c.FPDF_REVERSE_BYTE_ORDER
        flags |= pdfium_c.FPDF_RENDER_LIMITEDIMAGECACHE
        pdfium_c.FPDF_RenderPageBitmap(bitmap, page, 0, 0, width, height, 0, flags)
    finally:
        pdfium_c.FPDFBitmap_Destroy(bitmap)  # the buffer is ours: only the header goes
    return pixels


def _rasterize(
    page: pdfium.PdfPage,
    geo: _Geometry,
    limits: InputLimits,
    label: str,
    dpi: float = RASTER_DPI,
) -> PageSource:
    """The page rendered at `dpi`, lowered to fit the pixel limit (a scan's own resolution
    above RASTER_DPI is kept; below MIN_DPI it is raised to that)."""
    dpi = geo.fit_dpi(limits, label, max(dpi, MIN_DPI))
    width, height = geo.pixels(dpi)
    pixels = gray_if_neutral(_render(page, width, height))
    return PageSource(pixels, dpi, width, height, geo.size, RASTERIZED)


def _tile_means(pixels: np.ndarray) -> np.ndarray:
    """Mean of each channel over CHECK_TILES x CHECK_TILES tiles: (tiles, tiles, 3)."""
    rgb = pixels[:, :, None] if pixels.ndim == 2 else pixels
    return np.array(
        [
            [tile.mean(axis=(0, 1)) for tile in np.array_split(band, CHECK_TILES, axis=1)]
            for band in np.array_split(rgb, CHECK_TILES, axis=0)
        ],
        dtype=np.float64,
    )


def _drawn_alike(
    page: pdfium.PdfPage,
    geo: _Geometry,
    pixels: np.ndarray,
    origin: tuple[float, float],
    dpi: float,
) -> bool:
    """Whether the page as pdfium draws it (small: about CHECK_PIXELS) shows what
    `pixels` show: the mean colour of each tile within CHECK_TOLERANCE. Means are what
    resampling keeps, so only a real difference counts: a soft mask (pdfium does not
    report one), a colour or decode pdfium applies only when drawing, content we missed."""
    height, width = pixels.shape[:2]
    k = min(1.0, math.sqrt(CHECK_PIXELS / (width * height)))
    page_w, page_h = geo.pixels(dpi * k)
    drawn = _render(page, page_w, page_h)
    x0 = min(max(round(origin[0] * dpi * k / 72.0), 0), page_w - 1)
    y0 = min(max(round(origin[1] * dpi * k / 72.0), 0), page_h - 1)
    crop = drawn[y0 : y0 + max(1, round(height * k)), x0 : x0 + max(1, round(width * k))]
    if min(crop.shape[:2]) < CHECK_TILES:
        return True  # too small to tell anything
    ours = cv2.resize(pixels, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_AREA)
    worst = np.abs(_tile_means(ours) - _tile_means(crop)).max()
    return bool(worst <= CHECK_TOLERANCE)


# ----------------------------------------------------------------------- text layer

_BREAKS = ("\r", "\n")
_GAP = (" ", None)  # a space between words


def _union(boxes: list[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _text_lines(
    textpage: pdfium.PdfTextPage, geo: _Geometry, dpi: float
) -> tuple[list[TextLayerLine], float]:
    """The page's text as lines (pdfium's own line breaks, in its order) with boxes in
    pixels at `dpi` (each character's font box, so a line is as tall as its font), and the
    share of its characters that have no Unicode mapping."""
    scale = dpi / 72.0
    width, height = geo.pixels(dpi)
    lines: list[TextLayerLine] = []
    chars: list[tuple[str, Box | None]] = []
    unmapped = total = 0

    def flush() -> None:
        text = " ".join("".join(ch for ch, _ in chars).split())
        if text:
            words = _words(chars)
            box = _union([bx for _, bx in words]) if words else (0.0, 0.0, 0.0, 0.0)
            lines.append(TextLayerLine(text, box, tuple(words)))
        chars.clear()

    for i in range(textpage.count_chars()):
        code = pdfium_c.FPDFText_GetUnicode(textpage, i)
        ch = "-" if code == 2 else chr(code) if 0 < code < 0x110000 else ""
        if ch in _BREAKS:
            flush()
            continue
        if not ch or ch.isspace() or not ch.isprintable():
            chars.append(_GAP)
            continue
        total += 1
        if code == 0xFFFD or pdfium_c.FPDFText_HasUnicodeMapError(textpage, i) == 1:
            unmapped += 1
        try:
            left, bottom, right, top = textpage.get_charbox(i, loose=True)
        except pdfium.PdfiumError:
            chars.append((ch, None))  # in the text, in no box
            continue
        x0, y0, x1, y1 = _rect(geo.to_device, [(left, bottom), (right, top)])
        box = (
            min(max(x0 * scale, 0.0), width),
            min(max(y0 * scale, 0.0), height),
            min(max(x1 * scale, 0.0), width),
            min(max(y1 * scale, 0.0), height),
        )
        chars.append((ch, box))
    flush()
    return lines, (unmapped / total if total else 0.0)


def _words(chars: list[tuple[str, Box | None]]) -> list[tuple[str, Box]]:
    """Runs of characters between spaces, each with the union of its characters' boxes
    (a word none of whose characters has a box is left out)."""
    words: list[tuple[str, Box]] = []
    text, boxes = "", []
    for ch, box in [*chars, _GAP]:
        if ch == " ":
            if text and boxes:
                words.append((text, _union(boxes)))
            text, boxes = "", []
            continue
        text += ch
        if box is not None:
            boxes.append(box)
    return words
