"""Export: ONNX graphs reproduce PyTorch exactly (FP32), manifest, clear hub errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import cache
from models.tooling.parity import trim
from models.tooling.trocr.hf import load_pretrained
from models.tooling.trocr.images import sample_lines
from models.tooling.trocr.reference import torch_reference
from models.tooling.trocr.tools import export_model
from models.trocr.preprocess import Preprocessor
from models.trocr.runtime import OnnxTrOCR, TokenIds, greedy
from ocrq.errors import ModelError
from tests.tiny_models import export_tiny, tiny_trocr

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "models"
    return {kind: export_tiny(root, kind) for kind in ("small", "base")}


def _inputs(model_dir: Path, n: int) -> np.ndarray:
    crops = sample_lines(n)
    # plain grey and black crops as well: different encoder states, different lengths
    crops += [np.full((30, 120, 3), v, np.uint8) for v in (0, 128)]
    return Preprocessor.from_file(model_dir / "preprocessor_config.json")(crops)


@pytest.mark.parametrize("kind", ["small", "base"])
def test_fp32_greedy_tokens_identical_to_pytorch(exported, kind):
    model_dir = exported[kind]
    source = cache.read_manifest(model_dir)["source"]
    pixel_values = _inputs(model_dir, 5)
    ref = torch_reference(source, pixel_values, max_new_tokens=24)
    ids = TokenIds.from_dir(model_dir)
    onnx = OnnxTrOCR(model_dir / "encoder.onnx", model_dir / "decoder.onnx", ids)
    ours = [trim(d.tokens, ids.eos, ids.pad) for d in greedy(onnx, pixel_values, 24)]
    assert ours == ref["greedy_tokens"]
    # the whole prefix in one call exercises the dynamic sequence axis and causal mask
    logits = onnx.teacher_forced_logits(pixel_values, ref["decoder_input_ids"])
    assert logits.shape == ref["logits"].shape
    np.testing.assert_allclose(logits, ref["logits"], atol=1e-4, rtol=0)
    # batch of one (dynamic batch axis) gives the same tokens as in the batch
    single = greedy(onnx, pixel_values[2:3], 24)[0]
    assert trim(single.tokens, ids.eos, ids.pad) == ref["greedy_tokens"][2]


def test_manifest_records_files_and_parity(exported):
    model_dir = exported["small"]
    manifest = cache.read_manifest(model_dir)
    assert manifest["kind"] == "trocr" and manifest["opset"] == 18
    assert Path(manifest["source"]).is_dir()
    for name in ("encoder.onnx", "decoder.onnx", "tokenizer.json", "preprocessor_config.json",
                 "generation_config.json", "config.json"):  # fmt: skip
        assert manifest["files"][name]["sha256"] == cache.sha256_file(model_dir / name)
    parity = manifest["parity"]["fp32"]
    assert parity["passed"] and parity["greedy_rows_identical"] == parity["inputs"] == 4
    assert parity["max_rel_logit_diff"] < 1e-4
    assert {"torch", "transformers", "onnxruntime"} <= set(manifest["versions"])
    gen = json.loads((model_dir / "generation_config.json").read_text())
    assert gen["decoder_start_token_id"] == 2 and gen["eos_token_id"] == 2
    assert not any(p.name.startswith(".") for p in model_dir.parent.iterdir())


def test_hub_unreachable_is_a_clear_error(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OCRQ_MODELS": str(tmp_path / "m")}
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty hub cache: nothing to fall back on
    proc = subprocess.run(
        [sys.executable, "-m", "producer.cli", "models", "export", "microsoft/trocr-small-printed"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == ModelError.exit_code
    assert "cannot fetch model 'microsoft/trocr-small-printed'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "m" / "trocr-small-printed").exists()


def test_missing_local_directory(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_pretrained(str(tmp_path / "nope"))


def test_reference_is_plain_greedy_whatever_the_generation_config(tmp_path):
    """Checkpoints ship beam/no-repeat settings; parity compares plain greedy decoding."""
    source = tiny_trocr(tmp_path / "hf", kind="base")  # base repeats tokens: 247 247 247
    gen_path = source / "generation_config.json"
    gen = json.loads(gen_path.read_text())
    gen.update(num_beams=4, no_repeat_ngram_size=2, length_penalty=2.0)
    gen_path.write_text(json.dumps(gen))
    model, _ = load_pretrained(source)
    pixel_values = Preprocessor.from_file(source / "preprocessor_config.json")(sample_lines(3))
    ref = torch_reference(source, pixel_values, 16, model=model)
    import torch

    with torch.no_grad():
        configured = model.generate(pixel_values=torch.from_numpy(pixel_values))
    configured_tokens = [trim(r[1:].tolist(), 2, 1) for r in configured]
    assert configured_tokens != ref["greedy_tokens"]  # the settings did change decoding
    model_dir = export_tiny_from(source, tmp_path / "models")
    ids = TokenIds.from_dir(model_dir)
    onnx = OnnxTrOCR(model_dir / "encoder.onnx", model_dir / "decoder.onnx", ids)
    ours = [trim(d.tokens, ids.eos, ids.pad) for d in greedy(onnx, pixel_values, 16)]
    assert ours == ref["greedy_tokens"]


def export_tiny_from(source: Path, models_dir: Path) -> Path:
    return export_model(str(source), models_dir, name="cfg", check=True)
