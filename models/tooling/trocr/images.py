"""Input images for calibration and verification: a folder of crops, or rendered lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from ocrq.errors import ModelError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

SAMPLE_TEXT = (
    "Invoice 2024-117",
    "The quick brown fox",
    "jumps over the lazy dog.",
    "Total: 1,234.56 EUR",
    "Please sign and return",
    "OCR at scale",
    "Mon 23 Nov 2026",
    "abcdefghijklmnopqrstuvwxyz",
)


def load_images(folder: Path | str, limit: int | None = None) -> list[np.ndarray]:
    """RGB uint8 arrays of the images in `folder` (sorted by name, EXIF-transposed)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"image folder not found: {folder}")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None:
        paths = paths[:limit]
    images = []
    for path in paths:
        try:
            with Image.open(path) as im:
                images.append(np.asarray(ImageOps.exif_transpose(im).convert("RGB")))
        except OSError as exc:
            raise ModelError(f"cannot read image {path}: {exc}") from exc
    if not images:
        raise ModelError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return images


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # DejaVu Sans from matplotlib, an optional package (dev/bench installs) imported only
    # for its font file; Pillow's own font otherwise.
    try:
        import matplotlib

        path = Path(matplotlib.__file__).parent / "mpl-data/fonts/ttf/DejaVuSans.ttf"
        return ImageFont.truetype(str(path), size)
    except (ImportError, OSError):
        return ImageFont.load_default()


def render_line(text: str, size: int = 28, pad: int = 6) -> np.ndarray:
    """One printed text line, black on white, as an RGB crop."""
    font = _font(size)
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    image = Image.new("RGB", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), "white")
    ImageDraw.Draw(image).text((pad - x0, pad - y0), text, fill="black", font=font)
    return np.asarray(image)


def sample_lines(n: int = 8) -> list[np.ndarray]:
    """`n` rendered lines (cycling through SAMPLE_TEXT with growing font sizes)."""
    return [
        render_line(SAMPLE_TEXT[i % len(SAMPLE_TEXT)], size=20 + 4 * (i // len(SAMPLE_TEXT)))
        for i in range(n)
    ]
