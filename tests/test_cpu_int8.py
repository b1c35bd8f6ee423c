"""INT8 saturation: what `int8_needs_reduce_range` predicts, checked against what this
CPU's ONNX Runtime kernels actually compute."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from models.cpu import int8_needs_reduce_range, int8_preferred

K = 64


def _matmul_of_ones(path) -> None:
    """y = x @ W with W all ones: dynamic INT8 makes x 255 (u8) and W 127 (s8, or 63 with
    reduce_range), the largest products there are."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "ones",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8])],
        [numpy_helper.from_array(np.ones((K, 8), np.float32), "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _int8_result(tmp_path, reduce_range: bool) -> np.ndarray:
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / f"int8-{reduce_range}.onnx"
    _matmul_of_ones(fp32)
    quantize_dynamic(
        str(fp32),
        str(int8),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=reduce_range,
    )
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.ones((4, K), np.float32)})[0]


def test_prediction_matches_this_cpus_kernels(tmp_path):
    """On this machine, whichever CPU it is: 8-bit weights saturate exactly when we say
    they do (there pairs of 255*127 clip at 32,767, about half the true sum), and 7-bit
    weights are exact everywhere."""
    eight_bit = _int8_result(tmp_path, reduce_range=False)
    seven_bit = _int8_result(tmp_path, reduce_range=True)
    np.testing.assert_allclose(seven_bit, K, rtol=1e-3)
    saturated = bool(np.abs(eight_bit - K).max() > 1.0)
    assert saturated is int8_needs_reduce_range()
    if saturated:
        assert eight_bit.max() < 0.6 * K


@pytest.mark.parametrize(
    "machine, flags, needs",
    [
        ("x86_64", {"avx2", "fma"}, True),  # AVX2 only: VPMADDUBSW saturates
        ("x86_64", {"avx2", "avx512bw"}, True),  # AVX-512 without VNNI: same instruction
        ("x86_64", {"avx2", "avx512_vnni"}, False),
        ("x86_64", {"avx2", "avx_vnni"}, False),
        ("x86_64", {"amx_int8"}, False),
        ("x86_64", set(), True),  # flags unknown: the safe side
        ("aarch64", set(), False),  # ARM dot products accumulate in 32 bits
        ("arm64", set(), False),
    ],
)
def test_prediction_by_machine_and_flags(machine, flags, needs):
    assert int8_needs_reduce_range(machine, frozenset(flags)) is needs


@pytest.mark.parametrize(
    "machine, flags, preferred",
    [
        ("x86_64", {"avx2", "avx512_vnni"}, True),  # 8-bit weights: ties FP32, faster
        ("x86_64", {"amx_int8"}, True),
        ("x86_64", {"avx2", "fma"}, False),  # 7-bit weights lost accuracy on receipts
        ("x86_64", set(), False),
        ("aarch64", set(), False),  # not measured: FP32
        ("arm64", {"asimddp"}, False),
    ],
)
def test_auto_precision_prefers_int8_only_with_8_bit_weights(machine, flags, preferred):
    assert int8_preferred(machine, frozenset(flags)) is preferred


def test_auto_precision_resolves_on_this_cpu():
    from models.ppocr.engine import resolve_precision

    assert resolve_precision("auto") == ("int8" if int8_preferred() else "fp32")
    assert resolve_precision("fp32") == "fp32" and resolve_precision("int8") == "int8"
