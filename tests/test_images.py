"""Image loading on the hostile corpus: pages, sizes, pixel values, and reasons."""

from __future__ import annotations

import io
import random
import warnings
import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.crops import as_rgb
from ocrq.config import InputLimits
from ocrq.errors import BadImage, InputRejected
from ocrq.images import decode_pages, iter_decoded, iter_pages, load_pages
from producer.walk import walk
from tests.corpus import PROBE_TOLERANCE, make_corpus, png_bomb, render_text

LIMITS = InputLimits()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root)


def _check_pages(rel, ex, pages):
    assert len(pages) == ex.pages, rel
    for page in pages:
        assert page.dtype == np.uint8 and page.shape[2:] in ((), (3,)), rel
        assert page.flags.c_contiguous and page.flags.writeable, rel
    if ex.size is not None:
        h, w = pages[0].shape[:2]
        assert (w, h) == ex.size, f"{rel}: page size {(w, h)} != {ex.size}"
    for page_no, x, y, rgb in ex.probes:
        got = tuple(int(v) for v in as_rgb(pages[page_no])[y, x])
        diff = max(abs(a - b) for a, b in zip(got, rgb, strict=True))
        assert diff <= PROBE_TOLERANCE, f"{rel} page {page_no} ({x},{y}): {got} != {rgb}"


@pytest.mark.parametrize("rooted", [False, True], ids=["no-roots", "roots"])
def test_corpus_load_outcomes(corpus, rooted):
    root, expect = corpus
    limits = replace(LIMITS, input_roots=(str(root),)) if rooted else LIMITS
    for rel, ex in expect.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no Pillow warning may leak out either
            try:
                pages = load_pages(root / rel, limits)
            except BadImage as exc:
                assert not ex.loads, f"{rel!r} should load {ex.pages} pages, failed: {exc}"
                reason = ex.reason_for(rooted)
                assert reason and reason in str(exc), f"{rel!r}: {exc!r} lacks {reason!r}"
                assert "\n" not in str(exc) and len(str(exc)) < 200, "reasons are one short line"
                continue
        assert ex.loads, f"{rel!r} should fail with {ex.reason_for(rooted)!r}, loaded"
        _check_pages(rel, ex, pages)


def test_corpus_bytes_decode_like_files(corpus):
    """Inline images (`decode_pages`) give the same pages as files for every regular file."""
    root, expect = corpus
    for entry in walk([root], []):
        if not entry.ok or entry.rel == "escape.png":
            continue
        data = entry.path.read_bytes()
        ex = expect[entry.rel]
        if ex.loads:
            got = decode_pages(data, LIMITS)
            want = load_pages(entry.path, LIMITS)
            assert len(got) == len(want)
            assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True)), entry.rel
        else:
            with pytest.raises(BadImage, match=_re(ex.load_reason)):
                decode_pages(data, LIMITS)


def _re(text: str) -> str:
    import re

    return re.escape(text)


def test_bomb_rejected_from_header_with_configured_limit():
    data = png_bomb(100_000, 100_000)
    assert len(data) < 2000, "the bomb is a tiny file"
    with pytest.raises(InputRejected) as info:
        decode_pages(data, LIMITS)
    assert str(info.value) == "image 100000x100000 exceeds pixel limit 100000000"
    small = render_text("ok", size=20)
    w, h = small.size
    with pytest.raises(InputRejected, match=f"image {w}x{h} exceeds pixel limit 100$"):
        decode_pages(_png(small), replace(LIMITS, max_pixels=100))
    assert len(decode_pages(_png(small), replace(LIMITS, max_pixels=w * h))) == 1


def test_pillow_global_bomb_limit_cannot_leak(monkeypatch):
    # If anyone re-enables Pillow's own check, its warning/error still become BadImage.
    im = render_text("hello", size=30)  # before: Pillow checks text masks against it too
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(BadImage, match="pixel limit"):
            decode_pages(_png(im), LIMITS)
        with pytest.raises(BadImage, match="pixel limit"):
            decode_pages(_png(Image.new("L", (40, 40))), LIMITS)  # warning zone (1x-2x)


