"""The tiny TrOCR builders produce directories that the real `from_pretrained` loads offline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.tiny_models import EOS, PAD, tiny_trocr

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("kind", ["small", "base"])
def test_tiny_trocr_loads_and_generates(tmp_path, kind):
    from transformers import AutoImageProcessor

    from models.tooling.trocr.hf import load_pretrained

    out = tiny_trocr(tmp_path / kind, kind=kind)
    model, tokenizer = load_pretrained(out)
    cfg = model.config
    assert cfg.decoder.use_learned_position_embeddings == (kind == "small")
    assert cfg.decoder.layernorm_embedding == (kind == "small")
    assert cfg.decoder.scale_embedding == (kind == "base")
    assert cfg.encoder.model_type == ("deit" if kind == "small" else "vit")
    assert tokenizer.eos_token_id == EOS and tokenizer.pad_token_id == PAD
    assert tokenizer.decode(tokenizer("hello world").input_ids, skip_special_tokens=True) == (
        "hello world"
    )
    pre = json.loads((out / "preprocessor_config.json").read_text())
    size = cfg.encoder.image_size
    assert pre["size"] == {"height": size, "width": size}
    processor = AutoImageProcessor.from_pretrained(out)
    image = np.zeros((20, 90, 3), np.uint8)
    pixel_values = processor(images=[image], return_tensors="pt").pixel_values
    assert tuple(pixel_values.shape) == (1, 3, size, size)
    tokens = model.generate(pixel_values, max_new_tokens=6)
    assert tokens[0, 0].item() == EOS  # decoder_start_token_id
    assert tokens.shape[1] <= 7


def test_same_seed_same_weights(tmp_path):
    from safetensors.numpy import load_file

    a = load_file(tiny_trocr(tmp_path / "a", seed=3) / "model.safetensors")
    b = load_file(tiny_trocr(tmp_path / "b", seed=3) / "model.safetensors")
    c = load_file(tiny_trocr(tmp_path / "c", seed=4) / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a if a[k].size > 1)
