"""Denormal weights are zeroed before ORT sees them: same output, and the file is untouched."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from models.denormals import flush_denormal_weights
from models.onnx_session import graph_source, open_session
from models.ppocr import resources
from models.ppocr.det_pre import DetectorConfig, preprocess
from ocrq import hashing
from tests.fixtures_text import render_page

DENORMAL = np.float32(1e-40)


def _matmul_model(weights: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, weights.shape[0]])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, weights.shape[1]])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [x],
        [y],
        [numpy_helper.from_array(weights, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_flush_zeroes_only_denormals():
    weights = np.array([[1.0, DENORMAL], [-DENORMAL, 0.5]], dtype=np.float32)
    model = _matmul_model(weights)
    assert flush_denormal_weights(model) == 2
    flushed = numpy_helper.to_array(model.graph.initializer[0])
    np.testing.assert_array_equal(flushed, [[1.0, 0.0], [0.0, 0.5]])
    assert flush_denormal_weights(model) == 0


def test_session_from_flushed_graph_matches_and_file_is_unchanged(tmp_path):
    weights = np.array([[1.0, DENORMAL], [2.0, 0.5]], dtype=np.float32)
    path = tmp_path / "m.onnx"
    onnx.save(_matmul_model(weights), str(path))
    before = hashing.sha256_file(path)
    assert isinstance(graph_source(path), bytes)
    x = np.array([[3.0, 4.0]], dtype=np.float32)
    flushed = open_session(path).run(None, {"x": x})[0]
    kept = open_session(path, flush_denormals=False).run(None, {"x": x})[0]
    np.testing.assert_array_equal(flushed, kept)
    assert hashing.sha256_file(path) == before


def test_clean_graph_is_opened_from_its_path(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_matmul_model(np.eye(2, dtype=np.float32)), str(path))
    assert graph_source(path) == str(path)


def test_ppocr_detector_has_denormals_and_output_is_identical():
    """The wheel's detector is the model this exists for: flushing must not move its map."""
    path = resources.model_path(resources.DET_FILE)
    assert isinstance(graph_source(path), bytes)
    page = render_page(["Denormal weights", "flushed to zero 0.0"])
    tensor = preprocess(page, DetectorConfig(max_side=640)).tensor()
    flushed = open_session(path).run(None, {"x": tensor})[0]
    kept = open_session(path, flush_denormals=False).run(None, {"x": tensor})[0]
    np.testing.assert_array_equal(flushed, kept)


def test_an_edited_graph_is_loaded_from_a_staged_file_that_is_then_deleted(tmp_path, monkeypatch):
    """ORT loads an edited graph by path (a session from the bytes kept more memory); the
    staged file is gone once the session exists, and where none can be written the bytes
    are loaded as before."""
    import tempfile

    weights = np.array([[1.0, DENORMAL], [2.0, 0.5]], dtype=np.float32)
    path = tmp_path / "m.onnx"
    onnx.save(_matmul_model(weights), str(path))
    staging = tmp_path / "staging"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    import models.onnx_session as onnx_session

    real = onnx_session.ort.InferenceSession
    loaded: list = []

    def spy(source, **kwargs):
        loaded.append(source)
        return real(source, **kwargs)

    monkeypatch.setattr(onnx_session.ort, "InferenceSession", spy)
    x = np.array([[3.0, 4.0]], dtype=np.float32)
    session = open_session(path)
    assert str(loaded[0]).startswith(str(staging))  # by path, from the staging dir
    assert list(staging.iterdir()) == []  # and deleted
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], [[11.0, 2.0]])

    def refuse(*args, **kwargs):
        raise OSError("read-only temp dir")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    np.testing.assert_array_equal(open_session(path).run(None, {"x": x})[0], [[11.0, 2.0]])
    assert isinstance(loaded[1], bytes)
