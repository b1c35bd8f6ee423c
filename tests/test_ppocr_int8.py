"""INT8 generation: file + manifest in the models cache, reused when current, regenerated
when stale. Runs on the small angle-classifier graph with a 2-image calibration so it stays
fast; the full engine in INT8 is covered by the slow test below."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.cpu import int8_needs_reduce_range, int8_preferred
from models.onnx_session import open_session
from models.ppocr import resources
from models.ppocr.classifier import cls_batch
from models.ppocr.quantize import constants_to_initializers, depthwise_convs, ensure_int8
from tests.fixtures_text import SAMPLE_LINES, render_line

RECIPE = {"method": "static-qdq", "ops": ["Conv"], "per_channel": True, "calib": 2}


def test_int8_generated_with_manifest_then_reused(tmp_path, caplog):
    source = resources.model_path(resources.CLS_FILE)
    with caplog.at_level("WARNING", logger="models.ppocr.quantize"):
        out = ensure_int8("cls", source, tmp_path, RECIPE)
    assert "building the INT8 cls graph" in caplog.text  # a first start says why it waits
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["source_sha256"] == resources.sha256_file(source)
    assert manifest["output_sha256"] == resources.sha256_file(out)
    assert manifest["method"] == "static-qdq" and manifest["per_channel"] is True
    assert manifest["reduce_range"] is int8_needs_reduce_range()  # 7-bit where 8 saturates
    import onnx

    graph = onnx.load(str(out)).graph
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(int8_weights) >= len(convs) > 0  # every Conv weight stored as int8
    mtime = out.stat().st_mtime_ns
    caplog.clear()
    assert ensure_int8("cls", source, tmp_path, RECIPE) == out
    assert "building" not in caplog.text
    assert out.stat().st_mtime_ns == mtime  # current: not regenerated

    # a manifest that no longer matches (e.g. a new wheel) regenerates the file
    manifest["source_sha256"] = "0" * 64
    out.with_suffix(".json").write_text(json.dumps(manifest))
    ensure_int8("cls", source, tmp_path, RECIPE)
    assert json.loads(out.with_suffix(".json").read_text())["source_sha256"] != "0" * 64
    # so does one built for the other kind of CPU (7-bit vs 8-bit weights)
    manifest = json.loads(out.with_suffix(".json").read_text())
    manifest["reduce_range"] = not manifest["reduce_range"]
    out.with_suffix(".json").write_text(json.dumps(manifest))
    ensure_int8("cls", source, tmp_path, RECIPE)
    rebuilt = json.loads(out.with_suffix(".json").read_text())
    assert rebuilt["reduce_range"] is int8_needs_reduce_range()

    # the INT8 graph computes nearly what the FP32 one does
    batch = cls_batch([render_line(t, height=40) for t in SAMPLE_LINES])
    fp32 = open_session(source).run(None, {"x": batch})[0]
    int8 = open_session(out).run(None, {"x": batch})[0]
    # (calibrated on 2 images only, and 7-bit weights on x86 without VNNI, so allow some
    # probability drift: 0.21 measured there; decisions must agree)
    assert np.abs(fp32 - int8).max() < 0.25
    assert (fp32.argmax(1) == int8.argmax(1)).all()


def test_same_named_graphs_from_two_folders_keep_their_own_int8_files(tmp_path, caplog):
    import onnx

    model = onnx.load(str(resources.model_path(resources.CLS_FILE)))
    sources = []
    for folder in ("a", "b"):  # two different files (other bytes), one file name
        model.doc_string = f"exported into {folder}"
        (tmp_path / folder).mkdir()
        onnx.save(model, str(tmp_path / folder / "cls.onnx"))
        sources.append(tmp_path / folder / "cls.onnx")
    models_dir = tmp_path / "models"
    first, second = (ensure_int8("cls", s, models_dir, RECIPE) for s in sources)
    assert first != second and first.is_file() and second.is_file()
    mtime = first.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level("WARNING", logger="models.ppocr.quantize"):
        assert ensure_int8("cls", sources[0], models_dir, RECIPE) == first
    assert "building" not in caplog.text and first.stat().st_mtime_ns == mtime  # not rebuilt


def test_depthwise_convs_stay_fp32_when_the_recipe_says(tmp_path):
    import onnx

    source = resources.model_path(resources.CLS_FILE)
    out = ensure_int8("cls", source, tmp_path, {**RECIPE, "fp32_depthwise": True})
    graph = onnx.load(str(out)).graph
    model = onnx.load(str(source))
    constants_to_initializers(model)  # as quantization does: its weights are Constant nodes
    depthwise = set(depthwise_convs(model))
    assert len(depthwise) >= 5  # MobileNetV3: one per inverted-residual block
    weights = {t.name: t for t in graph.initializer}
    produced_by = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        quantized = produced_by.get(node.input[1]) is not None  # a DequantizeLinear output
        if node.name in depthwise:
            assert groups > 1 and not quantized, node.name
            assert weights[node.input[1]].data_type == onnx.TensorProto.FLOAT
        else:
            assert quantized, node.name
    batch = cls_batch([render_line(t, height=40) for t in SAMPLE_LINES])
    fp32 = open_session(source).run(None, {"x": batch})[0]
    mixed = open_session(out).run(None, {"x": batch})[0]
    assert (fp32.argmax(1) == mixed.argmax(1)).all()


@pytest.mark.slow
def test_engine_int8_reads_rendered_page(tmp_path_factory):
    from models.page import page_regions, read_page
    from models.ppocr.engine import load
    from ocrq.config import EngineOptions
    from ocrq.results import page_text
    from ocrq.scoring import cer
    from tests.fixtures_text import render_page

    models_dir = Path(tmp_path_factory.mktemp("models"))
    engine = load(EngineOptions(precision="int8"), models_dir, threads=1)
    assert engine.provenance["precision"] == "int8"
    assert engine.provenance["models"]["rec"]["file"].endswith(".int8.onnx")
    assert engine.provenance["models"]["rec"]["weight_bits"] == (
        7 if int8_needs_reduce_range() else 8
    )
    assert "weight_bits" not in engine.provenance["models"]["det"]  # the FP32 detector
    # The head stayed FP32 through quantization, so it was narrowed to the Latin classes.
    assert engine.recognizer.session.get_outputs()[0].shape[-1] == len(engine.recognizer.charset)
    assert len(engine.recognizer.charset) < 1000
    text = page_text(page_regions(0, read_page(engine, render_page(SAMPLE_LINES, height=36))))
    assert cer(text, "\n".join(SAMPLE_LINES)) <= 0.03, text

    # `auto`, the default, runs INT8 only where weights are 8-bit; either way it says so.
    auto = load(EngineOptions(precision="auto"), models_dir, threads=1).provenance
    assert auto["precision_asked"] == "auto"
    assert auto["precision"] == ("int8" if int8_preferred() else "fp32")
    assert auto["models"]["rec"]["file"].endswith(
        ".onnx" if auto["precision"] == "fp32" else ".int8.onnx"
    )
