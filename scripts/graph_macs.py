"""Multiply-accumulates of an ONNX graph at a real input shape, and what one core sustains.

    python scripts/graph_macs.py MODEL.onnx 1,3,48,800

MACs are counted from the graph's own nodes on the shapes it takes at that input:
Conv (N*Co*Ho*Wo * Ci/g*kh*kw), ConvTranspose (N*Ci*Hi*Wi * Co/g*kh*kw), MatMul and Gemm
(output elements * K). Shapes come from ONNX shape inference; where it cannot follow the
graph (the recognizers' reshapes), from ONNX Runtime running the graph once with every
counted node's inputs and outputs exposed. Element-wise ops (GELU, adds, activations),
pools and resizes are not counted: they are memory-bound and show up as time above the
MAC figure. Used by scripts/speed_budget.py and scripts/recognizer_candidates.py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

from models.ppocr import resources
from models.ppocr.head import narrow_classifier
from models.ppocr.recognizer import RecognizerConfig, allowed_classes, charset_from_metadata

COUNTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def _fixed_input(model: onnx.ModelProto, shape: Sequence[int]) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for dim, value in zip(m.graph.input[0].type.tensor_type.shape.dim, shape, strict=True):
        dim.Clear()
        dim.dim_value = int(value)
    return m


def _dims(value_info) -> list[int] | None:
    dims = value_info.type.tensor_type.shape.dim
    out = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    return out if out and all(out) else None


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes = {i.name: list(i.dims) for i in inferred.graph.initializer}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = _dims(vi)
        if dims:
            shapes[vi.name] = dims
    return shapes


def _run_shapes(model: onnx.ModelProto, shape: Sequence[int]) -> dict[str, list[int]]:
    """Shapes of every counted node's inputs and outputs, by running the graph once."""
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output} | {i.name for i in m.graph.initializer}
    names = {n for node in m.graph.node if node.op_type in COUNTED for n in node.input}
    names |= {node.output[0] for node in m.graph.node if node.op_type in COUNTED}
    for name in sorted(names - known - {""}):
        m.graph.output.append(onnx.ValueInfoProto(name=name))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: np.zeros(shape, dtype=np.float32)}
    outs = sess.run(None, feed)
    shapes = {i.name: list(i.dims) for i in m.graph.initializer}
    shapes.update({o.name: list(v.shape) for o, v in zip(sess.get_outputs(), outs, strict=True)})
    return shapes


def node_macs(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> int:
    """MACs of one counted node (0 for any other op)."""
    if node.op_type == "Conv":
        out, w = shapes[node.output[0]], shapes[node.input[1]]
        return int(np.prod(out)) * int(np.prod(w[1:]))
    if node.op_type == "ConvTranspose":
        x, w = shapes[node.input[0]], shapes[node.input[1]]
        return int(np.prod(x)) * int(np.prod(w[1:]))
    if node.op_type == "MatMul":
        a, out = shapes[node.input[0]], shapes[node.output[0]]
        return int(np.prod(out)) * int(a[-1])
    if node.op_type == "Gemm":
        a, out = shapes[node.input[0]], shapes[node.output[0]]
        trans_a = any(at.name == "transA" and at.i for at in node.attribute)
        return int(np.prod(out)) * int(a[0] if trans_a else a[-1])
    return 0


def graph_macs(model: onnx.ModelProto, shape: Sequence[int]) -> dict[str, int]:
    """MACs per counted op type at input `shape` (the graph's first input)."""
    fixed = _fixed_input(model, shape)
    counted = [n for n in fixed.graph.node if n.op_type in COUNTED]
    shapes = _inferred_shapes(fixed)
    needed = {n.output[0] for n in counted} | {n.input[1] for n in counted}
    needed |= {n.input[0] for n in counted}
    if not needed <= shapes.keys():
        shapes = _run_shapes(fixed, shape)
    totals: dict[str, int] = {}
    for node in counted:
        totals[node.op_type] = totals.get(node.op_type, 0) + node_macs(node, shapes)
    return totals


class MacCounter:
    """GMAC of one graph at the shapes an engine feeds it, cached per shape."""

    def __init__(self, model: onnx.ModelProto | Path) -> None:
        self.model = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
        self._at = lru_cache(maxsize=None)(self._count)

    def _count(self, shape: tuple[int, ...]) -> float:
        return sum(graph_macs(self.model, shape).values()) / 1e9

    def gmac(self, shape: Sequence[int]) -> float:
        return self._at(tuple(int(s) for s in shape))


def sustained_gmacs(session, feed: dict, gmac: float, repeats: int = 10) -> tuple[float, float]:
    """(best, median) GMAC/s of `session` on `feed`, whose graph does `gmac` per run."""
    session.run(None, feed)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    return gmac / min(times), gmac / float(np.median(times))


def main() -> None:
    path, shape = Path(sys.argv[1]), [int(v) for v in sys.argv[2].split(",")]
    per_op = graph_macs(onnx.load(str(path)), shape)
    for op, macs in per_op.items():
        print(f"{op:14s} {macs / 1e9:9.3f} GMAC")
    print(f"{'total':14s} {sum(per_op.values()) / 1e9:9.3f} GMAC")


if __name__ == "__main__":
    main()


def rec_counter() -> MacCounter:
    """MACs of the default recognizer as it runs: the head narrowed to the decoded classes."""
    model = onnx.load(str(resources.model_path(resources.REC_FILE)))
    meta = {p.key: p.value for p in model.metadata_props}
    charset = charset_from_metadata(meta["character"])
    keep = allowed_classes(charset, RecognizerConfig().charset)
    narrow_classifier(model, keep, len(charset))
    return MacCounter(model)
