"""DBNet text detection: our own pre-processing and post-processing around the PP-OCR
detector ONNX graph.

The graph maps a normalized 1x3xHxW image (H, W multiples of 32) to a 1x1xHxW text
probability map. Post-processing turns that map into clockwise quads in page pixels:
threshold -> connected blobs (OpenCV contours) -> min-area rectangle -> mean probability
inside it (box score) -> grow the rectangle back out (the network predicts shrunk text
kernels) -> scale to the original image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.base import PageBuffer, Quad, Region
from models.ppocr import pools


@dataclass(frozen=True)
class DetectorConfig:
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


def order_clockwise(points: np.ndarray) -> np.ndarray:
    """Order 4 points clockwise from top-left (image coordinates, y down)."""
    pts = np.asarray(points, dtype=np.float32).reshape(4, 2)
    by_x = pts[np.argsort(pts[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    tl, bl = left
    tr, br = right
    return np.array([tl, tr, br, bl], dtype=np.float32)


def box_score(prob: np.ndarray, quad: np.ndarray) -> float:
    """Mean probability inside a quad (map pixels)."""
    h, w = prob.shape
    x0 = int(np.clip(np.floor(quad[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(quad[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(np.floor(quad[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(quad[:, 1].max()), 0, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    shifted = (quad - np.array([x0, y0], dtype=np.float32)).round().astype(np.int32)
    cv2.fillPoly(mask, [shifted], 1)
    window = prob[y0 : y1 + 1, x0 : x1 + 1]
    n = int(mask.sum())
    if n == 0:
        return 0.0
    return float(window[mask.astype(bool)].sum() / n)


def unclip_rect(rect: tuple, ratio: float) -> tuple:
    """Grow a rotated rectangle by the DB offset distance on every side.

    Offsetting a rectangle outward by d with round joins and taking the min-area
    rectangle of the result gives exactly the rectangle with both sides + 2d, so no
    polygon clipping library is needed.
    """
    (cx, cy), (rw, rh), angle = rect
    area = rw * rh
    perimeter = 2.0 * (rw + rh)
    d = area * ratio / perimeter if perimeter > 0 else 0.0
    return ((cx, cy), (rw + 2 * d, rh + 2 * d), angle)


def db_postprocess(prob: np.ndarray, cfg: DetectorConfig) -> list[tuple[np.ndarray, float]]:
    """Probability map (HxW) -> [(quad 4x2 float32 in map pixels, clockwise from TL), score]."""
    bitmap = (prob > cfg.thresh).astype(np.uint8)
    if cfg.dilate:
        bitmap = cv2.dilate(bitmap, np.ones((2, 2), dtype=np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out: list[tuple[np.ndarray, float]] = []
    for contour in contours[: cfg.max_candidates]:
        rect = cv2.minAreaRect(contour)
        if min(rect[1]) < cfg.min_size:
            continue
        quad = cv2.boxPoints(rect)
        score = box_score(prob, quad)
        if score < cfg.box_thresh:
            continue
        grown = unclip_rect(rect, cfg.unclip_ratio)
        if min(grown[1]) < cfg.min_size + 2:
            continue
        out.append((order_clockwise(cv2.boxPoints(grown)), score))
    return out


def to_regions(boxes: list[tuple[np.ndarray, float]], det_in: DetInput) -> list[Region]:
    """Map quads from the probability map to original image pixels, clip, drop slivers."""
    h0, w0 = det_in.orig_shape
    regions = []
    for quad, score in boxes:
        q = quad.astype(np.float64).copy()
        q[:, 0] = np.clip(np.round(q[:, 0] * det_in.scale_x), 0, w0)
        q[:, 1] = np.clip(np.round(q[:, 1] * det_in.scale_y) - det_in.pad_top, 0, h0)
        width = np.linalg.norm(q[0] - q[1])
        height = np.linalg.norm(q[0] - q[3])
        if width <= 3 or height <= 3:
            continue
        quad_t: Quad = tuple((float(x), float(y)) for x, y in q)  # type: ignore[assignment]
        regions.append(Region(quad=quad_t, score=float(score)))
    return regions


class PPOCRDetector:
    """`Detector` over one ORT session; `detect(image) -> list[Region]` (unordered).

    A session opened with `pools.expose_pools` applied can read large inputs in bands
    (`probability_map` with the page's pool means); any other reads them whole."""

    def __init__(self, session, config: DetectorConfig | None = None, run_options=None) -> None:
        self.session = session
        self.config = config or DetectorConfig()
        self._input = session.get_inputs()[0].name
        self._run_options = run_options
        self._pools = pools.pool_count([i.name for i in session.get_inputs()])
        self._outputs = [session.get_outputs()[0].name]
        self._outputs += [pools.mean_name(i) for i in range(self._pools)]
        self._own_means = pools.own_means_feed(self._pools)  # the same for every whole pass
        # Whether a pass ran since the arena was last emptied (True at first: whatever
        # loading left is handed back too). A worker empties it after detection and again
        # after the job; the second call, with nothing run between, is then skipped (one
        # 32x32 run, 1.4 ms: about 1 % of a line image's job).
        self._arena_used = True

    def release_memory(self) -> None:
        """Give back the arena memory the pages since the last call needed (`load_detector`);
        nothing to do when no pass ran since."""
        from models.onnx_session import shrink_arena

        if not self._arena_used:
            return
        tiny = np.zeros((1, 3, 32, 32), dtype=np.float32)
        shrink_arena(self.session, {self._input: tiny, **self._own_means})
        self._arena_used = False

    def _run(self, tensor: np.ndarray, page_means: list | None) -> tuple[np.ndarray, list]:
        feed = self._own_means if page_means is None else pools.given_means_feed(page_means)
        self._arena_used = True
        outs = self.session.run(self._outputs, {self._input: tensor, **feed}, self._run_options)
        # ORT's outputs are views of its arena: the pools' means outlive this pass (a later
        # banded pass reads them), and as views they kept a region of the probe's arena
        # from being handed back (35-Mpx receipts: 384 -> 355 MB peak, fresh process).
        return outs[0][0, 0], [m.copy() for m in outs[1:]]

    def probability_map(
        self, det_in: DetInput, page_means: list | None = None, cfg: DetectorConfig | None = None
    ) -> tuple[np.ndarray, list]:
        """The text probability map and the pools' means over this input. With the page's
        means from an earlier pass, an input above `band_above` pixels is read in bands."""
        rows, cols = det_in.size
        cfg = cfg or self.config
        if page_means is None or not self._pools or not 0 < cfg.band_above < rows * cols:
            return self._run(det_in.tensor(), None)
        prob = np.empty((rows, cols), dtype=np.float32)
        for lo, hi, keep_lo, keep_hi in pools.bands(rows, cfg.band_rows, cfg.band_halo):
            band, _ = self._run(det_in.tensor(lo, hi), page_means)
            prob[keep_lo:keep_hi] = band[keep_lo - lo : keep_hi - lo]
        return prob, page_means

    def detect(self, image: np.ndarray) -> list[Region]:
        return self._detect(PageBuffer(image), narrow=False)

    def detect_page(self, page: PageBuffer) -> list[Region]:
        """`detect` in page pixels, narrowing `page` to the window around its text when
        the fine pass reads only that window (`scales.detect_window`)."""
        return self._detect(page, narrow=True)

    def _detect(self, page: PageBuffer, narrow: bool) -> list[Region]:
        shape = page.pixels.shape
        if len(shape) not in (2, 3) or shape[0] < 2 or shape[1] < 2:
            return []
        if self.config.probe_side > 0:
            from models.ppocr.scales import detect_two_pass

            return detect_two_pass(self, page, narrow)
        return self.detect_at(page.pixels, self.config)

    def detect_at(
        self, image: np.ndarray, cfg: DetectorConfig, page_means: list | None = None
    ) -> list[Region]:
        """One pass with `cfg`'s resize policy (and its thresholds)."""
        return self.detect_measuring(image, cfg, page_means)[0]

    def detect_measuring(
        self, image: np.ndarray, cfg: DetectorConfig, page_means: list | None = None
    ) -> tuple[list[Region], list]:
        """`detect_at`, plus the pools' means over this pass (for a later banded pass)."""
        det_in = preprocess(image, cfg)
        prob, means = self.probability_map(det_in, page_means, cfg)
        return to_regions(db_postprocess(prob, cfg), det_in), means
