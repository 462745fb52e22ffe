"""The prune step as one custom-domain ONNX node that TensorRT's ONNX parser maps to the plugin.

The parser imports an op it does not know through its plugin fallback: it looks the node's op type
up in the plugin registry under the `plugin_namespace` / `plugin_version` attributes and passes the
node attributes the plugin registered as its fields; an `aot` attribute picks the ahead-of-time
kernel (1) or the Python implementation (0). The node keeps the I/O names of `graph_specs.prune`,
so `prune_plugin.onnx` swaps in for `prune.onnx`. The standard-op `prune.onnx` stays what ONNX
Runtime runs and what validation compares against; ONNX Runtime cannot run this file.

The node has a third output, the kept count (int32 scalar): for adaptive configs it is the
plugin's size tensor, which carries the data-dependent length (a `tensorrt.plugin` op has one
output count for every config). It is not a graph output.
"""

from __future__ import annotations

import json
from pathlib import Path

from whisper_eas.config import PruneConfig
from whisper_eas.exporter.graph_specs import (
    BATCH,
    PRUNE_PLUGIN_DOMAIN,
    PRUNE_PLUGIN_OP,
    PRUNE_PLUGIN_VERSION,
    GraphSpec,
    ModelDims,
    TensorSpec,
    prune,
)
from whisper_eas.exporter.manifest import ExportError
from whisper_eas.plugins.attributes import PLUGIN_VERSION, node_attributes

PLUGIN_FILE = "prune_plugin.onnx"
COUNT_OUTPUT = "kept_count"  # the kept count (int32 scalar); the size tensor of adaptive configs
CONFIG_METADATA = "whisper_eas.prune_config"
PARSER_ATTRIBUTES = ("plugin_namespace", "plugin_version", "aot")  # read by the parser, not the plugin


def _value_info(tensor: TensorSpec):
    from onnx import TensorProto, helper

    dtype = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}[tensor.dtype]
    return helper.make_tensor_value_info(tensor.name, dtype, list(tensor.shape))


def plugin_graph(config: PruneConfig, dims: ModelDims, opset: int = 17, batch: int | str = BATCH, aot: bool = False):
    """The ModelProto: graph inputs/outputs from `graph_specs.prune`, one `AttentivePrune` node."""
    from onnx import TensorProto, helper

    spec = prune(dims, config, batch)
    outputs = [*spec.output_names, COUNT_OUTPUT]
    node = helper.make_node(
        PRUNE_PLUGIN_OP,
        inputs=spec.input_names,
        outputs=outputs,
        name=f"{PRUNE_PLUGIN_OP}_0",
        domain=PRUNE_PLUGIN_DOMAIN,
        plugin_namespace=PRUNE_PLUGIN_DOMAIN,
        plugin_version=PLUGIN_VERSION,
        aot=int(aot),
        **node_attributes(config, dims),
    )
    graph = helper.make_graph(
        [node], "prune", [_value_info(t) for t in spec.inputs], [_value_info(t) for t in spec.outputs],
        value_info=[helper.make_tensor_value_info(COUNT_OUTPUT, TensorProto.INT32, [])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(PRUNE_PLUGIN_DOMAIN, PRUNE_PLUGIN_VERSION)],
        producer_name="whisper-eas",
    )
    helper.set_model_props(model, {CONFIG_METADATA: json.dumps(config.to_dict(), sort_keys=True)})
    return model


def export_prune_plugin(
    config: PruneConfig, dims: ModelDims, path: str | Path, opset: int = 17, batch: int | str = BATCH,
    aot: bool = False,
) -> Path:
    """Write `prune_plugin.onnx` for `config` and check it; returns the path."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # never write through a hard link
    onnx.save(plugin_graph(config, dims, opset, batch, aot), str(path))
    check_plugin_graph(path, config, dims, batch)
    return path


def _names(values) -> list[str]:
    return [v.name for v in values]


def check_plugin_graph(path: str | Path, config: PruneConfig, dims: ModelDims, batch: int | str = BATCH) -> GraphSpec:
    """Structural check: ONNX checker, one node of the plugin's op/domain, its attributes, I/O names and shapes.

    Raises `ExportError` naming the file; returns the graph spec it was checked against.
    """
    import onnx
    from onnx import helper

    path = Path(path)
    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, OSError) as error:
        raise ExportError(f"{path}: not a valid ONNX model ({str(error).splitlines()[0]})") from None
    model = onnx.load(str(path))
    spec = prune(dims, config, batch)
    domains = {o.domain: o.version for o in model.opset_import}
    if domains.get(PRUNE_PLUGIN_DOMAIN) != PRUNE_PLUGIN_VERSION:
        raise ExportError(f"{path}: does not import the {PRUNE_PLUGIN_DOMAIN} domain, version {PRUNE_PLUGIN_VERSION}")
    nodes = list(model.graph.node)
    if len(nodes) != 1 or (nodes[0].op_type, nodes[0].domain) != (PRUNE_PLUGIN_OP, PRUNE_PLUGIN_DOMAIN):
        found = [(n.domain, n.op_type) for n in nodes]
        raise ExportError(f"{path}: expected one {PRUNE_PLUGIN_DOMAIN}::{PRUNE_PLUGIN_OP} node, found {found}")
    node = nodes[0]
    io = (_names(model.graph.input), _names(model.graph.output))
    node_io = (list(node.input), list(node.output))
    if io != (spec.input_names, spec.output_names) or node_io != (spec.input_names, [*spec.output_names, COUNT_OUTPUT]):
        expected_io = (spec.input_names, spec.output_names)
        raise ExportError(f"{path}: inputs/outputs {io} do not match graph_specs.prune {expected_io}")
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*model.graph.input, *model.graph.output)}
    expected_shapes = {t.name: list(t.shape) for t in (*spec.inputs, *spec.outputs)}
    if shapes != expected_shapes:
        raise ExportError(f"{path}: shapes {shapes} do not match graph_specs.prune {expected_shapes}")
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attributes = {k: v.decode() if isinstance(v, bytes) else v for k, v in attributes.items()}
    expected = node_attributes(config, dims)
    plugin_side = {k: v for k, v in attributes.items() if k not in PARSER_ATTRIBUTES}
    if set(plugin_side) != set(expected) or any(_differs(plugin_side[k], v) for k, v in expected.items()):
        raise ExportError(f"{path}: node attributes {plugin_side} do not match the config's {expected}")
    if attributes.get("plugin_namespace") != PRUNE_PLUGIN_DOMAIN or attributes.get("plugin_version") != PLUGIN_VERSION:
        raise ExportError(f"{path}: plugin_namespace/plugin_version must be {PRUNE_PLUGIN_DOMAIN!r}/{PLUGIN_VERSION!r}")
    return spec


def _differs(got, expected) -> bool:
    if isinstance(expected, float):  # ONNX float attributes are float32
        return abs(float(got) - expected) > 1e-6 * max(1.0, abs(expected))
    return got != expected
