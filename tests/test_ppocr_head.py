"""The recognizer's classifier cut to the Latin classes: same argmax, same text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from models.ppocr import resources
from models.ppocr.engine import load_recognizer
from models.ppocr.head import narrow_classifier
from models.ppocr.recognizer import RecognizerConfig, allowed_classes, build_batch, resized_width
from tests.fixtures_text import SAMPLE_LINES, render_line


def _recognizers():
    narrowed = load_recognizer(Path("."), threads=1)
    full = load_recognizer(Path("."), threads=1, config=RecognizerConfig(narrow_head=False))
    return narrowed, full


def test_default_recognizer_head_is_narrowed_to_latin():
    narrowed, full = _recognizers()
    keep = allowed_classes(full.charset, "latin")
    assert len(full.charset) == 18710 and keep is not None
    assert narrowed.charset == [full.charset[i] for i in keep]
    assert narrowed.charset[0] == "" and narrowed.charset[-1] == " "
    assert narrowed.session.get_outputs()[0].shape[-1] == len(keep)
    assert narrowed.allowed is None  # nothing left to mask


def test_narrowed_head_is_the_full_head_renormalized_over_the_kept_classes():
    narrowed, full = _recognizers()
    keep = allowed_classes(full.charset, "latin")
    crops = [render_line(text, height=40) for text in SAMPLE_LINES[:3]]
    widths = [resized_width(c.shape[0], c.shape[1], narrowed.config) for c in crops]
    batch = build_batch(crops, widths, narrowed.config)
    small = narrowed.session.run(None, {"x": batch})[0]
    big = full.session.run(None, {"x": batch})[0][:, :, keep]
    np.testing.assert_allclose(small, big / big.sum(axis=2, keepdims=True), rtol=1e-4, atol=1e-6)
    assert np.array_equal(small.argmax(axis=2), big.argmax(axis=2))
    assert [t.text for t in narrowed.recognize(crops)] == [t.text for t in full.recognize(crops)]


def test_graph_without_the_expected_head_is_left_alone():
    model = onnx.load(str(resources.model_path(resources.DET_FILE)))
    before = model.SerializeToString()
    assert not narrow_classifier(model, np.arange(3), 18710)
    assert model.SerializeToString() == before
