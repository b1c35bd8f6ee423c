"""Searchable PDF export: the original pages, unchanged, with an invisible text layer.

- `pdf_from_pdf(source_pdf, pages, out)`: every page of the source PDF as it was, plus a
  text layer on each page that has a PageResult with `source == "ocr"`; pages whose text
  came from the PDF itself ("pdf-text") and pages without a result get nothing. The file is
  rewritten by qpdf with all stream data copied as it is (no content stream or image is
  decoded or compressed anew), so every page renders pixel-identical. It is not an
  incremental update: objects may be renumbered, and an encrypted source (one pikepdf can
  open without a password) is written unencrypted.
- `pdf_from_image(image_path, page, out)` and `pdf_from_image_pages(image_path, pages,
  out)` (every frame of a TIFF; other formats: the first frame, as ocrq reads them): the
  image embedded by img2pdf, which copies a JPEG, JPEG 2000 or CCITT G4 stream as it is
  and a PNG's compressed data as it is; other formats are stored losslessly (Flate).
  EXIF/TIFF orientation becomes the page's /Rotate (so the page shows the image upright,
  as ocrq reads it); a mirrored orientation, which /Rotate cannot express, or alpha deeper
  than 8 bits is applied to the pixels and the frame stored as PNG instead.

The text layer is one content stream appended to the page (the page's own streams are put
in q ... Q first, so the graphics state they leave cannot move ours), drawn in text render
mode 3 (invisible) with Helvetica, a PDF standard font (not embedded). Each word is drawn at
the left of its box, its font size such that Helvetica's ascent + descent span the box
height, its baseline at the box bottom less the descent, and its horizontal scaling (Tz)
such that its advance is the box width: a viewer's selection and search highlight cover the
printed word. A space is drawn between the words of a line, filling the gap, so text
extraction gives spaces between words; lines are separate baselines, so it gives line
breaks between lines. A line is a run of regions with the same block, paragraph and visual
`line`, as in the hOCR/ALTO exports. The stream follows reading order (`pdftotext -raw`
gives exactly that order; plain `pdftotext` its own layout order, the same on ordinary
pages).

Boxes: a region's words are `PageResult.words` when given, else `words_of(region)`; they
are axis-aligned (a skewed quad is drawn as its bounding box, upright). Page pixels map to
PDF points as `x * 72 / dpi` (divided by the page's /UserUnit, if any), from the top-left
of the page as displayed: the MediaBox (its origin honoured; `box="/CropBox"` when the page
images were rendered from the CropBox) turned by the page's /Rotate.

Fonts and characters: every code is given the same width (500/1000 em) in the fonts'
/Widths, so fitting a word needs no font metrics. Characters in WinAnsiEncoding (cp1252)
are drawn with that encoding. Every other character (Polish, Greek, Cyrillic, CJK, emoji,
...) is kept: it gets a code in one of a few more Helvetica instances (189 characters
each) whose /ToUnicode maps the codes to those characters, so search, copy and pdftotext
return them (the glyphs are invisible, so which Helvetica glyph a code names does not
matter). Only C0/C1 control characters and lone surrogates are dropped, and runs of white
space inside a word become one space. No text makes it raise.

Size: the output is the input plus the text layers (about 10-15 bytes a word, compressed)
and about 2 KB of fonts and objects per document.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pikepdf
from pikepdf import Array, Dictionary, Name

from ocrq.errors import BadImage
from ocrq.results import PageResult, Word
from producer.hocr import region_words

# Helvetica's ascent and descent (AFM, per em): what viewers and pdftotext use for the
# standard font's glyph boxes
ASCENT = 0.718
DESCENT = 0.207
GLYPH_WIDTH = 500  # every code's width in our fonts' /Widths, per 1000 em
# Decimals written in the text layer: positions and font sizes to 0.1 pt (0.035 mm),
# horizontal scaling to 1 %: finer only grows the file (a word is ~12 bytes compressed)
TEXT_PLACES = 1
TZ_PLACES = 0
FIRST_CODE, LAST_CODE = 32, 255

# codes the WinAnsi font draws as themselves: cp1252 minus controls, DEL, NBSP, soft hyphen
_WINANSI_SKIP = {0x7F, 0xA0, 0xAD}
# codes handed out in the extra fonts (ToUnicode): printable ASCII and Latin-1 ranges
_EXTRA_CODES = [c for c in range(0x21, 0x7F)] + [c for c in range(0xA1, 0x100) if c != 0xAD]
_DROP = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

FONT_NAME_PREFIX = "OcrqF"


def _winansi_code(ch: str) -> int | None:
    try:
        raw = ch.encode("cp1252")
    except UnicodeEncodeError:
        return None
    code = raw[0]
    if len(raw) != 1 or code < 0x20 or code in _WINANSI_SKIP:
        return None
    return code


@dataclass
class _Font:
    index: int
    obj: pikepdf.Object  # the font dictionary (indirect)
    to_unicode: dict[int, str] = field(default_factory=dict)  # code -> character


class _Fonts:
    """The document's text-layer fonts: font 0 is Helvetica with WinAnsiEncoding, fonts
    1.. are Helvetica instances whose codes stand for other characters (ToUnicode)."""

    def __init__(self, pdf: pikepdf.Pdf):
        self.pdf = pdf
        self.fonts: list[_Font] = []
        self.widths: pikepdf.Object | None = None  # one /Widths array for all our fonts
        self.extra: dict[str, tuple[int, int]] = {}  # character -> (font index, code)

    def _font(self, index: int) -> _Font:
        while len(self.fonts) <= index:
            if self.widths is None:
                widths = Array([GLYPH_WIDTH] * (LAST_CODE - FIRST_CODE + 1))
                self.widths = self.pdf.make_indirect(widths)
            font = Dictionary(
                Type=Name.Font,
                Subtype=Name.Type1,
                BaseFont=Name.Helvetica,
                Encoding=Name.WinAnsiEncoding,
                FirstChar=FIRST_CODE,
                LastChar=LAST_CODE,
                Widths=self.widths,
            )
            self.fonts.append(_Font(len(self.fonts), self.pdf.make_indirect(font)))
        return self.fonts[index]

    def space(self) -> tuple[int, bytes]:
        self._font(0)
        return 0, b" "

    def encode(self, text: str) -> list[tuple[int, bytes]]:
        """`text` as runs of (font index, codes)."""
        runs: list[tuple[int, bytearray]] = []
        for ch in text:
            code = _winansi_code(ch)
            if code is not None:
                index = 0
            else:
                index, code = self._extra(ch)
            self._font(index)
            if runs and runs[-1][0] == index:
                runs[-1][1].append(code)
            else:
                runs.append((index, bytearray([code])))
        return [(index, bytes(codes)) for index, codes in runs]

    def _extra(self, ch: str) -> tuple[int, int]:
        if ch not in self.extra:
            n = len(self.extra)
            index, code = 1 + n // len(_EXTRA_CODES), _EXTRA_CODES[n % len(_EXTRA_CODES)]
            self._font(index).to_unicode[code] = ch
            self.extra[ch] = (index, code)
        return self.extra[ch]

    def finish(self) -> None:
        """Write each extra font's ToUnicode CMap (once all pages are done)."""
        for font in self.fonts[1:]:
            data = _to_unicode_cmap(font.to_unicode)
            stream = pikepdf.Stream(self.pdf, zlib.compress(data, 9))
            stream.Filter = Name.FlateDecode
            font.obj.ToUnicode = self.pdf.make_indirect(stream)


