"""The AttentivePrune plugin: its ONNX node (checked here), its attributes, its math; TensorRT parts marked."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from prune_configs import ADAPTIVE, K, COVERAGE, TINY
from whisper_eas.config import PruneConfig
from whisper_eas.deps import TensorRTMissingError
from whisper_eas.exporter.graph_specs import PRUNE_PLUGIN_DOMAIN, PRUNE_PLUGIN_OP, ModelDims, prune
from whisper_eas.exporter.manifest import ExportError
from whisper_eas.plugins.attributes import (
    ATTRIBUTE_TYPES,
    PLUGIN_ID,
    config_from_attributes,
    count_bounds,
    node_attributes,
    plugin_applies,
)
from whisper_eas.plugins.onnx_plugin_node import (
    CONFIG_METADATA,
    COUNT_OUTPUT,
    check_plugin_graph,
    export_prune_plugin,
)
from whisper_eas.exporter.prune_graph import export_prune
from whisper_eas.plugins.trt_plugin import plugin_compute
from whisper_eas.selection import prune_hidden

CONFIGS = [COVERAGE, ADAPTIVE, PruneConfig(layer=1, keep_ratio=0.5), PruneConfig(layer=3, keep_ratio=0.35, merge=True)]


def _float32(attributes: dict) -> dict:
    """What the plugin receives: ONNX float attributes are float32."""
    return {k: float(np.float32(v)) if isinstance(v, float) else v for k, v in attributes.items()}


def _attributes(model: onnx.ModelProto) -> dict:
    values = {a.name: helper.get_attribute_value(a) for a in model.graph.node[0].attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def test_tiny_dims_are_the_real_model_dims(tiny_model):
    assert ModelDims.from_hf_config(tiny_model.config) == TINY


@pytest.mark.parametrize("config", [COVERAGE, ADAPTIVE], ids=["shipped", "adaptive"])
def test_plugin_node_onnx_is_one_custom_node_with_the_config(tmp_path, config):
    path = export_prune_plugin(config, TINY, tmp_path / "prune_plugin.onnx")
    onnx.checker.check_model(str(path))
    model = onnx.load(str(path))
    spec = prune(TINY, config)
    assert {o.domain: o.version for o in model.opset_import} == {"": 17, PRUNE_PLUGIN_DOMAIN: 1}
    (node,) = model.graph.node
    assert (node.domain, node.op_type) == (PRUNE_PLUGIN_DOMAIN, PRUNE_PLUGIN_OP) == tuple(PLUGIN_ID.split("::"))
    assert [i.name for i in model.graph.input] == list(node.input) == spec.input_names
    assert spec.input_names == ["head_hidden", "frame_scores"]
    assert [o.name for o in model.graph.output] == spec.output_names == ["kept_hidden", "kept_index"]
    assert list(node.output) == ["kept_hidden", "kept_index", COUNT_OUTPUT]
    attributes = _attributes(model)
    assert (attributes["plugin_namespace"], attributes["plugin_version"], attributes["aot"]) == ("whisper_eas", "1", 0)
    plugin_side = {k: v for k, v in attributes.items() if k in ATTRIBUTE_TYPES}
    assert set(plugin_side) == set(ATTRIBUTE_TYPES) and set(attributes) == set(ATTRIBUTE_TYPES) | {
        "plugin_namespace", "plugin_version", "aot"}
    assert config_from_attributes(plugin_side) == (config, 1500)
    kept = "kept" if config.adaptive else K
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*model.graph.input, *model.graph.output)}
    assert dims == {"head_hidden": ["batch", 1500, 384], "frame_scores": ["batch", 1500],
                    "kept_hidden": ["batch", kept, 384], "kept_index": ["batch", kept]}
    metadata = {p.key: p.value for p in model.metadata_props}
    assert json.loads(metadata[CONFIG_METADATA]) == config.to_dict()
    assert check_plugin_graph(path, config, TINY).output_names == spec.output_names


def test_plugin_node_swaps_in_for_the_standard_graph(tmp_path):
    standard = onnx.load(str(export_prune(COVERAGE, TINY, tmp_path / "prune.onnx")))
    plugin = onnx.load(str(export_prune_plugin(COVERAGE, TINY, tmp_path / "prune_plugin.onnx", aot=True)))

    def io(model):  # output dims of the traced graph are the tracer's, so names and types only there
        def dims(v):
            return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

        inputs = [(v.name, v.type.tensor_type.elem_type, dims(v)) for v in model.graph.input]
        return inputs, [(v.name, v.type.tensor_type.elem_type) for v in model.graph.output]

    assert io(plugin) == io(standard)
    assert len(standard.graph.node) > 10 and all(n.domain in ("", "ai.onnx") for n in standard.graph.node)
    assert _attributes(plugin)["aot"] == 1


def test_static_batch_plugin_node(tmp_path):
    path = export_prune_plugin(COVERAGE, TINY, tmp_path / "p.onnx", batch=4)
    shapes = [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in onnx.load(str(path)).graph.output]
    assert shapes == [[4, K, 384], [4, K]]


def test_check_names_the_file_when_an_attribute_differs(tmp_path):
    path = export_prune_plugin(COVERAGE, TINY, tmp_path / "prune_plugin.onnx")
    model = onnx.load(str(path))
    for attribute in model.graph.node[0].attribute:
        if attribute.name == "keep_count":
            attribute.i = K + 1  # any count but the config's
    onnx.save(model, str(path))
    with pytest.raises(ExportError, match=r"prune_plugin\.onnx: node attributes"):
        check_plugin_graph(path, COVERAGE, TINY)
    static = export_prune_plugin(COVERAGE, TINY, tmp_path / "static" / "prune_plugin.onnx", batch=4)
    with pytest.raises(ExportError, match=r"static/prune_plugin\.onnx: shapes"):
        check_plugin_graph(static, COVERAGE, TINY)  # checked against the dynamic-batch spec


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.format().replace(" ", "-"))
def test_attributes_survive_float32(config):
    attributes = _float32(node_attributes(config, TINY))
    assert config_from_attributes(attributes) == (config, TINY.n_frames)


def test_fixed_position_strategies_keep_the_standard_graph():
    for strategy in ("uniform", "truncate"):
        config = PruneConfig(layer=1, keep_ratio=0.5, strategy=strategy)
        assert not plugin_applies(config)
        with pytest.raises(ValueError, match="standard-op prune graph"):
            node_attributes(config, TINY)
    assert not plugin_applies(None) and plugin_applies(COVERAGE) and plugin_applies(ADAPTIVE)


def test_keep_count_must_follow_from_the_ratio():
    attributes = node_attributes(COVERAGE, TINY) | {"keep_count": 601}
    with pytest.raises(ValueError, match="keep_count 601"):
        config_from_attributes(attributes)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.format().replace(" ", "-"))
def test_plugin_computes_what_prune_hidden_computes(config, dev_mels):
    """The JIT implementation's math on real-looking scores (peaked softmax), from float32 attributes."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, TINY.n_frames, TINY.d_model, generator=generator)
    scores = torch.softmax(3 * torch.randn(2, TINY.n_frames, generator=generator), dim=-1)
    kept, index, count = plugin_compute(hidden, scores, _float32(node_attributes(config, TINY)))
    expected_kept, expected_index = prune_hidden(hidden, scores, config)
    assert torch.equal(index, expected_index) and torch.equal(kept, expected_kept)
    low, high = count_bounds(config, TINY.n_frames)
    assert int(count) == index.shape[1] and low <= int(count) <= high


