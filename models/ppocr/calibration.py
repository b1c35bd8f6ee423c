"""Calibration inputs for static INT8 quantization, rendered at run time (no data shipped,
nothing downloaded): printed text pages and line crops in a few fonts, sizes and contrasts,
passed through exactly the pre-processing the engine uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from models.ppocr.det_pre import DetectorConfig, preprocess
from models.ppocr.recognizer import RecognizerConfig, build_batch, resized_width

TEXT = [
    "The quick brown fox jumps over the lazy dog 1234567890.",
    "INVOICE NO: TD01167104  DATE: 25/12/2018  TOTAL (RM): 9.00",
    "It is the Armenians who engage in commerce and agriculture, and thus,",
    "Sphinx of black quartz, judge my vow! (a) [b] {c} 50% off -- $3.75",
    "questioned her until he learned the cause of her sadness. Gently,",
    "QTY  CODE/DESC        PRICE   DISC   AMOUNT  #42 @ 7.5 = 315.00",
    "Über Größe, élève, señor, coração: „Zitat“ «citation» naïve café",
    "pack my box with five dozen liquor jugs; how vexingly quick daft zebras jump",
]


def _fonts(size: int) -> list[ImageFont.ImageFont]:
    fonts: list[ImageFont.ImageFont] = []
    # DejaVu from matplotlib when present (dev/bench installs), else Pillow's own: an
    # optional package, imported only for its font files.
    try:
        import matplotlib

        ttf = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
        for name in ("DejaVuSerif.ttf", "DejaVuSans.ttf", "DejaVuSansMono.ttf"):
            fonts.append(ImageFont.truetype(str(ttf / name), size))
    except Exception:  # noqa: BLE001 - any failure just means fewer fonts
        pass
    if not fonts:
        fonts.append(ImageFont.load_default(size=size))
    return fonts


def render_text_page(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(14, 40))
    font = _fonts(size)[seed % len(_fonts(size))]
    lines = [TEXT[(seed + i) % len(TEXT)] for i in range(int(rng.integers(6, 20)))]
    width = int(size * 0.62 * max(len(t) for t in lines)) + 80
    height = int(len(lines) * size * 1.5) + 80
    paper = int(rng.integers(200, 256))
    ink = int(rng.integers(0, 90))
    image = Image.new("RGB", (width, height), (paper,) * 3)
    draw = ImageDraw.Draw(image)
    for i, text in enumerate(lines):
        draw.text((40, 40 + i * size * 1.5), text, font=font, fill=(ink,) * 3)
    if seed % 3 == 1:
        image = image.filter(ImageFilter.GaussianBlur(0.8))
    arr = np.asarray(image).astype(np.int16)
    if seed % 3 == 2:
        arr = arr + rng.normal(0, 12, arr.shape).astype(np.int16)
    if seed % 4 == 3:  # binarised scans (1-bit TIFF) are common input
        arr = np.where(arr.mean(axis=2, keepdims=True) > 128, 255, 0).repeat(3, axis=2)
    return np.clip(arr, 0, 255).astype(np.uint8)


def detector_inputs(count: int = 12) -> Iterator[np.ndarray]:
    cfg = DetectorConfig()
    for seed in range(count):
        yield preprocess(render_text_page(seed), cfg).tensor()


def recognizer_inputs(count: int = 12, batch: int = 8, height: int = 48) -> Iterator[np.ndarray]:
    """Batches of line crops cut from the rendered pages by row bands, at the
    recognizer's input `height`."""
    # Calibration batches as the INT8 recipe was tuned on (a cached INT8 graph is only
    # rebuilt when its recipe changes, so these must not follow the engine's defaults).
    cfg = RecognizerConfig(right_pad=0, width_scale=1.0, height=height)
    for seed in range(count):
        page = render_text_page(100 + seed)
        ink_rows = np.where(page.min(axis=(1, 2)) < 128)[0]
        crops = []
        if ink_rows.size:
            # split ink rows into bands (lines) at gaps
            cuts = np.where(np.diff(ink_rows) > 1)[0]
            starts = np.r_[ink_rows[0], ink_rows[cuts + 1]]
            ends = np.r_[ink_rows[cuts], ink_rows[-1]]
            for s, e in zip(starts, ends, strict=True):
                pad = max(2, (e - s) // 5)
                cols = np.where(page[s : e + 1].min(axis=(0, 2)) < 128)[0]
                if cols.size and e - s > 4:
                    crops.append(
                        page[max(0, s - pad) : e + pad, max(0, cols[0] - pad) : cols[-1] + pad]
                    )
        crops = crops[:batch]
        if crops:
            widths = [resized_width(c.shape[0], c.shape[1], cfg) for c in crops]
            yield build_batch(crops, widths, cfg)