def _to_unicode_cmap(mapping: dict[int, str]) -> bytes:
    entries = sorted(mapping.items())
    lines = [
        "/CIDInit /ProcSet findresource begin",
        "12 dict begin",
        "begincmap",
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
        "/CMapName /Adobe-Identity-UCS def",
        "/CMapType 2 def",
        "1 begincodespacerange",
        "<00> <FF>",
        "endcodespacerange",
    ]
    for start in range(0, len(entries), 100):
        chunk = entries[start : start + 100]
        lines.append(f"{len(chunk)} beginbfchar")
        for code, ch in chunk:
            lines.append(f"<{code:02X}> <{ch.encode('utf-16-be').hex().upper()}>")
        lines.append("endbfchar")
    lines += [
        "endcmap",
        "CMapName currentdict /CMap defineresource pop",
        "end",
        "end",
    ]
    return ("\n".join(lines) + "\n").encode("ascii")


def clean_text(text: str) -> str:
    """A word's text as drawn: without control and surrogate code points, spaces (other
    than the ones we draw between words) made plain spaces."""
    text = _DROP.sub("", text)
    return " ".join(text.split())


def _number(value: float, places: int = 2) -> str:
    text = f"{value:.{places}f}".rstrip("0").rstrip(".") if places else f"{value:.0f}"
    return "0" if text in ("", "-0") else text


