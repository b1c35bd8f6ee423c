"""Pick the detector's scale from the text on the page, with a coarse pass first.

One fixed input size cannot suit every page. Small print (UNLV scans) needs the full
2000-px input; large print read at that size wastes time, and very large glyphs (drop
capitals, headings) can defeat the detector's receptive field: on oldbooks page e049 the
2000-px pass missed a whole line starting with a drop cap that a 1400-px pass found.
So: detect at `probe_side`; measure the median text box; if that asks for a scale well
below the full one, detect again there (or keep the probe's boxes when it is the probe's
own scale); otherwise detect at full size as before. When the probe's text fills at most
half of the image (a receipt scanned on a large background), the second pass reads only
a window around it, at the scale it would have read the whole image at. A line-like
probe box that the fine pass left uncovered is read too: a line the fine pass lost whole.
On a bilevel scan with print the probe saw large enough, and no probe box across a
gutter, the probe's boxes stand and the fine pass is skipped (`probe_stands`,
`models/ppocr/bilevel.py`).

`TwoPassDetector` is the engine's `Detector`: this policy around a `DetPredictor`, which
runs each pass.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from models.base import PageBuffer, Region
from models.ppocr.bilevel import is_bilevel, probe_suffices
from models.ppocr.det_pre import DetectorConfig, resize_ratio, target_size, vertical_pad
from models.ppocr.detector import DetPredictor

# The fine pass is skipped when its long side would be within this factor of the probe's.
CLOSE_ENOUGH = 1.2
# A smaller fine pass is only worth its risk when it saves this much of the long side
# (UNLV page 8071 read at 0.93x its full scale lost 1.9 CER points).
WORTH_SHRINKING = 0.85
# The fine pass reads a window around the probe's text only when the window is at most
# this share of the page: a receipt or page photographed or scanned on a much larger
# background. Measured side by side (scripts/eval_engine.py, one core, INT8): the two
# 35-Mpx receipt scans, windows of 20-22 %, read 1.5-1.6x faster at the same or lower CER
# (3.46 -> 3.46 %, 2.10 -> 1.73 %); ordinary pages, windows of 58-87 %, gained 2-10 %
# but lost accuracy when cropped (UNLV 8071 1.56 -> 3.85 % CER, book pages 1.12 ->
# 1.16 %): the network's global-average pools read the page's margins too.
WORTH_CROPPING = 0.5
# An image too small for the probe is probed at this share of its single-pass long side
# (a quarter of the pixels).
SMALL_PROBE_SHARE = 0.5
# Probe boxes are checked against the fine pass on a mask at most this many pixels long.
MISSED_MASK_SIDE = 1024
# Only line-like probe boxes are added back: the probe's stray marks and single glyphs
# are what the fine pass is there to correct (receipts: "C:::", a stamp's "A04070").
MISSED_MIN_ASPECT = 4.0


class TwoPassDetector:
    """`Detector` (models/base.py): `detect(image)` and `detect_page(page)` give unordered
    regions, read by this module's passes (one pass at `config`'s scale when its
    `probe_side` is 0) over `predictor`."""

    def __init__(self, predictor: DetPredictor, config: DetectorConfig | None = None) -> None:
        self.predictor = predictor
        self.config = config or DetectorConfig()

    def release_memory(self) -> None:
        """Hand back the predictor's arena (`DetPredictor.release_memory`)."""
        self.predictor.release_memory()

    def detect(self, image: np.ndarray) -> list[Region]:
        return self._detect(PageBuffer(image), narrow=False)

    def detect_page(self, page: PageBuffer) -> list[Region]:
        """`detect` in page pixels, narrowing `page` to the window around its text when
        the fine pass reads only that window (`detect_window`)."""
        return self._detect(page, narrow=True)

    def _detect(self, page: PageBuffer, narrow: bool) -> list[Region]:
        shape = page.pixels.shape
        if len(shape) not in (2, 3) or shape[0] < 2 or shape[1] < 2:
            return []
        if self.config.probe_side > 0:
            return detect_two_pass(self.predictor, self.config, page, narrow)
        return self.predictor.detect_at(page.pixels, self.config)


def _height(region: Region) -> float:
    q = np.asarray(region.quad)
    return float(np.linalg.norm(q[0] - q[3]))