def test_plugin_rejects_another_window_length():
    with pytest.raises(ValueError, match="built for 1500 frames"):
        plugin_compute(torch.zeros(1, 100, 384), torch.ones(1, 100), node_attributes(COVERAGE, TINY))


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed")
def test_plugin_module_needs_no_tensorrt_until_registered():
    from whisper_eas.plugins.trt_plugin import register_plugin

    assert "tensorrt" not in sys.modules
    with pytest.raises(TensorRTMissingError, match=r"AttentivePrune plugin: TensorRT is not installed; pip install"):
        register_plugin()


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
@pytest.mark.parametrize("config", [COVERAGE, PruneConfig(layer=1, keep_ratio=0.3)], ids=["coverage-merge", "attentive"])
def test_triton_kernel_matches_prune_hidden(config):
    """On a GPU, or in Triton's CPU interpreter (slow: a short window keeps it to seconds)."""
    if not torch.cuda.is_available() and "triton" not in sys.modules:
        os.environ["TRITON_INTERPRET"] = "1"
    from whisper_eas.plugins.triton_prune import prune_triton

    device = "cuda" if torch.cuda.is_available() else "cpu"
    frames = TINY.n_frames if device == "cuda" else 200
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, frames, 32 if device == "cpu" else TINY.d_model, generator=generator).to(device)
    scores = torch.softmax(3 * torch.randn(2, frames, generator=generator), dim=-1).to(device)
    kept, index = prune_triton(hidden, scores, config)
    expected_kept, expected_index = prune_hidden(hidden, scores, config)
    assert torch.equal(index, expected_index)
    torch.testing.assert_close(kept, expected_kept, rtol=1e-6, atol=1e-6)