def test_page_limit_and_file_size_limit(corpus):
    root, _ = corpus
    tif = root / "text_pages.tif"
    assert len(load_pages(tif, replace(LIMITS, max_pages=3))) == 3
    with pytest.raises(InputRejected, match="TIFF has 3 pages, over the page limit 2"):
        load_pages(tif, replace(LIMITS, max_pages=2))
    size = tif.stat().st_size
    with pytest.raises(InputRejected, match=f"file is {size} bytes, over the file-size limit"):
        load_pages(tif, replace(LIMITS, max_file_bytes=size - 1))
    with pytest.raises(InputRejected, match="over the file-size limit"):
        decode_pages(tif.read_bytes(), replace(LIMITS, max_file_bytes=size - 1))


def test_iter_pages_streams_tiff_pages(corpus):
    root, expect = corpus
    it = iter_pages(root / "text_pages.tif", LIMITS)
    first = next(it)
    assert (first.shape[1], first.shape[0]) == expect["text_pages.tif"].size
    assert len([first, *it]) == 3


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _tiff(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "TIFF")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("values", "want"),
    [
        (np.array([[0, 128, 255]], np.int32), [0, 128, 255]),  # 8-bit range in a 32-bit mode
        (np.array([[0, 32896, 65535]], np.int32), [0, 128, 255]),  # 16-bit range
        (np.array([[-5, 0, 5]], np.int32), [0, 128, 255]),  # signed: stretched
    ],
)
def test_mode_i_scaling(values, want):
    im = Image.fromarray(values)
    assert im.mode == "I"
    page = decode_pages(_tiff(im), LIMITS)[0]
    assert page.ndim == 2 and page[0].tolist() == want  # gray: one channel


def test_mode_f_scaling():
    for vals, want in (([0.0, 0.5, 1.0], [0, 128, 255]), ([-1.0, 0.0, 1.0], [0, 128, 255])):
        im = Image.fromarray(np.array([vals], np.float32))
        assert decode_pages(_tiff(im), LIMITS)[0][0].tolist() == want


def test_16_bit_is_scaled_not_clipped():
    # Pillow's convert("L") clips I;16 values above 255 to white: mid gray must stay gray.
    g = np.full((4, 4), 0x4040, np.uint16)
    page = decode_pages(_png(Image.fromarray(g)), LIMITS)[0]
    assert page.ndim == 2 and int(page[0, 0]) == 64