@dataclass(frozen=True)
class PageGeometry:
    """The page as displayed: its box in default user space and its /Rotate."""

    x0: float
    y0: float
    x1: float
    y1: float
    rotate: int  # 0, 90, 180 or 270

    @property
    def size(self) -> tuple[float, float]:
        """Width and height in points as displayed (after /Rotate)."""
        w, h = self.x1 - self.x0, self.y1 - self.y0
        return (h, w) if self.rotate in (90, 270) else (w, h)

    def matrix(self) -> tuple[float, ...]:
        """The `cm` from displayed points (origin bottom-left, y up) to user space."""
        x0, y0, x1, y1 = self.x0, self.y0, self.x1, self.y1
        return {
            0: (1, 0, 0, 1, x0, y0),
            90: (0, 1, -1, 0, x1, y0),
            180: (-1, 0, 0, -1, x1, y1),
            270: (0, -1, 1, 0, x0, y1),
        }[self.rotate]


def page_geometry(page: pikepdf.Page, box: str = "/MediaBox") -> PageGeometry:
    """The geometry of `page` (box: "/MediaBox" or "/CropBox", whichever the page images
    were rendered from)."""
    rect = page.cropbox if box == "/CropBox" else page.mediabox
    xs = sorted((float(rect[0]), float(rect[2])))
    ys = sorted((float(rect[1]), float(rect[3])))
    rotate = int(page.obj.get("/Rotate", 0))
    rotate = (round(rotate / 90) * 90) % 360
    return PageGeometry(xs[0], ys[0], xs[1], ys[1], rotate)


def _used_fonts(result: PageResult, fonts: _Fonts) -> list[int]:
    """Indexes of the fonts that the page's text needs (encoding it assigns the codes)."""
    used: set[int] = set()
    for line in _lines(result):
        if len(line) > 1:
            used.add(fonts.space()[0])
        for word in line:
            used.update(index for index, _ in fonts.encode(clean_text(word.text)))
    return sorted(used)


def text_layer(
    result: PageResult,
    geometry: PageGeometry,
    fonts: _Fonts,
    names: dict[int, str],
    user_unit: float = 1.0,
) -> bytes:
    """The text-layer operators of one page in displayed points (a `cm` to user space
    goes before them); `names` gives each font index its resource name."""
    scale = 72.0 / result.dpi / user_unit
    _, page_h = geometry.size
    em = GLYPH_WIDTH / 1000
    ops: list[str] = []
    state: dict[str, object] = {"font": None, "tz": None}

    def set_font(index: int, size: str) -> None:
        if state["font"] != (index, size):
            ops.append(f"/{names[index]} {size} Tf")
            state["font"] = (index, size)

    def set_tz(tz: float) -> None:
        value = _number(tz, TZ_PLACES)
        if state["tz"] != value:
            ops.append(f"{value} Tz")
            state["tz"] = value

    for line in _lines(result):
        for k, word in enumerate(line):
            ox, oy = result.origin_pt
            x0, x1 = (v * scale + ox / user_unit for v in (word.box[0], word.box[2]))
            top, bottom = (v * scale + oy / user_unit for v in (word.box[1], word.box[3]))
            text = clean_text(word.text)
            size = max(bottom - top, 0.5 * scale) / (ASCENT + DESCENT)
            size_text = _number(size, TEXT_PLACES)
            baseline = page_h - bottom + DESCENT * size
            set_tz(100 * max(x1 - x0, 0.01) / (len(text) * em * size))
            ops.append(f"1 0 0 1 {_number(x0, TEXT_PLACES)} {_number(baseline, TEXT_PLACES)} Tm")
            for index, codes in fonts.encode(text):
                set_font(index, size_text)
                ops.append(f"{_pdf_string(codes)} Tj")
            if k + 1 < len(line):
                # a space from this word's end to the next word's start (there next
                # word's Tm puts it, whatever this space's width)
                gap = max(line[k + 1].box[0] * scale - x1, 0.02 * size)
                index, codes = fonts.space()
                set_font(index, size_text)
                set_tz(100 * gap / (em * size))
                ops.append(f"{_pdf_string(codes)} Tj")
    return "\n".join(ops).encode("ascii")


def _pdf_string(codes: bytes) -> str:
    """Codes as a PDF literal string: printable ASCII as it is, the rest escaped."""
    out = []
    for code in codes:
        if code in b"()\\":
            out.append("\\" + chr(code))
        elif 0x20 <= code < 0x7F:
            out.append(chr(code))
        else:
            out.append(f"\\{code:03o}")
    return "(" + "".join(out) + ")"


