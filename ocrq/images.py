"""Safe image loading: bytes -> pages as uint8 arrays, or `BadImage` with a reason.

A page is HxWx3 RGB, or HxW for a gray or bilevel image (most scans): one byte a pixel
instead of three while the page is read (`models.base` says how stages take either).

- Only well-known raster formats are parsed (Pillow would otherwise hand EPS to Ghostscript).
- The pixel limit is checked from each page's header before any pixel is decoded; Pillow's
  own bomb check is switched off because ours replaces it (configurable, clearer message,
  and no DecompressionBombWarning leaking into logs).
- EXIF orientation is applied; a multi-page TIFF yields every page (up to `max_pages`);
  other multi-frame formats (GIF, MPO) yield their first frame only.
- A colour page whose channels are all equal (a gray scan saved in colour) is kept gray.
- 1-bit, palette, gray+alpha, RGBA, CMYK, YCbCr, 16-bit and float modes are converted with
  the right scaling (Pillow's plain `convert("L")` clips 16-bit values to white), and alpha
  is composited onto white, like paper.
- No Pillow exception escapes: every failure is a `BadImage` with a short readable reason.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from ocrq.config import InputLimits
from ocrq.errors import BadImage, InputRejected, TimeLimitInterrupt
from ocrq.inputs import read_input

# Our header check (`_check_pixels`) runs before every decode and replaces Pillow's.
Image.MAX_IMAGE_PIXELS = None
# Register every plugin now: `Image.open(formats=...)` needs MPO/TIFF/WEBP loaded up front.
Image.init()

# Formats we parse. Everything else is "unsupported", however Pillow could open it.
ALLOWED_FORMATS = tuple(
    f for f in ("JPEG", "MPO", "PNG", "TIFF", "BMP", "GIF", "WEBP", "PPM") if f in Image.OPEN
)
# File names the producer walks for by default (and the fine-tuning harvest reads):
# the formats above, and PDFs (ocrq.documents).
PAGE_FILE_PATTERNS = (
    "*.jpg",
    "*.jpeg",
    "*.png",
    "*.tif",
    "*.tiff",
    "*.bmp",
    "*.webp",
    "*.gif",
    "*.pbm",
    "*.pgm",
    "*.ppm",
    "*.pdf",
)
_MULTI_PAGE = {"TIFF"}
_ORIENTATION = 0x0112  # EXIF/TIFF tag 274

# (magic prefix, name) for reasons; checked in order.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript"),
    (b"\xc5\xd0\xd3\xc6", "PostScript"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
)


def _magic_format(data: bytes) -> str | None:
    for prefix, name in _MAGIC:
        if data.startswith(prefix):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand.startswith((b"avif", b"avis")):
            return "AVIF"
        if brand.startswith((b"heic", b"heix", b"mif1", b"msf1", b"hevc")):
            return "HEIF"
    return None


def magic_format(data: bytes) -> str | None:
    """The format a file's first bytes name ("JPEG", "TIFF", "PDF", ...), or None."""
    return _magic_format(data)


def looks_like_text(data: bytes) -> str | None:
    """'HTML', 'XML/SVG' or 'text' when the bytes are evidently not binary, else None."""
    return _looks_like_text(data)


