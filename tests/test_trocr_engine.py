"""The trocr-onnx recognizer: batched KV-cached decoding, early stop, beams, provenance."""

from __future__ import annotations

import numpy as np
import pytest

from models import cache
from models.registry import load_engine
from models.tooling.trocr.hf import load_pretrained
from models.tooling.trocr.images import render_line, sample_lines
from models.tooling.trocr.quantize import quantize_model
from models.trocr.engine import DecodeOptions, load_recognizer
from models.trocr.preprocess import Preprocessor
from models.trocr.runtime import ENCODER_BATCH, beam_search, greedy
from ocrq.config import EngineOptions
from ocrq.errors import ModelError
from tests.tiny_models import EOS, export_tiny


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine") / "models"
    model_dir = export_tiny(root, "small", name="s", check=False)
    info = quantize_model(model_dir, "dynamic")
    cache.update_manifest(model_dir, quantization={"int8": info})
    cache.add_files(model_dir, info["files"])
    return root


def crops() -> list[np.ndarray]:
    # mixed content gives rows of different lengths (the tiny model stops after 5-11 tokens)
    out = sample_lines(6)
    out += [np.full((24, 90, 3), v, np.uint8) for v in (0, 64, 128, 255)]
    return out


def recognizer(models_dir, precision="fp32", **options):
    rec, provenance = load_recognizer("s", models_dir, precision, 1, DecodeOptions(**options))
    return rec, provenance


def test_encoder_runs_in_chunks_with_the_same_result(models_dir):
    rec, _ = recognizer(models_dir)
    pixel_values = rec.preprocess(crops())
    assert len(pixel_values) > ENCODER_BATCH  # so encode() splits it
    chunked = rec.model.encode(pixel_values)
    single = [rec.model.encode(pixel_values[i : i + 1]) for i in range(len(pixel_values))]
    for layer, kv in enumerate(chunked):
        assert kv.shape[0] == len(pixel_values)
        expected = np.concatenate([s[layer] for s in single])
        np.testing.assert_allclose(kv, expected, rtol=1e-5, atol=1e-5)


def test_batched_equals_one_by_one_and_early_stop(models_dir):
    rec, _ = recognizer(models_dir, batch_size=16, max_new_tokens=20)
    pixel_values = rec.preprocess(crops())
    batched = greedy(rec.model, pixel_values, 20)
    single = [greedy(rec.model, pixel_values[i : i + 1], 20)[0] for i in range(len(batched))]
    assert [d.tokens for d in batched] == [d.tokens for d in single]
    np.testing.assert_allclose(
        [d.logprob for d in batched], [d.logprob for d in single], rtol=1e-4, atol=1e-4
    )
    lengths = {len(d.tokens) for d in batched}
    # rows stopped at EOS at different steps, all before the cap: early stop + row dropping
    assert len(lengths) > 1 and max(lengths) < 20
    assert all(d.tokens[-1] == EOS and EOS not in d.tokens[:-1] for d in batched)
    # the cap is honoured and EOS can be forced away (what the benchmark does)
    capped = greedy(rec.model, pixel_values, 3)
    assert all(len(d.tokens) <= 3 for d in capped)
    forced = greedy(rec.model, pixel_values, 12, min_new_tokens=12)
    assert all(len(d.tokens) == 12 for d in forced)
    # and recognize() with small batches gives the same lines as one big batch
    small_batches, _ = recognizer(models_dir, batch_size=3, max_new_tokens=20)
    assert rec.recognize(crops()) == small_batches.recognize(crops())


def test_beam_search(models_dir):
    rec, _ = recognizer(models_dir)
    pixel_values = rec.preprocess(crops())
    g = greedy(rec.model, pixel_values, 20)
    b1 = beam_search(rec.model, pixel_values, 20, num_beams=1)
    assert [d.tokens for d in b1] == [d.tokens for d in g]
    np.testing.assert_allclose([d.logprob for d in b1], [d.logprob for d in g], atol=1e-4)
    b3 = beam_search(rec.model, pixel_values, 20, num_beams=3)
    # same as transformers' beam search on the PyTorch model
    import torch

    model, _ = load_pretrained(cache.read_manifest(models_dir / "s")["source"])
    with torch.no_grad():
        ref = model.generate(torch.from_numpy(pixel_values), max_new_tokens=20, num_beams=3)
    expected = [[t for t in row[1:].tolist() if t != 1] for row in ref]
    assert [d.tokens for d in b3] == expected
    # a wider beam never ends with a worse length-normalized score than greedy
    for gd, bd in zip(g, b3, strict=True):
        assert bd.logprob / len(bd.tokens) >= gd.logprob / len(gd.tokens) - 1e-6


def test_recognize_text_and_confidence(models_dir):
    rec, _ = recognizer(models_dir, max_new_tokens=20)
    lines = rec.recognize(crops())
    assert len(lines) == 10
    assert all(0.0 < line.confidence <= 1.0 for line in lines)
    decoded = greedy(rec.model, rec.preprocess(crops()), 20)
    for line, d in zip(lines, decoded, strict=True):
        assert line.confidence == pytest.approx(np.exp(d.logprob / len(d.tokens)))
        assert line.text == rec.tokenizer.decode(d.tokens[:-1], skip_special_tokens=True).strip()
    assert rec.recognize([]) == []


def test_preprocessing_matches_the_hf_processor(models_dir):
    from transformers import AutoImageProcessor

    model_dir = models_dir / "s"
    ours = Preprocessor.from_file(model_dir / "preprocessor_config.json")
    theirs = AutoImageProcessor.from_pretrained(model_dir)
    images = [render_line("Hello"), np.zeros((5, 300, 3), np.uint8), sample_lines(1)[0]]
    expected = theirs(images=images, return_tensors="np").pixel_values
    np.testing.assert_allclose(ours(images), expected, atol=1e-5)


def test_engine_load_int8_provenance_and_page(models_dir):
    options = EngineOptions(engine="trocr-onnx", model="s", precision="int8", max_new_tokens=8)
    engine = load_engine(options, models_dir, threads=1)
    assert engine.name == "trocr-onnx"
    prov = engine.provenance["recognizer"]
    assert prov["precision"] == "int8" and prov["quantization"]["mode"] == "dynamic"
    for name, sha in prov["files"].items():
        assert name.endswith(".int8.onnx") and sha == cache.sha256_file(models_dir / "s" / name)
    assert len(engine.provenance["detector"]["sha256"]) == 64
    page = np.full((120, 500, 3), 255, np.uint8)
    line = render_line("Detect this line of text", size=26)
    page[40 : 40 + line.shape[0], 20 : 20 + line.shape[1]] = line
    regions = engine.detector.detect(page)
    assert len(regions) == 1
    x0, y0, x1, y1 = (int(v) for v in regions[0].bbox)
    (text,) = engine.recognizer.recognize([page[y0:y1, x0:x1]])
    assert 0 < text.confidence <= 1


def test_engine_errors(models_dir, tmp_path):
    with pytest.raises(ModelError, match="needs a model"):
        load_engine(EngineOptions(engine="trocr-onnx"), models_dir)
    with pytest.raises(ModelError, match="not found"):
        load_engine(EngineOptions(engine="trocr-onnx", model="zzz"), models_dir)
    # a model directory given by path works too; a corrupted graph is refused
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(models_dir / "s", copy)
    rec, _ = load_recognizer(str(copy), models_dir)
    assert rec.model.layers == 2
    with open(copy / "decoder.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01")
    with pytest.raises(ModelError, match="sha256"):
        load_recognizer(str(copy), models_dir)
