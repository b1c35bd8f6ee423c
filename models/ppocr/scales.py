"""Pick the detector's scale from the text on the page, with a coarse pass first.

One fixed input size cannot suit every page. Small print (UNLV scans) needs the full
2000-px input; large print read at that size wastes time, and very large glyphs (drop
capitals, headings) can defeat the detector's receptive field: on oldbooks page e049 the
2000-px pass missed a whole line starting with a drop cap that a 1400-px pass found.
So: detect at `probe_side`; measure the median text box; if that asks for a scale well
below the full one, detect again there (or keep the probe's boxes when it is the probe's
own scale); otherwise detect at full size as before.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.base import Region
from models.ppocr.detector import DetectorConfig, target_size, vertical_pad

# The fine pass is skipped when its long side would be within this factor of the probe's.
CLOSE_ENOUGH = 1.2
# A smaller fine pass is only worth its risk when it saves this much of the long side
# (UNLV page 8071 read at 0.93x its full scale lost 1.9 CER points).
WORTH_SHRINKING = 0.85


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


def detect_two_pass(detector, image: np.ndarray) -> list[Region]:
    cfg: DetectorConfig = detector.config
    h, w = image.shape[:2]
    full = max(target_size(h, w, cfg))
    if vertical_pad(h, w, cfg) or full <= cfg.probe_side * CLOSE_ENOUGH:
        return detector.detect_at(image, cfg)  # a line strip, or small enough already
    probe_cfg = replace(cfg, max_side=cfg.probe_side)
    coarse = detector.detect_at(image, probe_cfg)
    side = fine_side(h, w, coarse, cfg, full)
    if side >= full * WORTH_SHRINKING:
        return detector.detect_at(image, cfg)
    if side <= max(target_size(h, w, probe_cfg)) * CLOSE_ENOUGH:
        return coarse
    return detector.detect_at(image, replace(cfg, max_side=side))