# ---- TensorRT (an NVIDIA GPU and the tensorrt package): not run on the development machines ----


def _plugin_engine(config: PruneConfig, tmp_path, aot: bool = False):
    from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, NetworkFromOnnxPath, Profile, TrtRunner

    from whisper_eas.plugins.trt_plugin import register_plugin

    register_plugin()
    path = export_prune_plugin(config, TINY, tmp_path / "prune_plugin.onnx", aot=aot)
    profile = Profile()
    profile.add("head_hidden", min=(1, 1500, 384), opt=(2, 1500, 384), max=(4, 1500, 384))
    profile.add("frame_scores", min=(1, 1500), opt=(2, 1500), max=(4, 1500))
    config = CreateConfig(fp16=True, profiles=[profile])
    return TrtRunner(EngineFromNetwork(NetworkFromOnnxPath(str(path)), config=config))


@pytest.mark.requires_tensorrt
@pytest.mark.parametrize("config,aot", [(COVERAGE, False), (ADAPTIVE, False), (COVERAGE, True)],
                         ids=["shipped-jit", "adaptive-jit", "shipped-aot"])
def test_plugin_engine_matches_prune_hidden(config, aot, tmp_path):
    if aot:
        pytest.importorskip("triton")
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 1500, 384, generator=generator)
    scores = torch.softmax(3 * torch.randn(2, 1500, generator=generator), dim=-1)
    with _plugin_engine(config, tmp_path, aot) as runner:
        out = runner.infer({"head_hidden": hidden.numpy(), "frame_scores": scores.numpy()})
    kept, index = prune_hidden(hidden, scores, config)
    np.testing.assert_array_equal(out["kept_index"], index.numpy())
    np.testing.assert_allclose(out["kept_hidden"], kept.numpy(), rtol=1e-6, atol=1e-6)


def test_ptx_entry_is_cut_to_the_arguments_tensorrt_passes():
    from whisper_eas.plugins.ptx import strip_implicit_params

    ptx = (".visible .entry k(\n\t.param .u64 .ptr .global .align 1 k_param_0,\n\t.param .u32 k_param_1,\n"
           "\t.param .u64 .ptr .global .align 1 k_param_2,\n\t.param .u64 .ptr .global .align 1 k_param_3\n)\n"
           "{\n\tld.param.u64 \t%rd1, [k_param_0];\n\tld.param.u32 \t%r1, [k_param_1];\n}\n")
    cut = strip_implicit_params(ptx, keep=2)
    assert "k_param_1\n)" in cut and "k_param_2" not in cut and cut.endswith("[k_param_1];\n}\n")
    with pytest.raises(RuntimeError, match=r"reads implicit parameters \['k_param_3'\].*no --aot-plugin"):
        strip_implicit_params(ptx.replace("[k_param_1]", "[k_param_3]"), keep=2)
