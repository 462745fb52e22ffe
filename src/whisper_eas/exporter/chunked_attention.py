"""The encoder graphs' attention computed in query chunks: the same numbers, a quarter of the memory.

Exported attention is MatMul(q, k^T) -> Softmax -> MatMul(p, v), and ONNX Runtime holds the whole
[heads, T, T] scores and probabilities: at 1500 frames two 54 MB tensors per tiny.en layer, the
largest buffers of a transcription process. Each query row's softmax and output depend on that row
alone, so the rows are split into `CHUNKS` slices, each through the same three ops, and the outputs
concatenated: every element is computed by the same kernels over the same keys in the same order,
so the outputs are bit-identical wherever a chunk has more than one row (checked for 14-1500
frames; our windows have 150-1500: `tests/test_export.py::test_chunked_attention_is_bit_identical`;
a one-row chunk takes ONNX Runtime's matrix-vector path, 2e-6 apart), and only one chunk's scores
are alive at a time. Standard ops (Shape, Slice, Concat) with dynamic bounds, so the
graphs keep their dynamic frame axis and TensorRT parses them as before.
"""

from __future__ import annotations

CHUNKS = 4  # 1500 frames -> 375 query rows per chunk: 13.5 MB of scores instead of 54 MB


def chunk_attention(model, chunks: int = CHUNKS) -> int:
    """Rewrite every MatMul -> Softmax(last axis) -> MatMul attention of `model` (a ModelProto, in
    place) whose probabilities feed nothing else; returns how many were rewritten. A softmax whose
    probabilities are also read (the scoring block's frame scores) is left whole."""
    from onnx import TensorProto, helper

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    rewrites = []
    for softmax in graph.node:
        if softmax.op_type != "Softmax" or _axis(softmax) != -1:
            continue
        scores = producers.get(softmax.input[0])
        after = readers.get(softmax.output[0], [])
        if scores is None or scores.op_type != "MatMul" or len(readers.get(scores.output[0], [])) != 1:
            continue
        if len(after) != 1 or after[0].op_type != "MatMul" or after[0].input[0] != softmax.output[0]:
            continue
        if {scores.output[0], softmax.output[0]} & outputs:
            continue
        rewrites.append((scores, softmax, after[0]))
    for scores, softmax, mix in rewrites:
        prefix = f"{scores.name or scores.output[0]}/chunk"
        query, keys, values = scores.input[0], scores.input[1], mix.input[1]
        consts = {name: helper.make_tensor(f"{prefix}/{name}", TensorProto.INT64, [1], [value])
                  for name, value in (("chunks", chunks), ("round", chunks - 1), ("axis", -2),
                                      *((f"at{i}", i) for i in range(chunks + 1)))}
        graph.initializer.extend(consts.values())
        size = f"{prefix}/size"
        nodes = [
            helper.make_node("Shape", [query], [f"{prefix}/rows"], start=-2, end=-1),
            helper.make_node("Add", [f"{prefix}/rows", consts["round"].name], [f"{prefix}/rows_up"]),
            helper.make_node("Div", [f"{prefix}/rows_up", consts["chunks"].name], [size]),
        ]
        bounds = [f"{prefix}/bound{i}" for i in range(chunks + 1)]  # size * i: chunk i is [bound i, bound i+1)
        nodes += [helper.make_node("Mul", [size, consts[f"at{i}"].name], [bound]) for i, bound in enumerate(bounds)]
        parts = []
        for i in range(chunks):
            index = f"{prefix}/i{i}"
            nodes += [
                helper.make_node("Slice", [query, bounds[i], bounds[i + 1], consts["axis"].name], [f"{index}/q"]),
                helper.make_node("MatMul", [f"{index}/q", keys], [f"{index}/scores"]),
                helper.make_node("Softmax", [f"{index}/scores"], [f"{index}/probs"], axis=-1),
                helper.make_node("MatMul", [f"{index}/probs", values], [f"{index}/out"]),
            ]
            parts.append(f"{index}/out")
        nodes.append(helper.make_node("Concat", parts, [mix.output[0]], axis=-2))
        position = list(graph.node).index(mix)  # every input (query, keys, values) is defined before it
        for node in (scores, softmax, mix):
            graph.node.remove(node)
        for offset, node in enumerate(nodes):
            graph.node.insert(position - 2 + offset, node)
    return len(rewrites)


def _axis(softmax) -> int:
    from onnx import helper

    axis = next((helper.get_attribute_value(a) for a in softmax.attribute if a.name == "axis"), -1)
    return -1 if axis in (-1, 3) else axis  # our attention tensors are [batch, heads, rows, keys]