def _lines(result: PageResult) -> list[list[Word]]:
    """The page's words in reading order, as lines: a run of regions with the same block,
    paragraph and visual `line` is one line (as in the hOCR and ALTO exports)."""
    lines: list[list[Word]] = []
    previous = None
    for i, region in enumerate(result.regions):
        words = [w for w in region_words(result, i) if clean_text(w.text)]
        if not words:
            continue
        block = result.blocks[i] if result.blocks is not None else 0
        paragraph = result.paragraphs[i] if result.paragraphs is not None else 0
        key = (block, paragraph, region.line)
        if key != previous:
            lines.append([])
        lines[-1].extend(words)
        previous = key
    return lines


def add_text_layers(
    pdf: pikepdf.Pdf,
    results: Sequence[PageResult],
    *,
    box: str = "/MediaBox",
    check_size: bool = False,
) -> int:
    """Add the invisible text layer of each OCR result to its page of `pdf` (by
    `PageResult.page`); returns how many pages got one. With `check_size`, a result whose
    page size (pixels at its dpi) differs from the PDF page's by more than a pixel is an
    error (ValueError)."""
    fonts = _Fonts(pdf)
    done = 0
    for result in results:
        if not 0 <= result.page < len(pdf.pages):
            raise ValueError(f"page {result.page}: the PDF has {len(pdf.pages)} pages")
        if result.source != "ocr":
            continue
        if not result.dpi or result.dpi <= 0:
            raise ValueError(f"page {result.page}: dpi must be positive, not {result.dpi!r}")
        page = pdf.pages[result.page]
        geometry = page_geometry(page, box)
        user_unit = float(page.obj.get("/UserUnit", 1))
        if check_size:
            pixel = 72 / result.dpi / user_unit
            want = (result.width * pixel, result.height * pixel)
            got = geometry.size
            if any(abs(a - b) > pixel + 0.01 for a, b in zip(want, got, strict=True)):
                raise ValueError(
                    f"page {result.page}: {result.width}x{result.height} px at "
                    f"{result.dpi} dpi is not the PDF page's size "
                    f"({got[0] * user_unit:.1f}x{got[1] * user_unit:.1f} pt)"
                )
        used = _used_fonts(result, fonts)
        if not used:
            continue
        names = _add_fonts(page, {index: fonts.fonts[index].obj for index in used})
        body = text_layer(result, geometry, fonts, names, user_unit)
        matrix = " ".join(_number(v) for v in geometry.matrix())
        # the page's own content goes in q ... Q, so the state it leaves cannot move ours
        stream = b"Q\nq\n" + matrix.encode() + b" cm\nBT\n3 Tr\n" + body + b"\nET\nQ\n"
        layer = pikepdf.Stream(pdf, zlib.compress(stream, 9))
        layer.Filter = Name.FlateDecode
        page.contents_add(pikepdf.Stream(pdf, b"q\n"), prepend=True)
        page.contents_add(layer)
        done += 1
    fonts.finish()
    return done


def _add_fonts(page: pikepdf.Page, fonts: dict[int, pikepdf.Object]) -> dict[int, str]:
    """Put the fonts in the page's /Resources /Font as /OcrqF<index>, or under another
    free name when the page has that name for something else; returns index -> name."""
    resources = page.obj.get("/Resources")
    if resources is None:
        page.obj.Resources = Dictionary()
        resources = page.obj.Resources
    if "/Font" not in resources:
        resources.Font = Dictionary()
    font_dict = resources.Font
    names = {}
    for index, obj in fonts.items():
        name, n = f"{FONT_NAME_PREFIX}{index}", 0
        while f"/{name}" in font_dict and font_dict[f"/{name}"].objgen != obj.objgen:
            n += 1
            name = f"{FONT_NAME_PREFIX}{index}x{n}"
        font_dict[f"/{name}"] = obj
        names[index] = name
    return names


