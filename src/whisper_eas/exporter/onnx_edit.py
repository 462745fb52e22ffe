"""Reading an ONNX graph's constant weights: what the int8 rewrites (`quantize`, `rescore`) both edit."""

from __future__ import annotations

import numpy as np


def constant_value(graph, name: str) -> np.ndarray | None:
    """The value of an initializer or a `Constant` node's output, else None."""
    from onnx import helper, numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))
    return None


def constant_weight_gemm(graph, node) -> tuple[np.ndarray, dict] | None:
    """(W, attributes) of a `Gemm(x, W, b)` with a constant W, no transA, alpha 1 and beta 1; else None.

    The rewrites in `exporter.quantize` and `exporter.rescore` handle only that form (a scaled bias
    does not occur in our graphs and is left alone)."""
    from onnx import helper

    if node.op_type != "Gemm":
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        return None
    weight = constant_value(graph, node.input[1])
    return None if weight is None else (weight, attrs)
