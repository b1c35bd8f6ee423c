"""TrOCR on MLX: conversion, parity with PyTorch, batched/beam decoding, CLI, engine.

Tiny random-weight models of both public shapes (small: DeiT encoder, learned positions,
embedding layernorm; base: ViT encoder, sinusoidal positions, scaled embeddings) are built
with tests/tiny_models.py, converted with the real converter and compared with the
PyTorch model they came from.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

try:
    import mlx.core as mx
except Exception as exc:  # plain `mlx` on Linux installs but fails to import
    pytest.skip(
        f"MLX does not import here ({type(exc).__name__}: {exc}); on Linux install "
        "`pip install .[mlx]` (mlx[cpu])",
        allow_module_level=True,
    )
torch = pytest.importorskip("torch", reason="conversion and parity need PyTorch")

from click.testing import CliRunner  # noqa: E402

from models import cache  # noqa: E402
from models.mlx.generate import beam_search, greedy  # noqa: E402
from models.mlx.model import load_model  # noqa: E402
from models.tooling.mlx.convert import KEY_TABLE, convert, rename  # noqa: E402
from models.tooling.mlx.verify import THRESHOLDS, verify_mlx  # noqa: E402
from models.tooling.parity import trim  # noqa: E402
from models.tooling.trocr.hf import load_pretrained  # noqa: E402
from models.tooling.trocr.reference import torch_reference  # noqa: E402
from ocrq.errors import ModelError  # noqa: E402
from tests.tiny_models import EOS, PAD, tiny_trocr  # noqa: E402

MAX_NEW_TOKENS = 16
SHAPES = {"small-deit": ("small", "deit"), "base-vit": ("base", "vit")}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, models_dir):
    """shape -> (HF source dir, converted MLX dir), built once per module."""
    built = {}
    for shape, (kind, encoder) in SHAPES.items():
        src = tiny_trocr(tmp_path_factory.mktemp("src") / f"tiny-{shape}", encoder, kind)
        built[shape] = (src, convert(src, models_dir))
    return built


def pixel_batch(model_dir, n: int, seed: int = 0) -> np.ndarray:
    size = json.loads((model_dir / "config.json").read_text())["encoder"]["image_size"]
    # Mixed inputs (noise, flat, stripes) give rows of different decoded lengths.
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 3, size, size)).astype(np.float32)
    x[1::3] = rng.uniform(-1, 1)
    x[2::3, :, ::4] = 1.0
    return x


# ---- conversion -------------------------------------------------------------------


def test_key_table_names_both_transformers_spellings():
    assert (
        rename("encoder.layers.3.attention.q_proj.weight") == "encoder.layers.3.attn.q_proj.weight"
    )
    old = "encoder.encoder.layer.3.attention.attention.query.weight"
    assert rename(old) == "encoder.layers.3.attn.q_proj.weight"
    assert rename("encoder.encoder.layer.0.output.dense.bias") == "encoder.layers.0.fc2.bias"
    assert rename("encoder.layers.0.mlp.fc2.bias") == "encoder.layers.0.fc2.bias"
    assert rename("decoder.model.decoder.layers.1.encoder_attn.k_proj.weight") == (
        "decoder.layers.1.encoder_attn.k_proj.weight"
    )
    assert rename("encoder.pooler.dense.weight") is None
    with pytest.raises(ModelError, match="no MLX name"):
        rename("encoder.something_new.weight")
    assert len({pattern for pattern, _ in KEY_TABLE}) == len(KEY_TABLE)


@pytest.mark.parametrize("shape", SHAPES)
def test_convert_writes_weights_config_tokenizer_and_manifest(tiny, shape):
    src, out = tiny[shape]
    assert out.name == f"tiny-{shape}-mlx"
    manifest = cache.read_manifest(out)
    assert manifest["kind"] == "trocr-mlx" and manifest["source"] == str(src)
    assert manifest["mlx"]["dtype"] == "float32"
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "tokenizer.json"):
        assert name in manifest["files"], name
    cache.verify_files(out)  # every recorded sha256 matches the file
    weights = mx.load(str(out / "model.safetensors"))
    assert not any("pooler" in k for k in weights)
    kind, encoder = SHAPES[shape]
    assert ("encoder.dist_token" in weights) == (encoder == "deit")
    assert ("decoder.embed_positions.weight" in weights) == (kind == "small")
    # the patch convolution became a linear layer over flattened patches
    assert weights["encoder.patch_embed.weight"].ndim == 2


def test_unknown_weights_fail_loading(tiny, tmp_path):
    import shutil

    _, out = tiny["small-deit"]
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    weights = mx.load(str(broken / "model.safetensors"))
    weights.pop("decoder.layers.0.fc1.weight")
    mx.save_safetensors(str(broken / "model.safetensors"), weights)
    with pytest.raises(ModelError, match="do not fit"):
        load_model(broken)


# ---- parity -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_parity_with_pytorch(tiny, shape):
    src, out = tiny[shape]
    pixels = pixel_batch(out, 6)
    reference = torch_reference(src, pixels, MAX_NEW_TOKENS)
    report = verify_mlx(out, pixels, reference)
    assert report["passed"], report["failures"]
    assert report["max_rel_logit_diff"] <= THRESHOLDS["float32"].max_rel_diff
    assert report["logit_cosine"] >= THRESHOLDS["float32"].min_cosine
    assert report["greedy_rows_identical"] == 6 and report["greedy_token_agreement"] == 1.0
    # the reference really decoded something (not all rows stopping at once)
    lengths = {len(trim(t, EOS, PAD)) for t in reference["greedy_tokens"]}
    assert max(lengths) > 1


def test_verify_fails_on_a_wrong_weight(tiny, tmp_path):
    import shutil

    src, out = tiny["base-vit"]
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    weights = mx.load(str(broken / "model.safetensors"))
    weights["encoder.layers.1.norm2.weight"] = weights["encoder.layers.1.norm2.weight"] * 1.05
    mx.save_safetensors(str(broken / "model.safetensors"), weights)
    pixels = pixel_batch(out, 3)
    report = verify_mlx(broken, pixels, torch_reference(src, pixels, MAX_NEW_TOKENS))
    assert not report["passed"]
    assert any("logit diff" in f for f in report["failures"])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_conversion_stays_close(tiny, tmp_path, dtype):
    src, _ = tiny["small-deit"]
    out = convert(src, tmp_path, dtype=dtype)
    assert load_model(out).dtype == getattr(mx, dtype)
    pixels = pixel_batch(out, 3)
    report = verify_mlx(out, pixels, torch_reference(src, pixels, MAX_NEW_TOKENS))
    assert report["dtype"] == dtype
    assert report["passed"], report["failures"]
    assert report["max_rel_logit_diff"] > 0  # really ran in half precision


# ---- decoding ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_batched_greedy_equals_one_by_one(tiny, shape):
    _, out = tiny[shape]
    model = load_model(out)
    pixels = pixel_batch(out, 7, seed=1)
    batched = greedy(model, pixels, MAX_NEW_TOKENS)
    single = [greedy(model, pixels[i : i + 1], MAX_NEW_TOKENS)[0] for i in range(7)]
    assert [d.tokens for d in batched] == [d.tokens for d in single]
    np.testing.assert_allclose(
        [d.confidence for d in batched], [d.confidence for d in single], rtol=1e-4
    )
    assert all(0.0 < d.confidence <= 1.0 for d in batched)
    assert all(len(d.tokens) <= MAX_NEW_TOKENS for d in batched)


def test_rows_stop_early_at_eos(tiny):
    _, out = tiny["small-deit"]
    decoded = greedy(load_model(out), pixel_batch(out, 9, seed=2), 40)
    lengths = [len(d.tokens) for d in decoded]
    assert len(set(lengths)) > 1  # rows of different lengths in one batch
    for d in decoded:
        assert d.tokens[-1] == EOS and EOS not in d.tokens[:-1]


def test_min_new_tokens_forces_the_step_count(tiny):
    _, out = tiny["small-deit"]
    decoded = greedy(load_model(out), pixel_batch(out, 3), 12, min_new_tokens=12)
    assert [len(d.tokens) for d in decoded] == [12, 12, 12]
    assert all(EOS not in d.tokens for d in decoded)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("beams", "length_penalty", "early_stopping"), [(3, 1.0, False), (4, 2.0, True)]
)
def test_beam_search_matches_transformers_generate(
    tiny, shape, beams, length_penalty, early_stopping
):
    src, out = tiny[shape]
    pixels = pixel_batch(out, 5, seed=3)
    hf, _ = load_pretrained(src)
    with torch.no_grad():
        sequences = hf.generate(
            torch.from_numpy(pixels),
            max_new_tokens=MAX_NEW_TOKENS,
            num_beams=beams,
            length_penalty=length_penalty,
            early_stopping=early_stopping,
            do_sample=False,
        ).numpy()
    expected = [trim(row[1:].tolist(), EOS, PAD) for row in sequences]
    got = beam_search(
        load_model(out), pixels, MAX_NEW_TOKENS, beams, length_penalty, early_stopping
    )
    assert [d.tokens for d in got] == expected


def test_one_beam_is_greedy(tiny):
    _, out = tiny["base-vit"]
    model = load_model(out)
    pixels = pixel_batch(out, 4)
    assert [d.tokens for d in beam_search(model, pixels, 10, 1)] == [
        d.tokens for d in greedy(model, pixels, 10)
    ]


# ---- CLI --------------------------------------------------------------------------


def test_convert_mlx_cli(tiny, tmp_path):
    from producer.cli import cli

    src, _ = tiny["base-vit"]
    result = CliRunner().invoke(
        cli, ["models", "convert-mlx", str(src), "--models-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "tiny-base-vit-mlx"
    assert str(out) in result.output
    manifest = cache.read_manifest(out)
    assert manifest["kind"] == "trocr-mlx"
    assert manifest["parity"]["mlx"]["passed"] is True  # checked at conversion
    assert "parity vs PyTorch" in result.output
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp dirs left behind
    load_model(out)


def test_convert_mlx_cli_writes_into_the_configured_cache(tiny, tmp_path):
    from producer.cli import cli

    src, _ = tiny["small-deit"]
    result = CliRunner().invoke(
        cli, ["models", "convert-mlx", str(src), "--no-check"], env={"OCRQ_MODELS": str(tmp_path)}
    )
    assert result.exit_code == 0, result.output
    assert cache.read_manifest(tmp_path / "tiny-small-deit-mlx")["kind"] == "trocr-mlx"


def test_convert_mlx_cli_hub_unreachable(tmp_path, monkeypatch):
    """The real hub code path; offline mode makes it fail at once instead of after
    retries (this machine has no network either way)."""
    import huggingface_hub.constants

    from producer.cli import cli

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    result = CliRunner().invoke(
        cli,
        ["models", "convert-mlx", "microsoft/trocr-small-printed", "--models-dir", str(tmp_path)],
    )
    assert result.exit_code == ModelError.exit_code
    assert "Hugging Face hub" in result.output and "microsoft/trocr-small-printed" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "trocr-small-printed-mlx").exists()


def test_convert_mlx_cli_missing_local_dir(tmp_path):
    from producer.cli import cli

    result = CliRunner().invoke(
        cli, ["models", "convert-mlx", str(tmp_path / "nope"), "--models-dir", str(tmp_path)]
    )
    assert result.exit_code == ModelError.exit_code
    assert "not found" in result.output


# ---- engine -----------------------------------------------------------------------


def test_engine_reads_a_rendered_page(tiny, models_dir):
    from models.page import read_page
    from models.registry import load_engine
    from models.trocr.preprocess import Preprocessor
    from ocrq.config import EngineOptions
    from tests.fixtures_text import render_page

    _, out = tiny["small-deit"]
    options = EngineOptions(engine="trocr-mlx", model=out.name, batch_size=2, max_new_tokens=12)
    engine = load_engine(options, models_dir)
    assert engine.name == "trocr-mlx"
    assert engine.provenance["sha256"] == cache.sha256_file(out / "model.safetensors")
    assert engine.provenance["precision"] == "float32"

    page = render_page(["The quick brown fox", "jumps over the lazy dog", "Invoice 4711"])
    pairs = read_page(engine, page)
    assert len(pairs) == 3  # the PP-OCR detector found the three lines

    # What the engine returns is exactly greedy decoding of the preprocessed crops.
    from models.crops import crop_quad

    crops = [crop_quad(page, region.quad) for region, _ in pairs]
    expected = greedy(
        load_model(out), Preprocessor.from_file(out / "preprocessor_config.json")(crops), 12
    )
    tokenizer = engine.recognizer.tokenizer
    for (_, line), d in zip(pairs, expected, strict=True):
        assert line.text == tokenizer.decode(d.tokens, skip_special_tokens=True).strip()
        assert line.confidence == pytest.approx(d.confidence, rel=1e-5)
        assert 0.0 < line.confidence <= 1.0


def test_engine_beam_option_runs_beam_search(tiny, models_dir):
    from models.registry import load_engine
    from ocrq.config import EngineOptions
    from tests.fixtures_text import render_line

    _, out = tiny["base-vit"]
    crops = [render_line("Hello world"), render_line("0123"), render_line("Batch OCR workers")]
    options = EngineOptions(engine="trocr-mlx", model=out.name, max_new_tokens=10, num_beams=3)
    recognizer = load_engine(options, models_dir).recognizer
    lines = recognizer.recognize(crops)
    expected = beam_search(recognizer.model, recognizer.preprocess(crops), 10, 3)
    assert [line.confidence for line in lines] == pytest.approx([d.confidence for d in expected])
    assert len(lines) == 3


def test_engine_model_names(tiny, models_dir):
    from models.mlx.engine import resolve

    _, out = tiny["small-deit"]
    assert resolve(out.name, models_dir) == out
    assert resolve("tiny-small-deit", models_dir) == out  # the ONNX export's name
    assert resolve(str(out), models_dir) == out
    with pytest.raises(ModelError, match="convert-mlx"):
        resolve("no-such-model", models_dir)
    with pytest.raises(ModelError, match="--model"):
        resolve(None, models_dir)


def test_engine_refuses_int8(tiny, models_dir):
    from models.registry import load_engine
    from ocrq.config import EngineOptions

    _, out = tiny["small-deit"]
    with pytest.raises(ModelError, match="dtype"):
        load_engine(EngineOptions(engine="trocr-mlx", model=out.name, precision="int8"), models_dir)
