"""DBNet pre-processing for the PP-OCR detector: its settings, the resize policy and the
normalized network input.

The graph takes a normalized 1x3xHxW image with H and W multiples of 32. An image is
scaled so its sides fall between `min_side` and `max_side`, a wide and short strip (one
text line) is first padded with its own background, and the result is kept as uint8
(`DetInput`) until a pass asks for its rows as a tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class DetectorConfig:
    """The detector's settings: its resize policy and thresholds (one pass), and the
    two-pass scale policy around them (`models.ppocr.scales`)."""

    # Resize policy: scale so the long side is at most `max_side` and the short side at
    # least `min_side` (the long side cap wins), then round each side to a multiple of 32.
    min_side: float = 736
    max_side: float = 2000  # float: a window of the page (scales.py) is read at its scale
    # Wide, short images (a single text line) are padded top and bottom to at most this
    # width:height ratio, so the detector sees the line with context as on a page.
    max_aspect: float = 16.0
    pad_min_height: int = 32
    thresh: float = 0.3  # probability above which a pixel is text
    box_thresh: float = 0.5  # mean probability a kept box must reach
    unclip_ratio: float = 1.6  # growth: distance = area * ratio / perimeter
    min_size: float = 3.0  # shortest rectangle side kept, in map pixels
    max_candidates: int = 1000
    dilate: bool = True  # 2x2 dilation of the binary map joins broken strokes
    # Two passes (models/ppocr/scales.py): a coarse one at this long side first, 0 = off.
    # Measured side by side (eval_engine): oldbooks 1.45 -> 1.13 % CER and 1.24x faster,
    # receipts 3.11 -> 3.15 % and 1.20x faster, tesseract_test same CER, 5 % slower.
    # 896 rather than 1024 (2026-11-30, side by side, one core): receipts 3.23 -> 3.01 %
    # (INT8) and 3.15 -> 2.99 % (FP32), as more of them get a pass at their own text
    # height instead of keeping the probe's boxes; book pages 1.12 -> 1.13 % and 1.13 ->
    # 1.14 %, tesseract_test and the UW-III lines unchanged; UNLV detection 1.03-1.19x
    # faster. At 768 the book pages lost more (1.46 %).
    probe_side: int = 896
    # The fine pass's scale puts the page's median text box at this height (detector
    # pixels), never above max_side; if that is near the probe's, the probe is the answer.
    # 30 rather than 32 (2026-11-30, AMD EPYC Zen 5, scripts/eval_engine.py, one core),
    # CER % at 32 -> 30: INT8 book pages 1.23 -> 1.17, tesseract_test 0.99 -> 0.65,
    # receipts 2.99 -> 3.02; FP32 1.19 -> 1.16, 1.13 -> 0.74, 2.98 -> 2.98; UW-III lines
    # unchanged; pages 1.05-1.08x faster. Its neighbours agree on the book pages and
    # tesseract_test (INT8 at 28, 29, 31: 1.13, 1.16, 1.15 and 0.92, 0.65, 0.97 %), while
    # receipts swing from one value to the next (3.22, 3.08, 3.18 %).
    text_height: float = 30.0
    # On a bilevel scan the probe's boxes stand, with no fine pass, when the probe saw the
    # page's median text box at least this high (probe pixels) and no box runs across a
    # river of white (models/ppocr/bilevel.py); 0 = never. From rendered two-column pages
    # (scripts/make_column_pages.py): a 1-em gutter stays open at the probe's scale from
    # 17.9 px (14 pt on a letter page) and is bridged at 15.5 (12 pt).
    bilevel_probe_height: float = 17.0
    # When the probe's text fills at most half of the image (scales.WORTH_CROPPING), the
    # second pass reads only a window around it, grown by this many median text heights
    # on every side (0 = always the whole image): a large background costs detector time
    # and memory in proportion to its area and holds nothing to read.
    crop_margin: float = 2.0
    # A fine pass whose input has more pixels than this is read in bands of `band_rows`
    # rows, each with `band_halo` rows of context above and below, using the probe's
    # pool statistics (models/ppocr/pools.py); 0 = never. 1.2 Mpx: small-print pages
    # (UNLV, 3 Mpx) and most book pages are banded, receipts (at most 1.06 Mpx here) not.
    band_above: float = 1.2e6
    band_rows: int = 256
    band_halo: int = 64
    # A line-like probe box the fine pass covers less than this share of is read too
    # (scales.with_missed; 0 = never). Large glyphs at a line's start (drop capitals) can
    # make the fine pass lose the whole line at some scales: book page e049 at a 29-px
    # text height lost "RESEARCH fails to show us...", 1.47 % CER on the book pages
    # instead of 1.17 % with this. At the default scale the eval sets read the same.
    missed_coverage: float = 0.25


@dataclass(frozen=True)
class DetInput:
    """The image at network scale plus what is needed to map boxes back to it.

    It keeps the resized image as uint8 and normalizes rows into a tensor when a pass
    asks for them (`tensor`): a banded pass then holds one band's float32 rows at a time
    instead of the whole input's (a UNLV page at 2000 px: 37 MB of float32, 9 MB as uint8).
    """

    resized: np.ndarray  # HxWx3 (or HxW gray) uint8, H and W multiples of 32
    scale_x: float  # map pixel -> padded image pixel
    scale_y: float
    pad_top: int  # rows added above the original image
    orig_shape: tuple[int, int]  # (h, w) of the original image

    @property
    def size(self) -> tuple[int, int]:
        """(rows, cols) of the network input."""
        return self.resized.shape[0], self.resized.shape[1]

    def tensor(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Rows [lo:hi] as a 1x3xHxW float32 tensor, (x/255 - 0.5) / 0.5 in one fused
        pass straight into NCHW (a gray image's one channel broadcast to all three)."""
        rows = self.resized[lo:hi]
        planes = rows[None] if rows.ndim == 2 else rows.transpose(2, 0, 1)
        out = np.empty((1, 3, rows.shape[0], rows.shape[1]), dtype=np.float32)
        np.multiply(planes, 2.0 / 255.0, out=out[0], casting="unsafe")
        out -= 1.0
        return out


