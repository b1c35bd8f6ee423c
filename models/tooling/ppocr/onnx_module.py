"""An ONNX graph run by torch, its float weights trainable: the PP-OCR recognizer's own
graph fine-tuned in place, then its new weights written back into the same graph.

The recognizer ships only as ONNX (rapidocr's wheel); its Paddle training code is not a
dependency we want. Its graph is small and plain (Conv, MatMul, LayerNorm spelled out as
ReduceMean/Pow/Sqrt, GELU as Erf, a few reshapes), so a node-by-node interpreter over
torch functions is enough to train it, and writing the trained tensors back into the
original graph keeps every node, name and metadata (the `character` list) as shipped.
Only the operators that graph uses are known; any other raises at construction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from models.ppocr.recognizer import free_input_height

Attrs = dict[str, object]


def _attrs(node: onnx.NodeProto) -> Attrs:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads(pads: list[int]) -> tuple[int, ...]:
    """ONNX [x1_begin, x2_begin, x1_end, x2_end] -> F.pad's (x2_begin, x2_end, x1_begin, x1_end)."""
    n = len(pads) // 2
    out: list[int] = []
    for axis in reversed(range(n)):
        out += [pads[axis], pads[axis + n]]
    return tuple(out)


def _same_upper(size, kernel, strides) -> list[int]:
    """SAME_UPPER padding: output = ceil(input / stride), the odd pixel at the end."""
    total = [
        max((-(-n // s) - 1) * s + k - n, 0) for n, k, s in zip(size, kernel, strides, strict=True)
    ]
    return [t // 2 for t in total] + [t - t // 2 for t in total]


def _conv(x, w, b=None, *, a: Attrs):
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if a.get("auto_pad", b"NOTSET") == b"SAME_UPPER":
        dil = list(a.get("dilations", [1, 1]))
        kernel = [(k - 1) * d + 1 for k, d in zip(w.shape[2:], dil, strict=True)]
        pads = _same_upper(x.shape[2:], kernel, a.get("strides", [1, 1]))
    x = F.pad(x, _pads(pads)) if any(pads) else x
    return F.conv2d(x, w, b, a.get("strides", 1), 0, a.get("dilations", 1), a.get("group", 1))


def _pool(fn: Callable) -> Callable:
    def run(x, *, a: Attrs):
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if a.get("auto_pad", b"NOTSET") == b"SAME_UPPER":
            pads = _same_upper(x.shape[2:], a["kernel_shape"], a.get("strides", [1, 1]))
        if any(pads):
            x = F.pad(x, _pads(pads), value=float("-inf") if fn is F.max_pool2d else 0.0)
        # A window larger than the map (the recognizer read below 48 px: 2 rows under a
        # 3-row window) is cut to the map, as ONNX Runtime does, rather than refused.
        kernel = [min(k, n) for k, n in zip(a["kernel_shape"], x.shape[2:], strict=True)]
        return fn(x, kernel, list(a.get("strides", a["kernel_shape"])))

    return run


def _batch_norm(x, scale, bias, mean, var, *, a: Attrs):
    # Frozen statistics: fine-tuning a few thousand steps on small batches would only
    # make them noisier; scale and bias still train.
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, a.get("epsilon", 1e-5))


def _reshape(x, shape, *, a: Attrs):
    dims = [int(v) for v in shape.tolist()]
    dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def _slice(x, starts, ends, axes=None, steps=None, *, a: Attrs):
    index = [slice(None)] * x.dim()
    axes_l = axes.tolist() if axes is not None else list(range(len(starts)))
    steps_l = steps.tolist() if steps is not None else [1] * len(starts)
    for s, e, ax, st in zip(starts.tolist(), ends.tolist(), axes_l, steps_l, strict=True):
        size = x.shape[ax]
        index[ax] = slice(max(min(s, size), -size), min(e, size) if e >= 0 else e, st)
    return x[tuple(index)]


def _softmax(x, *, a: Attrs):
    axis = int(a.get("axis", 1))
    if axis in (-1, x.dim() - 1):
        return torch.softmax(x, dim=-1)
    # Opset < 13 flattens to 2-D at `axis`: softmax over every dimension from there on.
    shape = x.shape
    return torch.softmax(x.reshape(*shape[:axis], -1), dim=-1).reshape(shape)


def _squeeze(x, axes=None, *, a: Attrs):
    dims = a.get("axes", axes.tolist() if axes is not None else None)
    if dims is None:
        return x.squeeze()
    for d in sorted((d % x.dim() for d in dims), reverse=True):
        x = x.squeeze(d)
    return x


def _unsqueeze(x, axes=None, *, a: Attrs):
    for d in sorted(a.get("axes", axes.tolist() if axes is not None else [])):
        x = x.unsqueeze(d)
    return x


_OPS: dict[str, Callable] = {
    "Identity": lambda x, *, a: x,
    "Add": lambda x, y, *, a: x + y,
    "Sub": lambda x, y, *, a: x - y,
    "Mul": lambda x, y, *, a: x * y,
    "Div": lambda x, y, *, a: x / y,
    "Pow": lambda x, y, *, a: torch.pow(x, y),
    "Sqrt": lambda x, *, a: torch.sqrt(x),
    "Erf": lambda x, *, a: torch.erf(x),
    "Relu": lambda x, *, a: F.relu(x),
    "Sigmoid": lambda x, *, a: torch.sigmoid(x),
    "HardSigmoid": lambda x, *, a: torch.clamp(
        x * float(a.get("alpha", 0.2)) + float(a.get("beta", 0.5)), 0.0, 1.0
    ),
    "MatMul": lambda x, y, *, a: torch.matmul(x, y),
    "Conv": _conv,
    "BatchNormalization": _batch_norm,
    "MaxPool": _pool(F.max_pool2d),
    "AveragePool": _pool(F.avg_pool2d),
    "ReduceMean": lambda x, *, a: x.mean(dim=list(a["axes"]), keepdim=bool(a.get("keepdims", 1))),
    "Transpose": lambda x, *, a: x.permute(*a["perm"]),
    "Reshape": _reshape,
    "Slice": _slice,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": lambda *xs, a: torch.cat(xs, dim=int(a["axis"])),
    "Shape": lambda x, *, a: torch.tensor(x.shape, dtype=torch.int64),
    "Softmax": _softmax,
}

# Inputs of these operators that are statistics, never trained.
_FROZEN_INPUTS = {"BatchNormalization": (3, 4)}


class OnnxModule(torch.nn.Module):
    """`forward(x)` runs the graph's nodes in order on torch tensors; every float
    initializer is a parameter (BatchNorm statistics excepted), keyed by its position.
    With `logits`, the graph's final Softmax is left out (CTC wants log-probabilities,
    and log of a softmax loses the small ones)."""

    def __init__(self, model: onnx.ModelProto, logits: bool = False):
        super().__init__()
        unknown = {n.op_type for n in model.graph.node} - set(_OPS)
        if unknown:
            raise ValueError(f"operators not supported: {sorted(unknown)}")
        self.graph = model.graph
        frozen = {
            node.input[i]
            for node in model.graph.node
            for i in _FROZEN_INPUTS.get(node.op_type, ())
            if i < len(node.input)
        }
        self.names: dict[str, str] = {}
        self.params = torch.nn.ParameterDict()
        self.consts: dict[str, torch.Tensor] = {}
        for k, init in enumerate(model.graph.initializer):
            value = torch.from_numpy(numpy_helper.to_array(init).copy())
            if value.is_floating_point():
                key = f"p{k}"
                self.names[init.name] = key
                # Scalars are the graph's constants (LayerNorm's epsilon, Pow's exponent,
                # GELU's 0.5): moving them is not learning, and an epsilon pushed below
                # zero turns the square roots into NaN.
                trainable = init.name not in frozen and value.numel() > 1
                self.params[key] = torch.nn.Parameter(value, requires_grad=trainable)
            else:
                self.consts[init.name] = value
        self.steps = [
            (_OPS[n.op_type], list(n.input), list(n.output), _attrs(n)) for n in model.graph.node
        ]
        self.output = model.graph.output[0].name
        if logits:
            self.output = self._softmax_input(model)

    @staticmethod
    def _softmax_input(model: onnx.ModelProto) -> str:
        producers = {out: n for n in model.graph.node for out in n.output}
        node = producers[model.graph.output[0].name]
        while node.op_type == "Identity":
            node = producers[node.input[0]]
        if node.op_type != "Softmax":
            raise ValueError("the graph does not end in a Softmax")
        return node.input[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = dict(self.consts)
        for name, key in self.names.items():
            env[name] = self.params[key]
        env[self.graph.input[0].name] = x
        for fn, inputs, outputs, attrs in self.steps:
            args = [env[i] if i else None for i in inputs]
            env[outputs[0]] = fn(*args, a=attrs)
        return env[self.output]

    def write_back(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """A copy of `model` with this module's current weights in its initializers."""
        out = onnx.ModelProto()
        out.CopyFrom(model)
        for init in out.graph.initializer:
            key = self.names.get(init.name)
            if key is None:
                continue
            array = self.params[key].detach().cpu().numpy().astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(array, init.name))
        return out


def free_height(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the graph with its input height left free (the shipped file pins 48),
    its shape notes kept for the opset converter that quantization runs."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    free_input_height(out, keep_shapes=True)
    return out


def load(path: Path) -> tuple[onnx.ModelProto, OnnxModule]:
    model = onnx.load(str(path))
    return model, OnnxModule(model)
