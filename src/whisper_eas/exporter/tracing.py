"""One traced export call: names and dynamic axes from a `GraphSpec`, checked afterwards."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from whisper_eas.exporter.graph_specs import GraphSpec


def trace_to_onnx(module: nn.Module, args: tuple, spec: GraphSpec, path: Path, opset: int) -> Path:
    """Trace `module` on `args` into `path` with the spec's names and dynamic axes, then check it."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # never write through a hard link (shared decoder graphs) or symlink
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about constants that are constant here
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes(),
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    return path
