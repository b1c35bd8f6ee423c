"""The PP-OCR detector's predictor: one ONNX Runtime session that turns an image into
regions in one pass, at the scale a `DetectorConfig` gives it.

Pre- and post-processing are models.ppocr.det_pre and .det_post; which passes a page gets
(a coarse probe, then a pass at the text's own scale) is models.ppocr.scales. A session
opened with `pools.expose_pools` applied can read a large input in bands of rows with the
pool statistics of an earlier pass (models/ppocr/pools.py); any other reads it whole.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from models.base import Region
from models.onnx_session import shrink_arena
from models.ppocr import pools
from models.ppocr.det_post import db_postprocess, to_regions
from models.ppocr.det_pre import DetectorConfig, DetInput, preprocess


class DetPredictor:
    """Passes of the detector graph over one ORT session; regions are unordered."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self._input = session.get_inputs()[0].name
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
        if not self._arena_used:
            return
        tiny = np.zeros((1, 3, 32, 32), dtype=np.float32)
        shrink_arena(self.session, {self._input: tiny, **self._own_means})
        self._arena_used = False

    def _run(self, tensor: np.ndarray, page_means: list | None) -> tuple[np.ndarray, list]:
        feed = self._own_means if page_means is None else pools.given_means_feed(page_means)
        self._arena_used = True
        outs = self.session.run(self._outputs, {self._input: tensor, **feed})
        # ORT's outputs are views of its arena: the pools' means outlive this pass (a later
        # banded pass reads them), and as views they kept a region of the probe's arena
        # from being handed back (35-Mpx receipts: 384 -> 355 MB peak, fresh process).
        return outs[0][0, 0], [m.copy() for m in outs[1:]]

    def probability_map(
        self, det_in: DetInput, cfg: DetectorConfig, page_means: list | None = None
    ) -> tuple[np.ndarray, list]:
        """The text probability map and the pools' means over this input. With the page's
        means from an earlier pass, an input above `cfg.band_above` pixels is read in bands."""
        rows, cols = det_in.size
        if page_means is None or not self._pools or not 0 < cfg.band_above < rows * cols:
            return self._run(det_in.tensor(), None)
        prob = np.empty((rows, cols), dtype=np.float32)
        for lo, hi, keep_lo, keep_hi in pools.bands(rows, cfg.band_rows, cfg.band_halo):
            band, _ = self._run(det_in.tensor(lo, hi), page_means)
            prob[keep_lo:keep_hi] = band[keep_lo - lo : keep_hi - lo]
        return prob, page_means

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
        prob, means = self.probability_map(det_in, cfg, page_means)
        return to_regions(db_postprocess(prob, cfg), det_in), means
