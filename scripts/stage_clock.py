"""Exclusive time per stage of the page pipeline, measured by wrapping its functions.

`StageClock.install(engine)` wraps the page loop's steps (detector passes, crops, the
recognizer's network and its checks, layout, orientation, result rows) so each second is
counted once, in the innermost stage running; the detector's and recognizer's sessions
are wrapped too, so network time is apart from pre/post-processing, with the input shapes
fed (for counting MACs). For scripts/speed_budget.py; the product never imports it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import models.page as page_mod
import models.ppocr.recognizer as rec_mod
import models.ppocr.spacing as spacing_mod
import worker.pipeline as pipeline_mod
from models.ppocr.detector import DetPredictor
from models.ppocr.scales import CLOSE_ENOUGH, TwoPassDetector

Stage = str | Callable[[], str]


class StageClock:
    """Seconds per stage for the page being read (`start_page` resets), and the shapes
    the detector (`det_shapes`: (pass, shape)) and recognizer (`rec_shapes`) were fed."""

    def __init__(self) -> None:
        self._stack: list[list[Any]] = []
        self._installed = False
        self.det_pass: str | None = None
        self.start_page()

    def start_page(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.det_shapes: list[tuple[str, tuple[int, ...]]] = []
        self.rec_shapes: list[tuple[int, ...]] = []
        self._passes = 0

    def wrap(self, fn: Callable, stage: Stage) -> Callable:
        def timed(*args, **kwargs):
            name = stage() if callable(stage) else stage
            self._stack.append([name, 0.0])
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t0
                _, inner = self._stack.pop()
                self.seconds[name] += spent - inner
                if self._stack:
                    self._stack[-1][1] += spent

        return timed

    def _patch(self, owner: Any, attr: str, stage: Stage) -> None:
        setattr(owner, attr, self.wrap(getattr(owner, attr), stage))

    def _det_pass(self, fn: Callable) -> Callable:
        """A detector pass, named probe (a page's first pass at the probe's scale) or fine."""

        def tagged(predictor, image, cfg, page_means=None):
            first = self._passes == 0
            self._passes += 1
            probe = first and cfg.max_side <= cfg.probe_side * CLOSE_ENOUGH
            outer, self.det_pass = self.det_pass, "probe" if probe else "fine"
            try:
                return self.wrap(fn, f"{self.det_pass} pre/post")(predictor, image, cfg, page_means)
            finally:
                self.det_pass = outer

        return tagged

    def install_modules(self) -> None:
        """Wrap the pipeline's functions (once per process: modules are shared)."""
        if self._installed:
            return
        self._installed = True
        DetPredictor.detect_measuring = self._det_pass(DetPredictor.detect_measuring)
        self._patch(TwoPassDetector, "_detect", "det other")
        self._patch(TwoPassDetector, "release_memory", "arena release")
        self._patch(page_mod, "crop_quad", "crops")
        self._patch(rec_mod.PPOCRRecognizer, "recognize", "rec other")
        self._patch(rec_mod, "build_batch", "rec resize")
        self._patch(rec_mod, "best_path", "rec decode")
        for name in ("glyph_ascents", "recase_small_caps", "needs_measuring", "lowers_words"):
            self._patch(rec_mod, name, "small caps")
        for name in ("needs_measuring", "thin_spaces", "line_ink"):
            self._patch(spacing_mod, name, "thin spaces, ink")
        self._patch(rec_mod, "line_spans", "word boxes")
        self._patch(page_mod, "layout", "layout")
        for name in ("sideways_share", "_confidence", "_orientation"):
            self._patch(page_mod, name, "orientation")
        self._patch(page_mod, "read_page_layout", "page other")
        pipeline_mod.read_page_layout = page_mod.read_page_layout
        self._patch(pipeline_mod, "page_regions", "rows")

    def install(self, engine) -> None:
        """Wrap `engine`'s detector and recognizer sessions (and the modules, once)."""
        self.install_modules()
        predictor = engine.detector.predictor
        predictor.session = TimedSession(predictor.session, self, self._det_stage, "det")
        rec = engine.recognizer
        rec.session = TimedSession(rec.session, self, lambda: "rec net", "rec")

    def _det_stage(self) -> str:
        return f"{self.det_pass} net" if self.det_pass else "arena release"


class TimedSession:
    """An ORT session whose runs are a stage of `clock`, their input shapes recorded."""

    def __init__(self, session, clock: StageClock, stage: Callable[[], str], kind: str) -> None:
        self._session, self._clock, self._kind = session, clock, kind
        self._input = session.get_inputs()[0].name
        self.run = clock.wrap(self._run, stage)

    def _run(self, outputs, feed, *args, **kwargs):
        shape = tuple(feed[self._input].shape)
        if self._kind == "rec":
            self._clock.rec_shapes.append(shape)
        elif self._clock.det_pass:
            self._clock.det_shapes.append((self._clock.det_pass, shape))
        return self._session.run(outputs, feed, *args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._session, name)
