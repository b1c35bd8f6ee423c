"""`ocrq models quantize|verify|list` through click, on tiny exported models."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

from models import cache
from models.cli import models_group
from models.cpu import int8_needs_reduce_range
from models.tooling.parity import compare
from models.tooling.trocr.images import sample_lines
from models.tooling.trocr.verify import THRESHOLDS
from ocrq.errors import ModelError, UsageError
from tests.tiny_models import export_tiny, tiny_trocr


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("qv") / "models"
    export_tiny(root, "small", name="s")
    export_tiny(root, "base", name="b")
    return root


@pytest.fixture(scope="module")
def crops_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crops")
    for i, crop in enumerate(sample_lines(10)):
        Image.fromarray(crop).save(folder / f"line{i:02d}.png")
    return folder


def run(models_dir, *args):
    result = CliRunner().invoke(models_group, [*args, "--models-dir", str(models_dir)])
    return result


def op_types(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_quantize_then_verify(models_dir, crops_dir, mode):
    args = ["quantize", "s", "--mode", mode]
    if mode == "static":  # 7-bit weights asked for; dynamic takes this CPU's default
        args += ["--calibration", str(crops_dir), "--reduce-range", "on"]
    result = run(models_dir, *args)
    assert result.exit_code == 0, result.output
    model_dir = models_dir / "s"
    manifest = cache.read_manifest(model_dir)
    int8 = manifest["quantization"]["int8"]
    assert int8["mode"] == mode and int8["per_channel"]
    wanted = True if mode == "static" else int8_needs_reduce_range()
    assert int8["reduce_range"] is wanted
    assert f"{7 if wanted else 8}-bit weights" in result.output
    ops = op_types(model_dir / "decoder.int8.onnx")
    if mode == "dynamic":
        assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    else:
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops and int8["calibration_crops"] == 10
    cache.verify_files(model_dir, int8["files"])
    agree = manifest["parity"]["int8_vs_fp32"]
    assert agree["logit_cosine"] > 0.99 and 0 <= agree["greedy_token_agreement"] <= 1

    result = run(models_dir, "verify", "s", "--images", str(crops_dir), "--json")
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    assert set(reports) == {"onnx-fp32", "onnx-int8"}
    fp32, q = reports["onnx-fp32"], reports["onnx-int8"]
    assert fp32["greedy_rows_identical"] == fp32["inputs"] == 10
    assert fp32["max_rel_logit_diff"] < 1e-4 and fp32["passed"]
    assert fp32["forced_top1_agreement"] == 1.0 and fp32["reference_top1_margin"] > 0
    # INT8 changes the logits (it is lossy) but stays close
    assert 0.99 < q["logit_cosine"] < 1.0 and q["max_abs_logit_diff"] > fp32["max_abs_logit_diff"]
    parity = cache.read_manifest(model_dir)["parity"]
    assert parity["int8"]["on"].startswith("10 crops")


def test_verify_fails_against_a_different_model(models_dir, tmp_path):
    other = tiny_trocr(tmp_path / "other", kind="small", seed=7)
    result = run(models_dir, "verify", "s", "--source", str(other))
    assert result.exit_code == ModelError.exit_code
    assert "parity below thresholds: onnx-fp32" in result.output
    assert "FAIL" in result.output


def test_verify_text_table_and_base(models_dir):
    result = run(models_dir, "verify", "b", "--max-new-tokens", "12")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith("onnx-fp32")


def test_static_needs_calibration_and_unknown_model(models_dir):
    result = run(models_dir, "quantize", "s", "--mode", "static")
    assert result.exit_code == UsageError.exit_code
    result = run(models_dir, "quantize", "nope")
    assert result.exit_code == ModelError.exit_code and "not found" in result.output


def test_list(models_dir):
    result = run(models_dir, "list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("b  [trocr]") and lines[1].startswith("s  [trocr]")
    assert "fp32 ok" in result.output
    result = run(models_dir, "list", "--json")
    assert set(json.loads(result.stdout)) == {"b", "s"}


def test_verify_mlx_backend(models_dir):
    pytest.importorskip("mlx.core")
    from models.tooling.mlx.convert import convert

    result = run(models_dir, "verify", "b", "--backend", "mlx")
    assert result.exit_code == ModelError.exit_code and "no MLX conversion" in result.output
    source = cache.read_manifest(models_dir / "b")["source"]
    convert(source, models_dir, out_dir=models_dir / "b-mlx")
    result = run(models_dir, "verify", "b", "--backend", "all", "--json")
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    assert reports["mlx"]["greedy_rows_identical"] == reports["mlx"]["inputs"]
    assert "onnx-fp32" in reports
    # the MLX model itself: its manifest says what it is, no --backend needed
    result = run(models_dir, "verify", "b-mlx", "--json")
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"mlx"}
    result = run(models_dir, "verify", "b-mlx", "--backend", "onnx")  # still an override
    assert result.exit_code == ModelError.exit_code and "not an ONNX export" in result.output


def test_list_without_models_dir_reads_the_configured_cache(models_dir):
    """No option reads the environment itself: ocrq.config's settings name the cache."""
    options = [p for command in models_group.commands.values() for p in command.params]
    assert all(p.envvar is None for p in options)
    result = CliRunner().invoke(models_group, ["list"], env={"OCRQ_MODELS": str(models_dir)})
    assert result.exit_code == 0, result.output
    assert {"b", "s"} <= {line.split()[0] for line in result.output.splitlines()}


def test_verify_of_a_model_of_unknown_kind_asks_for_a_backend(tmp_path):
    cache.write_manifest(tmp_path / "odd", cache.new_manifest("odd", "somewhere", "other"))
    result = run(tmp_path, "verify", "odd")
    assert result.exit_code == ModelError.exit_code
    assert "unknown model kind 'other'; pass --backend" in result.output


def test_forced_top1_counts_positions_up_to_eos_and_reports_the_margin():
    ref = np.zeros((2, 4, 5), np.float32)
    ref[..., 1] = 2.0  # reference picks token 1 everywhere, 2 logits ahead of the rest
    ours = ref.copy()
    ours[0, 1, 3] = 9.0  # one flip inside row 0's tokens
    ours[1, 3, 4] = 9.0  # one flip past row 1's EOS: not counted
    reference = {"logits": ref, "greedy_tokens": [[1, 1, 1], [1]]}
    report = compare(ours, [[1, 1, 1], [1]], reference, THRESHOLDS["int8"])
    # row 0: 4 positions (3 tokens + EOS step), row 1: 2 positions; 1 flip of 6
    assert report["forced_top1_agreement"] == pytest.approx(5 / 6)
    assert report["reference_top1_margin"] == pytest.approx(2.0)
