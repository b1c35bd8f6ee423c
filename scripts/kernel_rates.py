"""What one core sustains: GMAC/s of the engine's detector and recognizer as whole
networks, and of single large kernels of the kinds they are made of (a 1x1 convolution,
a matrix product), FP32 and INT8 (u8 activations x s8 weights), one ONNX Runtime thread.
For scripts/speed_budget.py, which pins the process to one core first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from graph_macs import MacCounter, rec_counter, sustained_gmacs
from onnx import TensorProto, helper, numpy_helper

from models.onnx_session import open_session
from models.ppocr import resources
from models.ppocr.engine import load_recognizer, model_file
from models.ppocr.pools import expose_pools

DET_SHAPE = (1, 3, 1024, 768)
REC_SHAPE = (1, 3, 48, 800)
CONV = (1, 128, 96, 384, 256)  # N, Cin, H, W, Cout of a 1x1 convolution
GEMM = (1024, 1024, 1024)


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _model(nodes, inputs, output, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "k", inputs, [output], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def conv_model(int8: bool) -> tuple[onnx.ModelProto, dict]:
    n, cin, h, w, cout = CONV
    rng = np.random.default_rng(0)
    out = helper.make_tensor_value_info("y", TensorProto.UINT8 if int8 else TensorProto.FLOAT, None)
    if not int8:
        weight = numpy_helper.from_array(rng.standard_normal((cout, cin, 1, 1), np.float32), "w")
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, cin, h, w])
        node = helper.make_node("Conv", ["x", "w"], ["y"])
        return _model([node], [x], out, [weight]), {"x": rng.random((n, cin, h, w), np.float32)}
    inits = [
        numpy_helper.from_array(rng.integers(-63, 63, (cout, cin, 1, 1), dtype=np.int8), "w"),
        numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
        numpy_helper.from_array(np.array(128, np.uint8), "xz"),
        numpy_helper.from_array(np.full(cout, 0.01, np.float32), "ws"),
        numpy_helper.from_array(np.zeros(cout, np.int8), "wz"),
        numpy_helper.from_array(np.array(0.5, np.float32), "ys"),
        numpy_helper.from_array(np.array(128, np.uint8), "yz"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [n, cin, h, w])
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    feed = {"x": rng.integers(0, 255, (n, cin, h, w), dtype=np.uint8)}
    return _model([node], [x], out, inits), feed


def gemm_model(int8: bool) -> tuple[onnx.ModelProto, dict]:
    m, k, n = GEMM
    rng = np.random.default_rng(0)
    if not int8:
        b = numpy_helper.from_array(rng.standard_normal((k, n), np.float32), "b")
        a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
        return _model([node], [a], y, [b]), {"a": rng.random((m, k), np.float32)}
    b = numpy_helper.from_array(rng.integers(-63, 63, (k, n), dtype=np.int8), "b")
    az = numpy_helper.from_array(np.array(128, np.uint8), "az")
    a = helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, None)
    node = helper.make_node("MatMulInteger", ["a", "b", "az"], ["y"])
    return _model([node], [a], y, [b, az]), {"a": rng.integers(0, 255, (m, k), dtype=np.uint8)}


def _kernels(repeats: int) -> dict[str, tuple[float, float]]:
    conv_gmac = np.prod(CONV) / 1e9
    gemm_gmac = np.prod(GEMM) / 1e9
    out = {}
    for prec, int8 in (("fp32", False), ("int8", True)):
        model, feed = conv_model(int8)
        out[f"1x1 conv {CONV[1]}->{CONV[4]} at {CONV[2]}x{CONV[3]}, {prec}"] = sustained_gmacs(
            _session(model), feed, conv_gmac, repeats
        )
        model, feed = gemm_model(int8)
        out[f"matmul {GEMM[0]}x{GEMM[1]}x{GEMM[2]}, {prec}"] = sustained_gmacs(
            _session(model), feed, gemm_gmac, repeats
        )
    return out


def _networks(models_dir: Path, repeats: int) -> dict[str, tuple[float, float]]:
    from models.ppocr import pools

    det_gmac = MacCounter(resources.model_path(resources.DET_FILE)).gmac(DET_SHAPE)
    out = {}
    for prec in ("fp32", "int8"):
        det = open_session(
            model_file("det", prec, models_dir), 1, mem_pattern=False, edit=expose_pools
        )
        names = [i.name for i in det.get_inputs()]
        feed = {names[0]: np.random.default_rng(0).random(DET_SHAPE, np.float32)}
        feed |= pools.own_means_feed(pools.pool_count(names))
        out[f"detector {DET_SHAPE[2]}x{DET_SHAPE[3]}, {prec}"] = sustained_gmacs(
            det, feed, det_gmac, repeats
        )
        rec = load_recognizer(models_dir, 1, prec)
        x = np.random.default_rng(0).random(REC_SHAPE, np.float32) * 2 - 1
        rec_gmac = _rec_gmac(REC_SHAPE)
        out[f"recognizer 48x{REC_SHAPE[3]}, {prec}"] = sustained_gmacs(
            rec.session, {rec.session.get_inputs()[0].name: x}, rec_gmac, repeats
        )
    return out


def _rec_gmac(shape) -> float:
    return rec_counter().gmac(shape)


def kernel_table(models_dir: Path, repeats: int = 10) -> tuple[dict, str]:
    """(rates, markdown): rates[det|rec][fp32|int8] is the best GMAC/s one core sustained
    in a large kernel of that precision (the ceiling a page's MACs could run at)."""
    kernels, networks = _kernels(repeats), _networks(Path(models_dir), repeats)
    rows = ["| what (one core, one thread) | best GMAC/s | median GMAC/s |", "|---|---|---|"]
    for name, (best, med) in {**networks, **kernels}.items():
        rows.append(f"| {name} | {best:.1f} | {med:.1f} |")
    found = {**networks, **kernels}
    ceiling = {p: max(v[0] for k, v in found.items() if k.endswith(p)) for p in ("fp32", "int8")}
    return {"det": ceiling, "rec": ceiling, "all": found}, "\n".join(rows)
