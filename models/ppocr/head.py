"""Cut the recognizer's classifier down to the characters we decode.

PP-OCRv6's recognizer ends in MatMul(120 -> 18,710 classes) + Add + Softmax, evaluated at
every CTC step. With the default `charset="latin"` only 363 of those classes can ever be
emitted, so we slice the weight and bias to those columns at load: the argmax over the
kept classes is the same, and the head's share of a long line's run time (27 %, op
profile of a 1,480-px line) nearly vanishes. Softmax now normalizes over the kept
classes, so a line's confidence is its probability among the characters we read.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import onnx
from onnx import numpy_helper


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def _through_identities(name: str, producers: dict[str, onnx.NodeProto]) -> onnx.NodeProto | None:
    node = producers.get(name)
    while node is not None and node.op_type == "Identity":
        node = producers.get(node.input[0])
    return node


class Head(NamedTuple):
    matmul: onnx.NodeProto
    weight: onnx.TensorProto
    bias: onnx.TensorProto


def classifier(model: onnx.ModelProto, n_classes: int | None = None) -> Head | None:
    """The final MatMul + Add (weight and bias initializers) feeding the output Softmax, or
    None when the graph does not end that way (e.g. a head already quantized). With
    `n_classes`, the head must have exactly that many columns."""
    producers = _producers(model)
    inits = {i.name: i for i in model.graph.initializer}
    softmax = _through_identities(model.graph.output[0].name, producers)
    if softmax is None or softmax.op_type != "Softmax":
        return None
    add = _through_identities(softmax.input[0], producers)
    if add is None or add.op_type != "Add":
        return None
    bias = next((inits[i] for i in add.input if i in inits), None)
    matmul = next(
        (n for i in add.input if (n := _through_identities(i, producers)) is not None), None
    )
    if bias is None or matmul is None or matmul.op_type != "MatMul":
        return None
    weight = inits.get(matmul.input[1])
    n_classes = n_classes or (bias.dims[0] if len(bias.dims) == 1 else None)
    if weight is None or list(weight.dims[-1:]) != [n_classes] or list(bias.dims) != [n_classes]:
        return None
    return Head(matmul, weight, bias)


def narrow_classifier(model: onnx.ModelProto, keep: np.ndarray, n_classes: int) -> bool:
    """Keep only the class columns `keep` (in that order) of the recognizer's head, in
    place. False, and the model untouched, when its head is not the expected pattern."""
    head = classifier(model, n_classes)
    if head is None:
        return False
    for init in (head.weight, head.bias):
        values = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(values[..., keep]), init.name))
    output_dims = model.graph.output[0].type.tensor_type.shape.dim
    if output_dims:
        output_dims[-1].Clear()
        output_dims[-1].dim_value = len(keep)
    return True