def fine_side(h: int, w: int, coarse: list[Region], cfg: DetectorConfig, full: int) -> int:
    """Long side (input pixels) that puts the median coarse box at `text_height`, at most
    `full` (the single-pass input's long side)."""
    if not coarse:
        return full
    median = float(np.median([_height(r) for r in coarse]))  # original-image pixels
    return int(min(full, max(h, w) * cfg.text_height / max(median, 1.0)))


def fine_config(
    h: int,
    w: int,
    coarse: list[Region],
    cfg: DetectorConfig,
    full: int,
    probe_cfg: DetectorConfig,
) -> DetectorConfig | None:
    """The fine pass's settings after a probe with `probe_cfg` found `coarse`: the full
    single pass when the text asks for nearly its scale (or nothing was found), a pass
    at the text's own scale, or None when that is the probe's scale and its boxes stand."""
    side = fine_side(h, w, coarse, cfg, full)
    if side >= full * WORTH_SHRINKING:
        return cfg
    if side <= max(target_size(h, w, probe_cfg)) * CLOSE_ENOUGH:
        return None
    return replace(cfg, max_side=side)


def detect_two_pass(
    predictor: DetPredictor, cfg: DetectorConfig, page: PageBuffer, narrow: bool = False
) -> list[Region]:
    """Regions in page pixels. With `narrow`, a fine pass over a window of the page first
    narrows `page` to that window (`detect_window`)."""
    image = page.pixels
    h, w = image.shape[:2]
    if vertical_pad(h, w, cfg):  # a line strip: one pass at its own scale
        return predictor.detect_at(image, cfg)
    full = max(target_size(h, w, cfg))
    if full <= cfg.probe_side * CLOSE_ENOUGH:
        return detect_small(predictor, image, cfg, full)
    probe_cfg = replace(cfg, max_side=cfg.probe_side)
    coarse, page_means = predictor.detect_measuring(image, probe_cfg)
    fine_cfg = fine_config(h, w, coarse, cfg, full, probe_cfg)
    if fine_cfg is None or probe_stands(image, coarse, cfg, resize_ratio(h, w, probe_cfg)):
        return coarse
    del image  # so that narrowing the page frees the rest of it
    fine = detect_window(predictor, page, coarse, fine_cfg, page_means, narrow)
    return with_missed(fine, coarse, (h, w), cfg.missed_coverage)


def probe_stands(
    image: np.ndarray, coarse: list[Region], cfg: DetectorConfig, ratio: float
) -> bool:
    """The probe's boxes (read at `ratio` of the page's size) are the page's lines: a
    bilevel scan whose text the probe saw at least `cfg.bilevel_probe_height` high, with
    no box across a river of white (`models.ppocr.bilevel`)."""
    if cfg.bilevel_probe_height <= 0 or not coarse:
        return False
    median = float(np.median([_height(r) for r in coarse])) * ratio
    return (
        median >= cfg.bilevel_probe_height
        and is_bilevel(image)
        and probe_suffices(image, coarse, ratio)
    )


def detect_small(
    predictor: DetPredictor, image: np.ndarray, cfg: DetectorConfig, full: int
) -> list[Region]:
    """Regions of an image whose single pass (`full` px long) is too small for the
    `probe_side` probe: the same two-pass rule with a probe at `SMALL_PROBE_SHARE` of that
    scale (never upscaled). Large print keeps the probe's boxes or gets a fine pass at its
    own text height; small print gets the single pass as before, after a probe that cost
    a quarter of it. One pass read eurotext (1024x800, text boxes 51 px) at 1024 px where
    642 puts its text at `text_height`, and phototest (640x480) upscaled to 981x736."""
    h, w = image.shape[:2]
    probe_cfg = replace(cfg, min_side=0, max_side=full * SMALL_PROBE_SHARE)
    coarse = predictor.detect_at(image, probe_cfg)
    fine_cfg = fine_config(h, w, coarse, cfg, full, probe_cfg)
    if fine_cfg is None:
        return coarse
    return with_missed(predictor.detect_at(image, fine_cfg), coarse, (h, w), cfg.missed_coverage)


