"""Banded detection: the detector's pools exposed, a large fine pass read in row bands
with the probe's pool statistics (models/ppocr/pools.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.onnx_session import open_session
from models.page import page_regions, read_page
from models.ppocr import pools, resources
from models.ppocr.det_pre import DetectorConfig, preprocess
from models.ppocr.detector import DetPredictor
from models.ppocr.engine import PPOCRConfig, load
from ocrq.config import EngineOptions
from ocrq.results import page_text
from ocrq.scoring import cer
from tests.fixtures_text import SAMPLE_LINES, render_page

FP32 = EngineOptions(precision="fp32")


def test_bands_cover_every_row_once_with_context_on_the_stride_grid():
    spans = pools.bands(1984, 256, 64)
    kept = [row for _, _, lo, hi in spans for row in range(lo, hi)]
    assert kept == list(range(1984))  # each row kept by exactly one band
    for read_lo, read_hi, lo, hi in spans:
        assert read_lo == max(0, lo - 64) and read_hi == min(1984, hi + 64)
        assert read_lo % 32 == 0 and lo % 32 == 0
    assert len(spans) == 8
    assert pools.bands(100, 250, 40)[0] == (0, 100, 0, 100)  # rounded to 224 rows, 32 halo
    assert [s[2] for s in pools.bands(500, 250, 40)] == [0, 224, 448]


LINE = " ".join(SAMPLE_LINES)
# Page rows of the lines: the fine pass reads the page at 1984/2600 of its size, so band
# edges (every 256 input rows) fall at page rows 335, 671, 1006, 1342, 1677, ...
LINE_TOPS = (120, 655, 990, 1330, 1665, 2420)


@pytest.fixture(scope="module")
def small_print() -> np.ndarray:
    """2600x2000 with 28-px lines from top to bottom, several across band edges: the
    whole page is read at full scale (1984x1536)."""
    strip = render_page([LINE], height=28, margin=12)[:, :1900]
    out = np.full((2600, 2000, 3), 255, dtype=np.uint8)
    for top in LINE_TOPS:
        out[top : top + strip.shape[0], 40 : 40 + strip.shape[1]] = strip
    return out


def test_exposed_pools_leave_the_probability_map_bit_identical(small_print):
    engine = load(FP32, Path("."))
    exposed = engine.detector.predictor
    plain = DetPredictor(open_session(resources.model_path(resources.DET_FILE), 1))
    cfg = DetectorConfig()
    det_in = preprocess(small_print[:900, :1200], cfg)
    prob, means = exposed.probability_map(det_in, cfg)
    plain_prob, plain_means = plain.probability_map(det_in, cfg)
    np.testing.assert_array_equal(prob, plain_prob)
    assert plain_means == [] and len(means) == 13  # 5 backbone SE gates, 8 in the neck
    assert all(m.shape[0] == 1 and m.shape[2:] == (1, 1) for m in means)
    assert prob.max() > 0.9  # it found text


def _runs(detector) -> list[tuple[int, bool]]:
    """Spy on the detector's session runs: (input rows, given the page's means)."""
    runs: list[tuple[int, bool]] = []
    predictor = detector.predictor
    original = predictor._run

    def spy(tensor, page_means):
        runs.append((tensor.shape[2], page_means is not None))
        return original(tensor, page_means)

    predictor._run = spy
    return runs


def test_a_large_fine_pass_runs_in_bands_and_reads_the_same_text(small_print):
    banded = load(FP32, Path("."))
    whole = load(FP32, Path("."), config=PPOCRConfig(DetectorConfig(band_above=0)))
    runs = _runs(banded.detector)
    banded_text = page_text(page_regions(0, read_page(banded, small_print)))
    whole_runs = _runs(whole.detector)
    whole_text = page_text(page_regions(0, read_page(whole, small_print)))
    probe, *fine = runs
    assert probe == (896, False)  # the probe reads the page whole, measuring its pools
    assert len(fine) == 8 and all(given for _, given in fine)
    assert max(rows for rows, _ in fine) == 256 + 2 * 64
    assert whole_runs == [(896, False), (1984, False)]
    assert cer(whole_text, "\n".join([LINE] * len(LINE_TOPS))) <= 0.02
    assert cer(banded_text, whole_text) <= 0.01


def test_passes_at_or_below_the_threshold_and_single_passes_read_whole(small_print):
    engine = load(FP32, Path("."))
    detector, predictor = engine.detector, engine.detector.predictor
    runs = _runs(detector)
    predictor.detect_at(small_print, detector.config)  # no page means: whole, however big
    assert runs == [(1984, False)]
    cfg = replace(detector.config, band_above=1984 * 1536)
    _, means = predictor.detect_measuring(small_print[:900, :1200], DetectorConfig())
    runs.clear()
    predictor.detect_at(small_print, cfg, means)  # given means, but not above the threshold
    assert runs == [(1984, False)]


def test_the_pool_means_a_pass_returns_are_not_views_of_the_arena():
    """The probe's pool means are kept for the fine pass; as views of ONNX Runtime's
    outputs they held a region of the detector's arena that `release_memory` could then
    not hand back (about 30 MB on a 35-Mpx receipt)."""
    detector = load(FP32, Path(".")).detector
    page = render_page(["Pools are measured here."], height=30)
    _, means = detector.predictor.detect_measuring(page, detector.config)
    assert means and all(m.flags.owndata and m.base is None for m in means)


def test_emptying_the_arena_twice_with_no_pass_between_runs_once(monkeypatch):
    """A worker empties the detector's arena after detection and again after the job; with
    no pass between, the second (a whole 32x32 run) is skipped, and a pass re-arms it."""
    import models.ppocr.detector as predictor_module

    shrinks: list[int] = []
    real = predictor_module.shrink_arena
    monkeypatch.setattr(
        predictor_module, "shrink_arena", lambda s, feed: (shrinks.append(1), real(s, feed))[1]
    )
    detector = load(FP32, Path(".")).detector
    detector.release_memory()  # whatever loading left: handed back
    detector.release_memory()
    assert len(shrinks) == 1
    detector.detect(render_page(["One pass."], height=30))
    detector.release_memory()
    detector.release_memory()
    assert len(shrinks) == 2


def test_a_banded_pass_never_holds_the_whole_inputs_float32_tensor(small_print):
    """The resized page is kept as uint8 and only a band's rows are normalized at a time:
    numpy's allocations (traced by tracemalloc) peak well under the whole input's float32
    tensor, which preprocessing used to build (37 MB for a UNLV page at 2000 px)."""
    import tracemalloc

    detector = load(FP32, Path(".")).detector
    cfg, predictor = detector.config, detector.predictor
    _, means = predictor.detect_measuring(small_print[:900, :1200], cfg)
    tracemalloc.start()
    try:
        det_in = preprocess(small_print, cfg)
        prob, _ = predictor.probability_map(det_in, cfg, means)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    rows, cols = det_in.size
    whole_tensor = 3 * rows * cols * 4
    assert prob.shape == (rows, cols) == (1984, 1536)
    # resized uint8 (3 B/px) + map (4 B/px) + one band of 384 rows (2.3 B/px): ~9.3 B/px;
    # building the whole tensor as before held 3 + 12 + 4 = 19 B/px
    assert peak < whole_tensor, (peak, whole_tensor)
    np.testing.assert_array_equal(det_in.tensor(100, 200), det_in.tensor()[:, :, 100:200])
