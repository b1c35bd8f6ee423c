"""The hostile-and-odd input corpus (issue 5), generated on the fly, with expected outcomes.

`make_corpus(dir)` writes every case into `dir` and returns `{rel_path: Expect}`, where
`rel_path` is the '/'-separated path relative to `dir` exactly as `producer.walk.walk`
reports it (non-UTF-8 names carry surrogate escapes). Tests of the walker, the loader and
the whole queue use the same table:

- `walk`: what `walk([dir], [], recursive=True)` yields for the path: WALK_FILE (a usable
  file), WALK_SKIPPED (an entry with a problem; `walk_reason` is a substring of its reason)
  or WALK_ABSENT (not yielded at all: directories).
- `pages` > 0: `load_pages` returns that many pages; else it raises `BadImage` whose message
  contains `load_reason` (`roots_reason` instead when input_roots = (dir,) is configured).
- `size` (w, h) and `probes` (page, x, y, rgb) check page content after EXIF/mode handling;
  `text` holds the rendered text per page of the text images, for OCR assertions.

Permission cases depend on who runs the tests: as root (or with CAP_DAC_OVERRIDE) chmod 000
does not stop reading, so those files are expected to load and `note` says so; tests that
need the unreadable path for real run the walker as an unprivileged user (see test_walk).
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WALK_FILE = "file"
WALK_SKIPPED = "skipped"
WALK_ABSENT = "absent"

PROBE_TOLERANCE = 40  # per channel; JPEG ringing near edges stays well inside this

Probe = tuple[int, int, int, tuple[int, int, int]]  # (page, x, y, (r, g, b))

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
RED = (255, 0, 0)
GREEN = (0, 160, 0)
BLUE = (0, 0, 255)


@dataclass(frozen=True)
class Expect:
    walk: str
    pages: int = 0
    load_reason: str = ""
    walk_reason: str = ""
    roots_reason: str | None = None
    size: tuple[int, int] | None = None
    probes: tuple[Probe, ...] = ()
    text: tuple[str, ...] = ()
    note: str = ""

    @property
    def loads(self) -> bool:
        return self.pages > 0

    def reason_for(self, rooted: bool) -> str:
        """The BadImage substring expected, with or without input_roots = (corpus dir,)."""
        if rooted and self.roots_reason is not None:
            return self.roots_reason
        return self.load_reason


def font_path() -> Path:
    import matplotlib

    return Path(matplotlib.__file__).parent / "mpl-data/fonts/ttf/DejaVuSans.ttf"


def render_text(text: str, size: int = 32, pad: int = 20, mode: str = "RGB") -> Image.Image:
    """Black DejaVu Sans text on white, one line per '\\n', tightly padded."""
    font = ImageFont.truetype(str(font_path()), size)
    lines = text.split("\n")
    boxes = [font.getbbox(line) for line in lines]
    line_h = int(size * 1.4)
    w = max(b[2] for b in boxes) + 2 * pad
    h = line_h * len(lines) + 2 * pad
    im = Image.new(mode, (w, h), "white")
    draw = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * line_h), line, fill="black", font=font)
    return im


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose IHDR claims width x height 8-bit gray (10 GB decoded at defaults).

    The IDAT holds a few compressed zero rows: enough to look real, far too few for the
    header, so a loader without a header check would allocate and then fail or thrash.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def png_rgb16(pixels: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot save RGB;16)."""
    h, w, _ = pixels.shape
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def png_corrupt_idat() -> bytes:
    """Valid signature, IHDR and CRCs, but the IDAT is not a zlib stream."""
    ihdr = struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)
    junk = bytes(random.Random(7).randrange(256) for _ in range(512))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"\x00\x01" + junk)  # 0x0001 is no valid zlib header
        + _png_chunk(b"IEND", b"")
    )


def _tiff_ifds(data: bytes) -> list[int]:
    """Offsets of the IFDs of a little-endian classic TIFF."""
    assert data[:4] == b"II*\x00"
    out, pos = [], struct.unpack_from("<I", data, 4)[0]
    while pos and pos not in out:
        out.append(pos)
        n = struct.unpack_from("<H", data, pos)[0]
        pos = struct.unpack_from("<I", data, pos + 2 + 12 * n)[0]
    return out


