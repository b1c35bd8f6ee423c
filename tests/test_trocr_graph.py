"""Graph clean-ups: exact rewrites (same outputs through onnxruntime), applied at export."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from models.tooling.trocr.graph import drop_single_input_concats, fuse_encoder_attention
from tests.tiny_models import export_tiny

B, S, H, D = 2, 7, 3, 4
E = H * D


def _attention_graph(v_scale: float | None = None) -> onnx.ModelProto:
    """Self-attention as transformers 5 traces it: scaled Q and K head splits, Shape
    nodes feeding the merge reshape, output projection after."""
    rng = np.random.default_rng(0)
    inits = [
        helper.make_tensor(n, TensorProto.FLOAT, [E, E], rng.standard_normal((E, E)).ravel())
        for n in ("wq", "wk", "wv", "wo")
    ]
    inits += [
        helper.make_tensor("split", TensorProto.INT64, [4], [0, 0, H, D]),
        helper.make_tensor("merge", TensorProto.INT64, [3], [0, 0, E]),
        helper.make_tensor("half_scale", TensorProto.FLOAT, [], [D**-0.25]),
    ]
    nodes = []
    for name, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        nodes += [
            helper.make_node("MatMul", ["x", f"w{name}"], [f"{name}p"]),
            helper.make_node("Reshape", [f"{name}p", "split"], [f"{name}r"]),
            helper.make_node("Transpose", [f"{name}r"], [f"{name}t"], perm=perm),
        ]
    nodes += [
        helper.make_node("Mul", ["qt", "half_scale"], ["qs"]),
        helper.make_node("Mul", ["kt", "half_scale"], ["ks"]),
    ]
    v_in = "vt"
    if v_scale is not None:  # not an attention block ocrq knows: must be left alone
        inits.append(helper.make_tensor("v_scale", TensorProto.FLOAT, [], [v_scale]))
        nodes.append(helper.make_node("Mul", ["vt", "v_scale"], ["vs"]))
        v_in = "vs"
    nodes += [
        helper.make_node("MatMul", ["qs", "ks"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", v_in], ["mixed"]),
        helper.make_node("Shape", ["mixed"], ["mixed_shape"]),
        helper.make_node("Transpose", ["mixed"], ["mt"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["mt", "merge"], ["merged"]),
        helper.make_node("MatMul", ["merged", "wo"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, S, E])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [B, S, E])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_fused_attention_gives_the_same_outputs():
    model = _attention_graph()
    x = np.random.default_rng(1).standard_normal((B, S, E)).astype(np.float32)
    before = _run(model, x)
    assert fuse_encoder_attention(model, H) == 1
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["MultiHeadAttention"] == 1
    assert ops["Softmax"] == 0 and ops["Transpose"] == 0  # the unfused block is gone
    onnx.checker.check_model(model)
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-5, atol=1e-5)


def test_unknown_attention_shape_is_left_alone():
    model = _attention_graph(v_scale=0.5)
    nodes = len(model.graph.node)
    assert fuse_encoder_attention(model, H) == 0
    assert len(model.graph.node) == nodes
    model = _attention_graph()  # normalized over queries instead of keys: not attention
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    softmax.attribute[0].i = 2
    assert fuse_encoder_attention(model, H) == 0


def test_single_input_concat_is_dropped_and_outputs_unchanged():
    graph = helper.make_graph(
        [
            helper.make_node("Concat", ["x"], ["copy"], axis=-2),
            helper.make_node("Concat", ["copy", "x"], ["both"], axis=-2),
            helper.make_node("Concat", ["x"], ["y"], axis=-2),  # a graph output: kept
        ],
        "concat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [
            helper.make_tensor_value_info("both", TensorProto.FLOAT, [4, 3]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    before = sess.run(None, {"x": x})
    assert drop_single_input_concats(model) == 1
    assert [list(n.input) for n in model.graph.node] == [["x", "x"], ["x"]]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for a, b in zip(sess.run(None, {"x": x}), before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["small", "base"])  # DeiT and ViT encoders
def test_export_writes_the_rewritten_graphs(tmp_path, kind):
    model_dir = export_tiny(tmp_path / "models", kind)  # the export's own parity check passes
    encoder = onnx.load(str(model_dir / "encoder.onnx"))
    decoder = onnx.load(str(model_dir / "decoder.onnx"))
    layers = json.loads((model_dir / "config.json").read_text())["encoder"]["num_hidden_layers"]
    enc_ops = Counter(n.op_type for n in encoder.graph.node)
    assert enc_ops["MultiHeadAttention"] == layers and enc_ops["Softmax"] == 0
    assert not [n for n in decoder.graph.node if n.op_type == "Concat" and len(n.input) == 1]