def detect_window(
    predictor: DetPredictor,
    page: PageBuffer,
    coarse: list[Region],
    cfg: DetectorConfig,
    page_means: list | None = None,
    narrow: bool = False,
) -> list[Region]:
    """The fine pass at the scale `cfg` gives the whole page, over the window around the
    probe's text only (`text_window`); boxes come back in page pixels. `page_means`, the
    probe's pool statistics, let a large fine pass run in bands (`models/ppocr/pools.py`).

    With `narrow`, `page` keeps only that window from here on: every box, the probe's
    included, lies inside it, and on a 600-dpi receipt scan it is a fifth of the page
    (the rest, 80 MB, would otherwise sit beside the detector's activations)."""
    h, w = page.shape
    window = text_window(h, w, coarse, cfg.crop_margin)
    if window is None:
        return predictor.detect_at(page.pixels, cfg, page_means)
    x0, y0, x1, y1 = window
    ch, cw = y1 - y0, x1 - x0
    if vertical_pad(ch, cw, cfg):  # a window around one line: the page's pass reads it
        return predictor.detect_at(page.pixels, cfg, page_means)
    ratio = resize_ratio(h, w, cfg)
    window_cfg = replace(cfg, min_side=ratio * min(ch, cw), max_side=ratio * max(ch, cw))
    if narrow:
        # The probe's activations, kept in the detector's arena, would otherwise sit beside
        # the whole page and the window's copy: 35-Mpx receipt scans peaked at 409-411 MB
        # that way, 381-394 MB this way (fresh processes, FP32), in the same time.
        predictor.release_memory()
        page.narrow(x0, y0, x1, y1)
        pixels = page.pixels
    else:
        pixels = page.pixels[y0:y1, x0:x1]
    regions = predictor.detect_at(pixels, window_cfg, page_means)
    return [
        Region(quad=tuple((x + x0, y + y0) for x, y in r.quad), score=r.score)  # type: ignore[arg-type]
        for r in regions
    ]


def with_missed(
    fine: list[Region], coarse: list[Region], shape: tuple[int, int], coverage: float
) -> list[Region]:
    """`fine` plus every probe box at least `MISSED_MIN_ASPECT` times as long as it is
    high that fine boxes cover less than `coverage` of (0 = none added): a line the fine
    pass lost whole, where the probe saw one."""
    if coverage <= 0 or not coarse:
        return fine
    scale = min(1.0, MISSED_MASK_SIDE / max(shape))
    mask = np.zeros((int(shape[0] * scale) + 1, int(shape[1] * scale) + 1), dtype=np.uint8)
    for region in fine:
        cv2.fillPoly(mask, [np.round(np.asarray(region.quad) * scale).astype(np.int32)], 1)
    missed = [
        r for r in coarse if _aspect(r) >= MISSED_MIN_ASPECT and _covered(mask, r, scale) < coverage
    ]
    return fine + missed


def _aspect(region: Region) -> float:
    q = np.asarray(region.quad)
    return float(np.linalg.norm(q[1] - q[0])) / max(_height(region), 1.0)


def _covered(mask: np.ndarray, region: Region, scale: float) -> float:
    """Share of `region` (its quad drawn at `scale`) that `mask` has set."""
    quad = np.round(np.asarray(region.quad) * scale).astype(np.int32)
    x0, y0 = np.maximum(quad.min(axis=0), 0)
    x1, y1 = quad.max(axis=0) + 1
    inside = np.zeros((max(1, y1 - y0), max(1, x1 - x0)), dtype=np.uint8)
    cv2.fillPoly(inside, [quad - (x0, y0)], 1)
    under = mask[y0:y1, x0:x1]
    inside = inside[: under.shape[0], : under.shape[1]]
    area = int(inside.sum())
    return float((under & inside).sum()) / area if area else 1.0


def text_window(
    h: int, w: int, coarse: list[Region], margin: float
) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) around every coarse box, grown by `margin` median box heights,
    or None when that leaves too little of the page out to be worth a crop."""
    if not coarse or margin <= 0:
        return None
    boxes = np.array([r.bbox for r in coarse], dtype=np.float64)
    pad = margin * float(np.median([_height(r) for r in coarse]))
    x0, y0 = (max(0, int(v - pad)) for v in boxes[:, :2].min(axis=0))
    x1, y1 = int(min(w, boxes[:, 2].max() + pad + 1)), int(min(h, boxes[:, 3].max() + pad + 1))
    if (x1 - x0) * (y1 - y0) > WORTH_CROPPING * h * w:
        return None
    return x0, y0, x1, y1