def _save(
    pdf: pikepdf.Pdf,
    out: Path,
    encryption: pikepdf.Encryption | None = None,
    *,
    compact: bool = False,
) -> None:
    if encryption is not None:
        # qpdf re-encrypts every stream, so it must decode them: Flate data is deflated
        # anew (lossless: pages render the same), JPEG and the other image codecs are kept
        pdf.save(out, encryption=encryption)
        return
    # Stream data copied as it is (no stream decoded). A PDF of our own making (`compact`)
    # also gets its small objects (fonts, /Widths, pages) deflated in object streams:
    # 1 KB less a document; a user's PDF keeps every byte of its uncompressed streams.
    pdf.save(
        out,
        compress_streams=compact,
        stream_decode_level=pikepdf.StreamDecodeLevel.none,
        object_stream_mode=(
            pikepdf.ObjectStreamMode.generate if compact else pikepdf.ObjectStreamMode.preserve
        ),
        deterministic_id=True,
    )


def pdf_from_pdf(
    source_pdf: Path,
    pages: Sequence[PageResult],
    out: Path,
    *,
    box: str = "/MediaBox",
    passwords: Sequence[str] = (),
) -> None:
    """Write `out`: `source_pdf` with an invisible text layer on each page OCRed in
    `pages` (see the module doc). `box` is the page box the OCRed images show. A source
    that only opens with one of `passwords` is written encrypted with that password (as
    its user and owner password: the owner's restrictions are not carried over)."""
    pdf, password = open_source(Path(source_pdf), passwords)
    with pdf:
        add_text_layers(pdf, pages, box=box)
        encryption = pikepdf.Encryption(user=password, owner=password) if password else None
        _save(pdf, Path(out), encryption)


def open_source(path: Path, passwords: Sequence[str]) -> tuple[pikepdf.Pdf, str | None]:
    """`path` opened as it is, else with the first of `passwords` that opens it (returned
    with it). Raises `BadImage` when none does."""
    for password in (None, *passwords):
        try:
            return pikepdf.open(path, password=password or ""), password
        except pikepdf.PasswordError:
            continue
    raise BadImage(f"{path.name} is encrypted and none of the passwords given opens it")


def pdf_from_image(image_path: Path, page: PageResult, out: Path) -> None:
    """Write `out`: a one-page PDF of the image (its first frame) with the text layer of
    `page`, whose width, height and dpi say the page's size (`page.page` must be 0)."""
    pdf_from_image_pages(image_path, [page], out)


def pdf_from_image_pages(image_path: Path, pages: Sequence[PageResult], out: Path) -> None:
    """Write `out`: a PDF of the image, a page per frame for a TIFF (the first frame of
    any other format), with the text layer of each result on frame `PageResult.page`."""
    data = image_pdf_bytes(Path(image_path), pages)
    with pikepdf.open(io.BytesIO(data)) as pdf:
        add_text_layers(pdf, pages, check_size=True)
        _save(pdf, Path(out), compact=True)


def image_pdf_bytes(image_path: Path, pages: Sequence[PageResult]) -> bytes:
    """The image as PDF bytes by img2pdf, each frame's page sized by its result's dpi
    (frames without a result: the file's dpi)."""
    import img2pdf
    from PIL import Image

    dpi_of = {p.page: p.dpi for p in pages}
    with Image.open(image_path) as im:
        tiff = im.format == "TIFF"
    frame = [0]

    def layout(width_px: int, height_px: int, ndpi: tuple[float, float]):
        # img2pdf lays out the frames in order, one call each
        dpi = dpi_of.get(frame[0])
        frame[0] += 1
        return img2pdf.default_layout_fun(width_px, height_px, (dpi, dpi) if dpi else ndpi)

    options = {"layout_fun": layout, "nodate": True, "creator": "ocrq"}
    try:
        return img2pdf.convert(str(image_path), first_frame_only=not tiff, **options)
    except (img2pdf.ExifOrientationError, img2pdf.AlphaChannelError):
        frame[0] = 0
        return img2pdf.convert(*_upright_pngs(image_path, all_frames=tiff), **options)


def _upright_pngs(image_path: Path, *, all_frames: bool) -> list[bytes]:
    """Frames img2pdf cannot take as they are (a mirrored orientation, alpha with more
    than 8 bits) as lossless PNGs, turned upright (alpha at 8 bits)."""
    from PIL import Image, ImageOps, ImageSequence

    out = []
    with Image.open(image_path) as im:
        frames = ImageSequence.Iterator(im) if all_frames else [im]
        for frame in frames:
            upright = ImageOps.exif_transpose(frame) or frame
            if upright.mode not in ("1", "L", "P", "RGB", "RGBA", "LA"):
                upright = upright.convert("RGBA" if "A" in upright.getbands() else "RGB")
            buffer = io.BytesIO()
            upright.save(buffer, "PNG")
            out.append(buffer.getvalue())
    return out
