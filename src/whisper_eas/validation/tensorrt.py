"""The TensorRT side of `whisper-eas validate --trt`: one Polygraphy `TrtRunner` per graph.

A folder with `engines.json` is validated as it ships: its engines, after the platform and source
checks. A folder without engines gets an FP16 engine built in memory per graph, with one profile
spanning the validation feeds; the prune graph of scored configs is built from the plugin node
(`onnx_plugin_node.plugin_graph`), so the plugin is what gets compared against PyTorch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from whisper_eas.deps import require_cuda, require_tensorrt
from whisper_eas.engines.manifest import ENGINE_MANIFEST, EngineManifest, Platform
from whisper_eas.exporter.manifest import ExportManifest
from whisper_eas.plugins.attributes import plugin_applies

RUNNER_NAME = "tensorrt-fp16"


def feed_profile(feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, tuple[tuple[int, ...], ...]]:
    """(min, opt=max, max) shape per input over the feeds: a profile every feed fits."""
    profile = {}
    for name in feeds[0]:
        shapes = np.array([np.shape(feed[name]) for feed in feeds], dtype=np.int64).reshape(len(feeds), -1)
        low, high = tuple(int(x) for x in shapes.min(axis=0)), tuple(int(x) for x in shapes.max(axis=0))
        profile[name] = (low, high, high)
    return profile


def _shipped_engine(export: ExportManifest, graph: str):
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes

    manifest = EngineManifest.load(export.directory)
    manifest.check(export, Platform.current())
    if manifest.prune_form == "plugin":
        from whisper_eas.plugins.trt_plugin import register_plugin

        register_plugin()
    return EngineFromBytes(BytesFromPath(str(manifest.engine_path(graph))))


def _network(export: ExportManifest, graph: str):
    from polygraphy.backend.trt import NetworkFromOnnxBytes, NetworkFromOnnxPath

    if graph != "prune" or not plugin_applies(export.config):
        return NetworkFromOnnxPath(str(export.path(graph)))
    from whisper_eas.plugins.onnx_plugin_node import plugin_graph
    from whisper_eas.plugins.trt_plugin import register_plugin

    register_plugin()
    model = plugin_graph(export.config, export.dims, export.opset, export.batch)
    return NetworkFromOnnxBytes(model.SerializeToString())


def validation_runner(export: ExportManifest, graph: str, feeds: Sequence[dict[str, np.ndarray]]):
    """The TrtRunner that `validate --trt` compares with PyTorch for `graph`."""
    from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, Profile, TrtRunner

    require_tensorrt("whisper-eas validate --trt")
    require_cuda("whisper-eas validate --trt")
    if (export.directory / ENGINE_MANIFEST).is_file():
        return TrtRunner(_shipped_engine(export, graph), name=RUNNER_NAME)
    profile = Profile()
    for name, (low, opt, high) in feed_profile(feeds).items():
        if low:  # scalars (the decoder offset) have no shape to profile
            profile.add(name, min=low, opt=opt, max=high)
    config = CreateConfig(fp16=True, profiles=[profile])
    return TrtRunner(EngineFromNetwork(_network(export, graph), config=config), name=RUNNER_NAME)