def _looks_like_text(data: bytes) -> str | None:
    """'HTML', 'XML/SVG' or 'text' when the bytes are evidently not binary, else None."""
    head = data[:4096]
    for bom in (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"):
        if head.startswith(bom):
            head = head[len(bom) :]
            break
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in lowered:
        return "HTML"
    if lowered.startswith(b"<?xml") or lowered.startswith(b"<svg") or b"<svg" in lowered:
        return "XML/SVG"
    if not head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the 4 KiB boundary is still text.
        if exc.start < len(head) - 4:
            return None
        text = head[: exc.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
    return "text" if text and printable >= 0.95 * len(text) else None


def _unidentified_reason(data: bytes) -> str:
    fmt = _magic_format(data)
    if fmt in ("JPEG", "PNG", "TIFF", "GIF", "BMP", "WEBP"):
        # Known magic but Pillow found no usable header: the file stops (or breaks) early.
        return f"truncated {fmt}" if _is_truncated(data, fmt) else f"corrupt {fmt} header"
    if fmt is not None:
        return f"unsupported format ({fmt})"
    kind = _looks_like_text(data)
    if kind is not None:
        return f"not an image (looks like {kind})"
    return "not an image (unrecognized format)"


def _is_truncated(data: bytes, fmt: str) -> bool:
    tail = data.rstrip(b"\x00")[-64:]
    if fmt in ("JPEG", "MPO"):
        return b"\xff\xd9" not in tail
    if fmt == "PNG":
        return b"IEND" not in tail
    if fmt == "GIF":
        return not tail.endswith(b";")
    return len(data) < 64


_STRUCTURAL = ("JPEG", "MPO", "PNG", "GIF")
_TRUNCATION_WORDS = ("truncated", "broken data stream", "unexpected end", "eof", "not enough data")


def _decode_reason(fmt: str, data: bytes, exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return f"{fmt} too large to decode (out of memory)"
    msg = " ".join(str(exc).split())[:120] or type(exc).__name__
    if fmt in _STRUCTURAL:
        # Pillow says "broken data stream" for both cut-off and garbled data: look at the
        # end of the file instead (EOI marker, IEND chunk, GIF trailer).
        return f"truncated {fmt}" if _is_truncated(data, fmt) else f"corrupt {fmt}: {msg}"
    low = msg.lower()
    if isinstance(exc, EOFError) or any(w in low for w in _TRUNCATION_WORDS):
        return f"truncated {fmt}"
    return f"corrupt {fmt}: {msg}"


def _check_pixels(im: Image.Image, limits: InputLimits) -> None:
    w, h = im.size
    if w <= 0 or h <= 0:
        raise BadImage(f"image has invalid size {w}x{h}")
    if w * h > limits.max_pixels:
        raise InputRejected(f"image {w}x{h} exceeds pixel limit {limits.max_pixels}")


def _scale_to_u8(arr: np.ndarray, full_scale: float | None) -> np.ndarray:
    """Numeric gray data to uint8. `full_scale` is the value meaning white, if known."""
    a = np.asarray(arr, dtype=np.float64)
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    if full_scale is None:
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo >= 0.0 and hi <= 1.0:
            full_scale = 1.0
        elif lo >= 0.0 and hi <= 255.0:
            full_scale = 255.0
        elif lo >= 0.0 and hi <= 65535.0:
            full_scale = 65535.0
        else:  # arbitrary range (signed or float data): stretch what is there
            a = a - lo
            full_scale = (hi - lo) or 1.0
    return np.clip(np.rint(a * (255.0 / full_scale)), 0, 255).astype(np.uint8)


def _white_composite(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(paper, rgba).convert("RGB")


def to_page_array(im: Image.Image) -> np.ndarray:
    """Any decoded Pillow image as a writable, C-contiguous uint8 array: HxW for gray,
    bilevel, 16-bit and float modes, HxWx3 RGB for the rest. Gray stays one channel: a
    300-dpi bilevel page (UNLV, 8 Mpx) is 8 MB that way and 25 MB as RGB, beside the
    detector's activations."""
    mode = im.mode
    if mode == "RGB":
        rgb = im
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in im.info
    ):
        rgb = _white_composite(im)
    elif mode.startswith("I;16"):
        return _scale_to_u8(np.asarray(im), 65535.0)
    elif mode in ("I", "F"):
        return _scale_to_u8(np.asarray(im), None)
    elif mode in ("1", "L"):
        return _copy_in_strips(im)
    else:  # P, CMYK, YCbCr, LAB, HSV, RGBX ...
        rgb = im.convert("RGB")
    if rgb.mode != "RGB":
        raise BadImage(f"unsupported pixel mode {mode}")
    return _copy_in_strips(rgb)


# Pixels leave Pillow this many bytes at a time (see `_copy_in_strips`).
STRIP_BYTES = 8 << 20


def gray_if_neutral(page: np.ndarray) -> np.ndarray:
    """An RGB page whose three channels are equal everywhere as HxW gray, else the page.
    Gray scans are often saved in colour (a JPEG's chroma all neutral: both 35-Mpx SROIE
    receipt scans, 104 MB as RGB, 35 MB as gray). Compared a strip at a time, so a colour
    page usually stops at its first strip."""
    if page.ndim != 3:
        return page
    gray = np.empty(page.shape[:2], dtype=np.uint8)  # untouched (no memory) if colour
    rows = max(1, STRIP_BYTES // max(1, page.shape[1] * 3))
    for top in range(0, page.shape[0], rows):
        red, green, blue = cv2.split(page[top : top + rows])  # contiguous planes: fast compares
        if cv2.norm(red, green, cv2.NORM_INF) or cv2.norm(red, blue, cv2.NORM_INF):
            return page
        gray[top : top + rows] = red
    return gray


def _copy_in_strips(im: Image.Image) -> np.ndarray:
    """An RGB (HxWx3), L or 1-bit (HxW) image as a new writable uint8 array, copied a band
    of rows at a time. `np.asarray(im)` goes through one `tobytes()` of the whole page and
    gives a read-only view, so a writable array held three copies of the page at once
    (Pillow's, the bytes, ours). Loading a 35-Mpx receipt scan (sroie_294, a 100 MB page)
    peaked at +341 MB that way, +268 MB this way, and took no longer."""
    w, h = im.size
    shape = (h, w, 3) if im.mode == "RGB" else (h, w)
    out = np.empty(shape, dtype=np.uint8)
    rows = max(1, STRIP_BYTES // max(1, out[0].nbytes))
    for top in range(0, h, rows):
        bottom = min(h, top + rows)
        strip = im.crop((0, top, w, bottom))
        if strip.mode == "1":  # a strip at a time, not a whole-page L copy first
            strip = strip.convert("L")
        out[top:bottom] = np.frombuffer(strip.tobytes(), dtype=np.uint8).reshape(
            (bottom - top, *shape[1:])
        )
    return out


def _upright_tag(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_ORIENTATION, 1))
    except TimeLimitInterrupt:  # the job's time is up: not this file's fault
        raise
    except Exception:  # noqa: BLE001 - malformed EXIF: keep the stored orientation
        return 1


def _jpeg_straight(im: Image.Image, data: bytes) -> np.ndarray | None:
    """A plain RGB or gray JPEG decoded by libjpeg-turbo (simplejpeg) straight into the
    array we return, or None to take Pillow's way. Pillow's way holds the page twice
    while it leaves Pillow (its copy, 4 bytes a pixel, and ours): a 35-Mpx receipt scan
    peaked at 303 MB loading, 139 MB this way, pixel for pixel the same. (OpenCV's
    imdecode copies its result into numpy: 249 MB.)

    Only for files Pillow's header parse accepted, that end in an EOI marker (a cut-off
    file goes to Pillow for its "truncated" reason), that need no EXIF turn, and that
    decode with no libjpeg warning at the header's size: anything else goes to Pillow,
    which decodes it as before or gives the reason."""
    if im.format != "JPEG" or im.mode not in ("RGB", "L") or _is_truncated(data, "JPEG"):
        return None
    if _upright_tag(im) not in (0, 1):
        return None
    w, h = im.size
    gray = im.mode == "L"
    out = np.empty((h, w, 1) if gray else (h, w, 3), dtype=np.uint8)
    try:  # strict: a corrupt-data warning is an error, and Pillow takes over
        got = simplejpeg.decode_jpeg(
            data, colorspace="GRAY" if gray else "RGB", buffer=out, strict=True
        )
    except (ValueError, TypeError):
        return None
    # libjpeg reads the frame header itself: a size other than Pillow's would leave part
    # of `out` unwritten
    if got.shape != out.shape:
        return None
    return out[:, :, 0] if gray else out


def _frame(im: Image.Image, fmt: str, data: bytes, limits: InputLimits) -> np.ndarray:
    _check_pixels(im, limits)
    straight = _jpeg_straight(im, data) if im.tell() == 0 else None
    if straight is not None:
        return straight
    try:
        im.load()
    except (BadImage, InputRejected):
        raise
    except TimeLimitInterrupt:  # the job's time is up: not this file's fault
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's problem
        raise BadImage(_decode_reason(fmt, data, exc)) from None
    upright = im
    try:
        # Only turn when a tag asks for it: exif_transpose otherwise still copies the page.
        if _upright_tag(im) not in (0, 1):
            upright = ImageOps.exif_transpose(im) or im
    except TimeLimitInterrupt:  # the job's time is up: not this file's fault
        raise
    except Exception:  # noqa: BLE001 - malformed EXIF: keep the stored orientation
        upright = im
    try:
        return to_page_array(upright)
    except BadImage:
        raise
    except MemoryError:
        raise BadImage(f"{fmt} too large to convert (out of memory)") from None
    except TimeLimitInterrupt:  # the job's time is up: not this file's fault
        raise
    except Exception as exc:  # noqa: BLE001
        raise BadImage(f"unsupported {fmt} pixel format ({im.mode}): {exc}") from None


@contextmanager
def _pillow_quiet() -> Iterator[None]:
    """Pillow's warnings (corrupt EXIF, odd MPO, ...) stay out of worker logs, and a bomb
    warning (should anyone re-enable Pillow's check) becomes an error we turn into BadImage.
    Scoped to each Pillow call, never across a `yield` into the caller's code."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _open(data: bytes) -> Image.Image:
    try:
        with _pillow_quiet():
            return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise BadImage(_unidentified_reason(data)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputRejected("image exceeds Pillow's pixel limit (Image.MAX_IMAGE_PIXELS)") from None
    except TimeLimitInterrupt:  # the job's time is up: not this file's fault
        raise
    except Exception as exc:  # noqa: BLE001 - header parse errors of every kind
        raise BadImage(_decode_reason(_magic_format(data) or "image", data, exc)) from None


def _page_count(im: Image.Image, fmt: str, data: bytes, limits: InputLimits) -> int:
    if fmt not in _MULTI_PAGE:
        return 1
    try:
        with _pillow_quiet():
            pages = int(getattr(im, "n_frames", 1))
    except TimeLimitInterrupt:  # the job's time is up: not this file's fault
        raise
    except Exception as exc:  # noqa: BLE001 - broken IFD chain
        raise BadImage(_decode_reason(fmt, data, exc)) from None
    if pages > limits.max_pages:
        raise InputRejected(f"{fmt} has {pages} pages, over the page limit {limits.max_pages}")
    return pages


def _page(im: Image.Image, i: int, fmt: str, data: bytes, limits: InputLimits) -> np.ndarray:
    try:
        with _pillow_quiet():
            if i:
                im.seek(i)
            return gray_if_neutral(_frame(im, fmt, data, limits))
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputRejected("image exceeds Pillow's pixel limit (Image.MAX_IMAGE_PIXELS)") from None
    except TimeLimitInterrupt:  # the job's time is up: not this file's fault
        raise
    except Exception as exc:  # noqa: BLE001
        raise BadImage(_decode_reason(fmt, data, exc)) from None


def _check_size(data: bytes, limits: InputLimits) -> None:
    if len(data) == 0:
        raise BadImage("empty file (0 bytes)")
    if len(data) > limits.max_file_bytes:
        raise InputRejected(
            f"image is {len(data)} bytes, over the file-size limit of {limits.max_file_bytes}"
        )


def iter_decoded(data: bytes, limits: InputLimits) -> Iterator[np.ndarray]:
    """Pages of an encoded image, one at a time (bounded memory for long TIFFs)."""
    _check_size(data, limits)
    with _open(data) as im:
        fmt = im.format or "image"
        count = _page_count(im, fmt, data, limits)
        for i in range(count):
            page = [_page(im, i, fmt, data, limits)]
            if i == count - 1:
                # Pillow's copy of the page would otherwise live on while the caller
                # reads ours: +100 MB through a whole job for a 35-Mpx receipt scan.
                im.close()
            # Handed over, not kept: while suspended here this frame holds no reference,
            # so a reader that narrows the page (models.base.PageBuffer) frees the rest.
            yield page.pop()


def decode_pages(data: bytes, limits: InputLimits) -> list[np.ndarray]:
    """All pages of an in-memory encoded image (inline images). Raises `BadImage`."""
    return list(iter_decoded(data, limits))


def iter_pages(path: os.PathLike[str] | str, limits: InputLimits) -> Iterator[np.ndarray]:
    """Pages of an image file, one at a time; path checked against roots and limits first."""
    data = read_input(path, limits)
    yield from iter_decoded(data, limits)


def load_pages(path: os.PathLike[str] | str, limits: InputLimits) -> list[np.ndarray]:
    """All pages of an image file as uint8 arrays (HxWx3 RGB, or HxW gray). Raises `BadImage`.

    The path goes through `ocrq.inputs.check_input_path` (roots, type, size) before it is
    opened, so callers need not check it themselves.
    """
    return list(iter_pages(path, limits))


# Resolutions outside this range (dpi) are taken as no resolution at all: a 1-dpi or
# 100,000-dpi tag is a writer's placeholder, not a scan.
DPI_RANGE = (50.0, 4800.0)


def _dpi(im: Image.Image) -> float | None:
    """The image's own resolution (Pillow's `info["dpi"]`: JFIF, EXIF, pHYs, TIFF tags),
    the mean of x and y when both are plausible, else None."""
    try:
        raw = im.info.get("dpi")
        values = [float(v) for v in raw] if raw is not None else []
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    sane = [v for v in values if DPI_RANGE[0] <= v <= DPI_RANGE[1]]
    return sum(sane) / len(sane) if sane else None


def count_frames(path: os.PathLike[str] | str, limits: InputLimits) -> int:
    """Pages in an image file (a multi-page TIFF's frames, 1 for any other format), from
    its headers alone: no pixel is decoded. Raises `BadImage` as `iter_pages` would
    (including a TIFF over `limits.max_pages`)."""
    data = read_input(path, limits)
    _check_size(data, limits)
    with _open(data) as im:
        return _page_count(im, im.format or "image", data, limits)


def read_frame(
    path: os.PathLike[str] | str, page_no: int, limits: InputLimits
) -> tuple[np.ndarray, float | None]:
    """Page `page_no` (from 0) of an image file, decoded like `iter_pages` decodes it, with
    its resolution in dpi (None when the file gives none, or an implausible one). Only
    that frame is decoded: Pillow walks a TIFF's directory chain to reach it."""
    data = read_input(path, limits)
    _check_size(data, limits)
    with _open(data) as im:
        fmt = im.format or "image"
        count = _page_count(im, fmt, data, limits)
        if not 0 <= page_no < count:
            raise BadImage(f"no page {page_no + 1}: the {fmt} has {count} page(s)")
        page = _page(im, page_no, fmt, data, limits)
        return page, _dpi(im)