def tiff_ifd_loop(im: Image.Image) -> bytes:
    """A one-page TIFF whose next-IFD pointer points back at itself (a naive reader spins)."""
    data = bytearray(_encode(im, "TIFF"))
    ifd = _tiff_ifds(bytes(data))[0]
    n = struct.unpack_from("<H", data, ifd)[0]
    struct.pack_into("<I", data, ifd + 2 + 12 * n, ifd)
    return bytes(data)


def tiff_bomb_page(frames: list[Image.Image], page: int, width: int, height: int) -> bytes:
    """A multi-page TIFF whose page `page` header claims width x height (data stays tiny)."""
    data = bytearray(_encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]))
    ifd = _tiff_ifds(bytes(data))[page]
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * k
        tag, typ = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength
            value = width if tag == 256 else height
            struct.pack_into("<HHII", data, entry, tag, 4, 1, value)  # as LONG
            assert typ in (3, 4)
    return bytes(data)


def _upright_marker() -> Image.Image:
    """120x80: red block top-left, blue block bottom-right, white elsewhere."""
    im = Image.new("RGB", (120, 80), WHITE)
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 39, 29), fill=RED)
    d.rectangle((80, 50, 119, 79), fill=BLUE)
    return im


_MARKER_PROBES: tuple[Probe, ...] = (
    (0, 10, 10, RED),
    (0, 110, 70, BLUE),
    (0, 110, 10, WHITE),
    (0, 10, 70, WHITE),
)