def resize_ratio(h: int, w: int, cfg: DetectorConfig, upscale: bool = True) -> float:
    """Scale from image to network input before rounding to multiples of 32."""
    ratio = 1.0
    if upscale and min(h, w) < cfg.min_side:
        ratio = cfg.min_side / min(h, w)
    if max(h, w) * ratio > cfg.max_side:
        ratio = cfg.max_side / max(h, w)
    return ratio


def target_size(h: int, w: int, cfg: DetectorConfig, upscale: bool = True) -> tuple[int, int]:
    """(h, w) of the network input for an image of h x w, multiples of 32. `upscale=False`
    skips the short-side minimum (a padded text-line strip is read at native scale)."""
    ratio = resize_ratio(h, w, cfg, upscale)
    th = max(32, int(round(h * ratio / 32)) * 32)
    tw = max(32, int(round(w * ratio / 32)) * 32)
    return th, tw


def vertical_pad(h: int, w: int, cfg: DetectorConfig) -> int:
    """Rows to add above and below a wide, short image (0 for ordinary pages)."""
    if cfg.max_aspect <= 0:
        return 0
    if w / max(h, 1) <= cfg.max_aspect and h > cfg.pad_min_height:
        return 0
    new_h = max(int(w / cfg.max_aspect), cfg.pad_min_height)
    return max(0, (new_h - h) // 2)


def preprocess(image: np.ndarray, cfg: DetectorConfig) -> DetInput:
    """`image` (HxWx3 or HxW uint8) as the network's input under `cfg`'s resize policy."""
    h0, w0 = image.shape[:2]
    pad = vertical_pad(h0, w0, cfg)
    if pad:
        # Pad with the page's own background (median of the border) rather than black,
        # so the padded band does not look like a dark object to the detector.
        border = np.concatenate([image[0], image[-1]])
        fill = np.median(border, axis=0).astype(np.uint8)
        padded = np.empty((h0 + 2 * pad, *image.shape[1:]), dtype=np.uint8)
        padded[:] = fill
        padded[pad : pad + h0] = image
        image = padded
    h, w = image.shape[:2]
    # A line strip's text is already at a readable scale: upscaling it to min_side only
    # multiplies detector work (measured: same CER on the UW-III lines, ~3x less time).
    th, tw = target_size(h, w, cfg, upscale=not pad)
    resized = cv2.resize(image, (tw, th), interpolation=cv2.INTER_LINEAR)
    return DetInput(resized, w / tw, h / th, pad, (h0, w0))