def _mutations(data: bytes, rng: random.Random, n: int):
    for _ in range(n):
        b = bytearray(data)
        op = rng.randrange(4)
        if op == 0:
            b = b[: rng.randrange(len(b))]
        elif op == 1:
            for _ in range(rng.randrange(1, 8)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2:
            i = rng.randrange(len(b))
            b[i:i] = rng.randbytes(rng.randrange(1, 64))
        else:
            i = rng.randrange(len(b))
            del b[i : i + rng.randrange(1, 64)]
        yield bytes(b)


def test_mutated_files_raise_only_bad_image():
    """Byte flips, cuts and splices of every format: a page or a BadImage, nothing else."""
    rng = random.Random(20261123)
    im = render_text("fuzz 42", size=22)
    seeds = []
    for fmt, kw in (
        ("PNG", {}),
        ("JPEG", {"quality": 80}),
        ("TIFF", {"compression": "tiff_deflate"}),
        ("TIFF", {"compression": "group4"}),
        ("GIF", {}),
        ("BMP", {}),
        ("WEBP", {}),
    ):
        src = im.convert("1") if kw.get("compression") == "group4" else im
        buf = io.BytesIO()
        src.save(buf, fmt, **kw)
        seeds.append(buf.getvalue())
    outcomes = {"ok": 0, "bad": 0}
    for seed in seeds:
        for data in _mutations(seed, rng, 60):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                try:
                    pages = decode_pages(data, replace(LIMITS, max_pixels=10_000_000))
                except BadImage as exc:
                    assert str(exc) and "\n" not in str(exc)
                    outcomes["bad"] += 1
                    continue
            assert pages and all(p.dtype == np.uint8 and p.shape[2:] in ((), (3,)) for p in pages)
            outcomes["ok"] += 1
    print("mutations:", outcomes)
    assert outcomes["bad"] > 50 and outcomes["ok"] > 10, outcomes


def test_missing_file_and_directory(tmp_path: Path):
    with pytest.raises(BadImage, match="file not found"):
        load_pages(tmp_path / "nope.png", LIMITS)
    with pytest.raises(BadImage, match="is a directory"):
        load_pages(tmp_path, LIMITS)


def test_soft_time_limit_during_decoding_is_not_a_bad_image(tmp_path, monkeypatch):
    """Celery raises its soft time limit inside whatever the task runs, as an Exception;
    decoding must let it through (the task then fails the job with "time limit"), never
    report it as a corrupt file. The real signal is exercised in test_faults_limits."""
    from PIL import Image as PILImage

    from ocrq.errors import TimeLimitInterrupt

    path = tmp_path / "page.png"
    PILImage.new("RGB", (64, 32), "white").save(path)

    def interrupted(self, *args, **kwargs):
        raise TimeLimitInterrupt()

    monkeypatch.setattr(PILImage.Image, "load", interrupted)
    with pytest.raises(TimeLimitInterrupt):
        load_pages(path, InputLimits())


@pytest.mark.parametrize("mode", ["RGB", "L", "1"])
def test_pages_copied_out_in_strips_match_pillow(monkeypatch, mode):
    """Several strips (one not full) must land exactly where Pillow has the pixels."""
    import ocrq.images

    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(37, 23, 3), dtype=np.uint8)
    im = Image.fromarray(pixels).convert(mode)
    monkeypatch.setattr(ocrq.images, "STRIP_BYTES", 23 * 3 * 5)  # 5 RGB rows per strip
    page = ocrq.images.to_page_array(im)
    want = np.asarray(im.convert("RGB" if mode == "RGB" else "L"))
    assert page.flags.writeable and page.flags.c_contiguous
    assert page.shape == want.shape  # gray and bilevel pages stay one channel
    np.testing.assert_array_equal(page, want)