def _exif_rotated_jpeg(orientation: int) -> bytes:
    """Stored pixels turned so that applying EXIF `orientation` restores the upright marker."""
    upright = _upright_marker()
    # exif_transpose applies ROTATE_270 for 6 and ROTATE_90 for 8: store the inverse.
    inverse = {
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
        3: Image.Transpose.ROTATE_180,
    }
    stored = upright.transpose(inverse[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def _valid_png(text: str = "ok") -> bytes:
    return _encode(render_text(text, size=24), "PNG")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def make_corpus(dir: Path) -> dict[str, Expect]:
    """Write every corpus case into `dir` (created if needed); return expectations by rel path."""
    root = Path(dir)
    root.mkdir(parents=True, exist_ok=True)
    ex: dict[str, Expect] = {}

    def file(rel: str, data: bytes, expect: Expect) -> None:
        _write(root / rel, data)
        ex[rel] = expect

    def ok(pages: int = 1, **kw: object) -> Expect:
        return Expect(WALK_FILE, pages=pages, **kw)  # type: ignore[arg-type]

    def bad(reason: str, **kw: object) -> Expect:
        return Expect(WALK_FILE, load_reason=reason, **kw)  # type: ignore[arg-type]

    # --- valid text images (what the OCR engine should read) ---
    hello = "Hello queue 123"
    im = render_text(hello)
    file("text_hello.png", _encode(im, "PNG"), ok(size=im.size, text=(hello,)))
    invoice = "Invoice number 4711"
    im = render_text(invoice)
    file("text_invoice.jpg", _encode(im, "JPEG", quality=92), ok(size=im.size, text=(invoice,)))
    page_texts = ("Page one of three", "Second page here", "The third page")
    frames = [render_text(t, size=28 + 4 * i) for i, t in enumerate(page_texts)]
    tif = _encode(
        frames[0], "TIFF", save_all=True, append_images=frames[1:], compression="tiff_deflate"
    )
    file(
        "text_pages.tif",
        tif,
        ok(3, size=frames[0].size, text=page_texts, probes=((2, 2, 2, WHITE),)),
    )

    # --- not images at all ---
    file("zero.jpg", b"", bad("empty file"))
    file("text.jpg", b"Just some notes, not a picture.\nSecond line.\n", bad("looks like text"))
    file("text.png", "Überschrift: kein Bild\n".encode(), bad("looks like text"))
    html = b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>\n"
    file("html.jpg", html, bad("looks like HTML"))
    file("html.png", b"  \n" + html.replace(b"<!DOCTYPE html>\n", b""), bad("looks like HTML"))
    noise = random.Random(1234).randbytes(4096)
    file("random.jpg", noise, bad("not an image (unrecognized format)"))
    file("random.png", random.Random(99).randbytes(777), bad("not an image (unrecognized format)"))
    # content decides, not the name: a cut-off PDF named .png is a PDF (the image reader
    # says "unsupported format (PDF)", a worker's document reader "not a readable PDF:
    # truncated": both name it)
    file(
        "pdf.png",
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        bad("PDF"),
    )

    # --- broken images ---
    photo = render_text("truncated scan", size=40)
    arr = np.asarray(photo).copy()
    arr[::3, ::5] = 128  # texture so the entropy-coded data is not trivially short
    jpeg = _encode(Image.fromarray(arr), "JPEG", quality=90)
    file("truncated.jpg", jpeg[: len(jpeg) * 6 // 10], bad("truncated JPEG"))
    file("header_only.jpg", jpeg[:20], bad("truncated JPEG"))
    png = _encode(Image.fromarray(arr), "PNG")
    file("truncated.png", png[: len(png) * 6 // 10], bad("truncated PNG"))
    file("corrupt_idat.png", png_corrupt_idat(), bad("corrupt PNG"))
    small = [render_text(t, size=20) for t in ("first", "second")]
    file(
        "tiff_bomb_page2.tif",
        tiff_bomb_page(small, 1, 60_000, 60_000),
        bad("image 60000x60000 exceeds pixel limit", note="page 2's header is checked too"),
    )
    file(
        "tiff_ifd_loop.tif",
        tiff_ifd_loop(small[0]),
        ok(size=small[0].size, note="IFD chain loops to itself: one page, no hang"),
    )
    file(
        "bomb.png",
        png_bomb(),
        bad("image 100000x100000 exceeds pixel limit", note="header-only check; never decoded"),
    )

    # --- valid but odd pixel formats ---
    g16 = np.zeros((40, 60), np.uint16)
    g16[:, :30] = 0x8080  # mid gray -> 128
    g16[:, 30:] = 0xFFFF  # white
    g16[:10, :] = 0  # black top stripe
    g16_probes = ((0, 10, 20, (128, 128, 128)), (0, 50, 20, WHITE), (0, 50, 5, BLACK))
    file("gray16.png", _encode(Image.fromarray(g16), "PNG"), ok(size=(60, 40), probes=g16_probes))
    file("gray16.tif", _encode(Image.fromarray(g16), "TIFF"), ok(size=(60, 40), probes=g16_probes))
    fl = np.ones((40, 60), np.float32)
    fl[:, :30] = 0.5
    fl[:10, :] = 0.0
    file("float.tif", _encode(Image.fromarray(fl), "TIFF"), ok(size=(60, 40), probes=g16_probes))
    rgb16 = np.zeros((20, 30, 3), np.uint16)
    rgb16[:, :15] = (0xFFFF, 0, 0)
    rgb16[:, 15:] = (0xFFFF, 0xFFFF, 0xFFFF)
    file(
        "rgb16.png", png_rgb16(rgb16), ok(size=(30, 20), probes=((0, 5, 5, RED), (0, 25, 5, WHITE)))
    )

    pal = Image.new("P", (60, 30))
    pal.putpalette([255, 0, 0, 0, 160, 0, 0, 0, 255] + [255] * (3 * 253))
    pal.paste(0, (0, 0, 20, 30))
    pal.paste(1, (20, 0, 40, 30))
    pal.paste(2, (40, 0, 60, 30))
    pal_probes = ((0, 10, 15, RED), (0, 30, 15, GREEN), (0, 50, 15, BLUE))
    file("palette.png", _encode(pal, "PNG"), ok(size=(60, 30), probes=pal_probes))
    gif = pal.copy()
    gif.paste(3, (0, 20, 60, 30))  # bottom band: index 3, transparent below
    gif_bytes = _encode(gif, "GIF", transparency=3)
    file(
        "palette_transparent.gif",
        gif_bytes,
        ok(size=(60, 30), probes=(*pal_probes[:1], (0, 30, 25, WHITE))),
    )
    anim = [Image.new("RGB", (40, 20), c) for c in (RED, GREEN, BLUE)]
    file(
        "anim.gif",
        _encode(anim[0], "GIF", save_all=True, append_images=anim[1:]),
        ok(size=(40, 20), probes=((0, 20, 10, RED),), note="animation frames are not pages"),
    )

    cmyk = Image.new("CMYK", (60, 30), (0, 0, 0, 0))
    cmyk.paste((0, 255, 255, 0), (0, 0, 30, 30))  # red in CMYK
    file(
        "cmyk.jpg",
        _encode(cmyk, "JPEG", quality=95),
        ok(size=(60, 30), probes=((0, 10, 15, RED), (0, 50, 15, WHITE))),
    )
    file(
        "cmyk.tif",
        _encode(cmyk, "TIFF"),
        ok(size=(60, 30), probes=((0, 10, 15, RED), (0, 50, 15, WHITE))),
    )

    rgba = Image.new("RGBA", (60, 30), (0, 0, 0, 0))  # transparent *black*: must become white
    rgba.paste((0, 0, 0, 255), (0, 0, 20, 30))
    rgba.paste((255, 0, 0, 255), (20, 0, 40, 30))
    alpha_probes = ((0, 10, 15, BLACK), (0, 30, 15, RED), (0, 50, 15, WHITE))
    file("rgba.png", _encode(rgba, "PNG"), ok(size=(60, 30), probes=alpha_probes))
    la = Image.new("LA", (60, 30), (0, 0))
    la.paste((0, 255), (0, 0, 20, 30))
    file(
        "la.png",
        _encode(la, "PNG"),
        ok(size=(60, 30), probes=((0, 10, 15, BLACK), (0, 50, 15, WHITE))),
    )

    bilevel = render_text("fax page", size=30).convert("1")
    bl_probes = ((0, 1, 1, WHITE),)
    file("bilevel.png", _encode(bilevel, "PNG"), ok(size=bilevel.size, probes=bl_probes))
    file(
        "bilevel_g4.tif",
        _encode(bilevel, "TIFF", compression="group4"),
        ok(size=bilevel.size, probes=bl_probes),
    )

    for o in (6, 8, 3):
        file(
            f"exif_rot{o}.jpg",
            _exif_rotated_jpeg(o),
            ok(size=(120, 80), probes=_MARKER_PROBES, note=f"EXIF orientation {o}: loads upright"),
        )

    file(
        "tiny_1x1.png",
        _encode(Image.new("RGB", (1, 1), BLACK), "PNG"),
        ok(size=(1, 1), probes=((0, 0, 0, BLACK),)),
    )
    file(
        "tiny_1x1.jpg",
        _encode(Image.new("L", (1, 1), 255), "JPEG"),
        ok(size=(1, 1), probes=((0, 0, 0, WHITE),)),
    )
    blank_probes = ((0, 0, 0, WHITE), (0, 400, 300, WHITE), (0, 799, 599, WHITE))
    file(
        "blank.png",
        _encode(Image.new("RGB", (800, 600), WHITE), "PNG"),
        ok(size=(800, 600), probes=blank_probes),
    )
    file(
        "blank.jpg",
        _encode(Image.new("L", (800, 600), 255), "JPEG"),
        ok(size=(800, 600), probes=blank_probes),
    )
    sliver = Image.new("L", (20000, 8), 255)
    ImageDraw.Draw(sliver).line((0, 4, 19999, 4), fill=0, width=2)
    file("sliver.png", _encode(sliver, "PNG"), ok(size=(20000, 8), probes=((0, 10000, 0, WHITE),)))
    file(
        "jpeg_named.png",
        _encode(_upright_marker(), "JPEG", quality=95),
        ok(size=(120, 80), probes=_MARKER_PROBES),
    )

    # --- odd names ---
    file(os.fsdecode(b"latin1_caf\xe9.png"), _valid_png("latin"), ok(note="non-UTF-8 name"))
    file("ünïcödé_日本語_🙂.png", _valid_png("unicode"), ok())
    file("new\nline.png", _valid_png("newline"), ok(note="newline in the name"))
    file("-dash start.png", _valid_png("dash"), ok(note="leading dash and a space"))

    # --- filesystem oddities ---
    appledouble = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)
    file(
        "._scan.jpg",
        appledouble,
        Expect(WALK_ABSENT, load_reason="not an image", note="hidden: macOS AppleDouble junk"),
    )
    file(
        ".thumbnails/thumb.png",
        _valid_png("thumb"),
        Expect(WALK_ABSENT, pages=1, note="hidden dir"),
    )
    file("x.jpg/inner.png", _valid_png("inside"), ok())
    ex["x.jpg"] = Expect(WALK_ABSENT, load_reason="is a directory", note="a directory named x.jpg")

    os.symlink("missing-target.jpg", root / "broken.jpg")
    ex["broken.jpg"] = Expect(
        WALK_SKIPPED, walk_reason="broken symlink", load_reason="broken symlink"
    )
    os.symlink("loop.jpg", root / "loop.jpg")
    ex["loop.jpg"] = Expect(WALK_SKIPPED, walk_reason="symlink loop", load_reason="symlink loop")
    file("loopdir/page.png", _valid_png("loop dir"), ok())
    os.symlink("..", root / "loopdir" / "up")
    ex["loopdir/up"] = Expect(
        WALK_SKIPPED, walk_reason="symlink loop", load_reason="is a directory"
    )
    ex["loopdir"] = Expect(WALK_ABSENT, load_reason="is a directory")
    os.symlink("text_hello.png", root / "zz_link_to_hello.png")
    ex["zz_link_to_hello.png"] = Expect(
        WALK_SKIPPED, pages=1, walk_reason="same file as", note="walker yields each real file once"
    )
    os.symlink("/etc/passwd", root / "escape.png")
    ex["escape.png"] = Expect(
        WALK_FILE,
        load_reason="looks like text",
        roots_reason="outside the configured input roots",
        note="symlink pointing out of the root",
    )
    os.mkfifo(root / "pipe.jpg")
    ex["pipe.jpg"] = Expect(
        WALK_SKIPPED,
        walk_reason="not a regular file (FIFO)",
        load_reason="not a regular file (FIFO)",
    )

    file("unreadable.png", _valid_png("secret"), ok())
    os.chmod(root / "unreadable.png", 0)
    if not os.access(root / "unreadable.png", os.R_OK):
        ex["unreadable.png"] = Expect(
            WALK_SKIPPED, walk_reason="permission denied", load_reason="permission denied"
        )
    else:
        ex["unreadable.png"] = ok(note="chmod 000 but readable: running as root (CAP_DAC_OVERRIDE)")
    file("locked/inside.png", _valid_png("locked"), ok())
    os.chmod(root / "locked", 0)
    if not os.access(root / "locked", os.R_OK | os.X_OK):
        ex["locked"] = Expect(
            WALK_SKIPPED,
            walk_reason="unreadable directory: permission denied",
            load_reason="is a directory",
        )
        del ex["locked/inside.png"]
    else:
        ex["locked"] = Expect(
            WALK_ABSENT, load_reason="is a directory", note="chmod 000 dir, running as root"
        )
        ex["locked/inside.png"] = ok(note="inside a chmod 000 directory: running as root")
    return ex


def submitted(expect: dict[str, Expect]) -> dict[str, Expect]:
    """The cases a recursive walk hands to the queue: each ends `done` with `pages` pages
    (`loads`) or `failed` with `reason_for(rooted)` in its error; nothing else is queued."""
    return {rel: ex for rel, ex in expect.items() if ex.walk == WALK_FILE}


def restore_permissions(dir: Path) -> None:
    """Undo the chmod 000 cases so an unprivileged owner can delete the corpus."""
    for rel in ("unreadable.png", "locked"):
        p = Path(dir) / rel
        if p.exists() and not p.is_symlink():
            os.chmod(p, 0o755 if p.is_dir() else 0o644)


NOBODY = 65534


def can_drop_privileges() -> bool:
    return hasattr(os, "fork") and os.geteuid() == 0


def run_unprivileged(fn, uid: int = NOBODY):  # type: ignore[no-untyped-def]
    """Run `fn()` in a forked child as `uid` (needs root) and return its JSON-able result.

    A fork, not a subprocess: the interpreter may live under /root, which an unprivileged
    user cannot even traverse. Exceptions in the child come back as RuntimeError.
    """
    import json
    import traceback

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(rfd)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            payload = json.dumps({"ok": fn()})
        except BaseException:  # noqa: BLE001 - report anything to the parent
            payload = json.dumps({"error": traceback.format_exc()})
            code = 1
        with os.fdopen(wfd, "w") as out:
            out.write(payload)
        os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd) as inp:
        raw = inp.read()
    os.waitpid(pid, 0)
    result = json.loads(raw)
    if "error" in result:
        raise RuntimeError(f"unprivileged child failed:\n{result['error']}")
    return result["ok"]
