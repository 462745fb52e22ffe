"""Loader: an engine folder's TensorRT engines as Polygraphy `TrtRunner`s behind `GraphCall`.

Before TensorRT sees an engine, `engines.json` is checked against this machine's TensorRT and GPU
and against the folder's ONNX files; engines whose prune step is the `AttentivePrune` plugin get
the plugin registered first. Each engine is fed torch CUDA tensors, which Polygraphy binds by
address (no copies); its output buffers are reused by the next call, so outputs are cloned.
Polygraphy's stream is a blocking stream, which orders it after work torch queued on the legacy
default stream. Nothing here imports tensorrt before `load_engine_graphs` runs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from whisper_eas.deps import require_cuda, require_tensorrt
from whisper_eas.engines.manifest import EngineManifest, Platform
from whisper_eas.exporter.manifest import ExportManifest
from whisper_eas.runners.graphs import LoadedGraphs


class EngineCall:
    """One activated Polygraphy `TrtRunner`: a dict of torch tensors in, a dict of torch tensors out."""

    def __init__(self, path: Path, name: str):
        from polygraphy.backend.common import BytesFromPath
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        # "runtime": activation memory for the shapes of each call, not the profile's maxima
        self.runner = TrtRunner(EngineFromBytes(BytesFromPath(str(path))), name=name, allocation_strategy="runtime")
        self.runner.activate()
        engine = self.runner.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.host_inputs = {n for n in names if engine.is_shape_inference_io(n)}  # shape tensors live on the host

    @torch.inference_mode()  # as the decoding loop ran before it moved to NumPy
    def infer(self, feed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feed = {k: v.cpu() if k in self.host_inputs else v.contiguous() for k, v in feed.items()}
        outputs = self.runner.infer(feed, check_inputs=False, copy_outputs_to_host=False)
        return {name: value.clone() for name, value in outputs.items()}

    def close(self) -> None:
        if self.runner.is_active:
            self.runner.deactivate()


def load_engine_graphs(export: ExportManifest, device: str = "cuda", verify: bool = True) -> LoadedGraphs:
    """One `EngineCall` per graph of the export, after the engine manifest's checks."""
    require_tensorrt("the tensorrt backend")
    require_cuda("the tensorrt backend")
    if verify:
        export.check_files(hashes=True)
    manifest = EngineManifest.load(export.directory)
    manifest.check(export, Platform.current(), hashes=verify)
    if manifest.prune_form == "plugin":
        from whisper_eas.plugins.trt_plugin import register_plugin

        register_plugin()
    calls = {graph: EngineCall(manifest.engine_path(graph), graph) for graph in export.graphs}

    def close() -> None:
        for call in calls.values():
            call.close()

    info = dict(tensorrt=manifest.platform.tensorrt, gpu=manifest.platform.gpu, prune_form=manifest.prune_form)
    return LoadedGraphs(export, calls, device, info, close, to_device=lambda x: torch.as_tensor(x).to(device))
