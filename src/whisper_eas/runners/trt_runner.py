"""TensorRT backend: `GraphRunner` over the engines of an export folder (`whisper-eas export ... --engines`).

Loading (`engine_graphs.load_engine_graphs`) checks the engines against this machine and the
folder's ONNX files and activates one Polygraphy `TrtRunner` per graph; the head -> prune ->
tail chain and the decoder session are `GraphRunner`'s, shared with every graph backend.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from whisper_eas.deps import require_cuda, require_tensorrt
from whisper_eas.exporter.manifest import ExportManifest
from whisper_eas.runners.engine_graphs import load_engine_graphs
from whisper_eas.runners.graphs import GraphRunner


class TensorRTRunner(GraphRunner):
    """Runs the engines of one export folder on a CUDA GPU; model and prune config come from its manifests."""

    backend = "tensorrt"

    def __init__(self, engine_dir: str | Path, device: str = "cuda", verify: bool = True):
        require_tensorrt("the tensorrt backend")
        require_cuda("the tensorrt backend")
        device = device if device.startswith("cuda") else "cuda"
        export = ExportManifest.load(engine_dir, verify=False)
        super().__init__(export, partial(load_engine_graphs, export, device, verify), device)