def test_pillow_page_is_released_before_the_last_page_is_read(monkeypatch):
    """The caller reads the last page while Pillow's raster is already gone (a large scan
    is then in memory once, not twice); earlier TIFF pages still need the open file."""
    from ocrq.images import iter_decoded

    frames = [Image.new("L", (40, 30), shade) for shade in (0, 128, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    closed: list[int] = []
    close = Image.Image.close
    monkeypatch.setattr(Image.Image, "close", lambda im: (closed.append(1), close(im))[1])
    pages = iter_decoded(buf.getvalue(), LIMITS)
    shades = []
    for page in pages:
        shades.append(int(page.flat[0]))
        assert bool(closed) == (len(shades) == 3), shades
    assert shades == [0, 128, 255]


def _jpeg_cases() -> dict[str, bytes]:
    rng = np.random.default_rng(3)
    photo = render_text("Straight into the array 0123", size=28).convert("RGB")
    noisy = np.asarray(photo).copy()
    noisy[::7] = rng.integers(0, 256, size=noisy[::7].shape, dtype=np.uint8)
    cases = {}
    for name, im, kw in (
        ("rgb-420", Image.fromarray(noisy), {"quality": 85}),
        ("rgb-444", Image.fromarray(noisy), {"quality": 95, "subsampling": 0}),
        ("progressive", Image.fromarray(noisy), {"quality": 80, "progressive": True}),
        ("gray", photo.convert("L"), {"quality": 90}),
    ):
        buf = io.BytesIO()
        im.save(buf, "JPEG", **kw)
        cases[name] = buf.getvalue()
    return cases


def test_plain_jpegs_decode_straight_and_pixel_identical_to_pillow(monkeypatch):
    """The libjpeg-turbo path (one copy of the page) gives what Pillow's gives."""
    import ocrq.images

    straight = ocrq.images._jpeg_straight
    used: list[bool] = []
    monkeypatch.setattr(
        ocrq.images, "_jpeg_straight", lambda im, d: used.append(1) or straight(im, d)
    )
    for name, data in _jpeg_cases().items():
        used.clear()
        page = decode_pages(data, LIMITS)[0]
        assert used and straight(Image.open(io.BytesIO(data)), data) is not None, name
        with monkeypatch.context() as m:
            m.setattr(ocrq.images, "_jpeg_straight", lambda im, d: None)
            want = decode_pages(data, LIMITS)[0]
        assert page.flags.writeable and page.flags.c_contiguous, name
        assert page.ndim == (2 if name == "gray" else 3), name
        np.testing.assert_array_equal(page, want, err_msg=name)


def test_corrupt_jpeg_with_an_end_marker_goes_to_pillow():
    """Garbled scan data: strict libjpeg refuses it, and Pillow decides as before."""
    import ocrq.images

    data = bytearray(_jpeg_cases()["rgb-420"])
    middle = len(data) // 2
    data[middle : middle + 40] = b"\xff\xd0" * 20  # stray restart markers mid-scan
    assert bytes(data[-2:]) == b"\xff\xd9"
    im = Image.open(io.BytesIO(bytes(data)))
    assert ocrq.images._jpeg_straight(im, bytes(data)) is None
    try:
        pages = decode_pages(bytes(data), LIMITS)
    except BadImage as exc:
        assert "JPEG" in str(exc)
    else:
        assert pages[0].shape[2:] in ((), (3,))


def test_a_jpeg_whose_frame_size_disagrees_with_pillows_goes_to_pillow():
    """libjpeg decodes a frame smaller than the buffer into its start: the rest of the
    page would be uninitialised memory, so such a file is left to Pillow."""
    import ocrq.images

    data = _jpeg_cases()["rgb-420"]
    im = Image.open(io.BytesIO(data))
    w, h = im.size
    assert ocrq.images._jpeg_straight(im, data) is not None
    im._size = (w + 16, h + 8)  # what a second, larger frame header would make Pillow see
    assert ocrq.images._jpeg_straight(im, data) is None


def test_the_page_iterator_keeps_no_reference_to_the_page_it_handed_over():
    """A reader that narrows a page (models.base.PageBuffer) frees the rest only if the
    decoder's generator, suspended at its yield, does not hold the page too."""
    pages = iter_decoded(_png(Image.new("RGB", (64, 48), "white")), LIMITS)
    page = next(pages)
    handed = weakref.ref(page)
    del page
    assert handed() is None
    assert next(pages, None) is None


def test_a_colour_page_whose_channels_are_all_equal_is_kept_gray(monkeypatch):
    """Gray scans saved in colour (a JPEG with neutral chroma, an RGB PNG of a gray page)
    are read as one channel, pixel for pixel; one coloured pixel anywhere keeps RGB."""
    import ocrq.images

    monkeypatch.setattr(ocrq.images, "STRIP_BYTES", 50 * 3 * 7)  # 7 rows per strip
    rng = np.random.default_rng(11)
    gray = rng.integers(0, 256, size=(40, 50), dtype=np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    page = ocrq.images.gray_if_neutral(rgb)
    assert page.shape == (40, 50) and page.flags.c_contiguous and page.flags.writeable
    np.testing.assert_array_equal(page, gray)
    for channel in (1, 2):
        tinted = rgb.copy()
        tinted[39, 49, channel] ^= 1  # in the last strip, last pixel
        assert ocrq.images.gray_if_neutral(tinted) is tinted
    decoded = decode_pages(_png(Image.fromarray(rgb)), LIMITS)[0]
    np.testing.assert_array_equal(decoded, gray)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)  # YCbCr with neutral chroma
    jpeg = decode_pages(buf.getvalue(), LIMITS)[0]
    assert jpeg.ndim == 2
