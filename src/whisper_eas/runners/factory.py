"""Pick and build a runner by backend name."""

from __future__ import annotations

from pathlib import Path

from whisper_eas.config import PruneConfig
from whisper_eas.runners.base import Runner

BACKENDS = ("pytorch", "onnxruntime", "tensorrt")


def make_runner(
    backend: str = "pytorch",
    model: str | Path = "tiny.en",
    prune: PruneConfig | None = None,
    device: str = "cpu",
    engine_dir: str | Path | None = None,
) -> Runner:
    """A runner for `backend`. ONNX Runtime runs the export folder `engine_dir` (or `model`, when
    that is an export folder): model and prune config come from its manifest.json. TensorRT runs
    the engines of such a folder (`whisper-eas export ... --engines`), on the GPU."""
    if backend == "pytorch":
        return pytorch_runner_class(device, prune)(model, prune=prune, device=device, dtype=pytorch_dtype(device))
    if backend in ("onnxruntime", "ort"):
        from whisper_eas.runners.ort_runner import OrtRunner

        if engine_dir is None and (Path(str(model)) / "manifest.json").is_file():
            engine_dir = model
        if engine_dir is None:
            raise ValueError("the onnxruntime backend runs an export folder: give engine_dir "
                             "(whisper-eas export --out DIR)")
        if device != "cpu":
            raise ValueError(f"the onnxruntime backend runs on cpu here, not {device!r}")
        return OrtRunner(engine_dir)
    if backend == "tensorrt":
        return _tensorrt_runner(model, device, engine_dir)
    raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")


def pytorch_dtype(device: str):
    """FP16 on a GPU (tensor cores), float32 on the CPU (no fast FP16 kernels there)."""
    import torch

    return torch.float16 if device.startswith("cuda") else torch.float32


def pytorch_runner_class(device: str, prune: PruneConfig | None) -> type[Runner]:
    """On CUDA the static-shape CUDA-graph runner, whose decoder step is not launch-bound
    (docs/benchmarks.md: graphs make the step 2.8-5.3x faster on an H200); adaptive keep counts change
    shapes per batch, so those and CPU runs take the eager runner."""
    if device.startswith("cuda") and (prune is None or not prune.adaptive):
        from whisper_eas.runners.cuda_runner import CudaGraphRunner

        return CudaGraphRunner
    from whisper_eas.runners.torch_runner import TorchRunner

    return TorchRunner


def _tensorrt_runner(model: str | Path, device: str, engine_dir: str | Path | None) -> Runner:
    from whisper_eas.engines.deps import require_tensorrt
    from whisper_eas.engines.manifest import ENGINE_MANIFEST
    from whisper_eas.runners.trt_runner import TensorRTRunner

    require_tensorrt("the tensorrt backend")
    if engine_dir is None and (Path(str(model)) / ENGINE_MANIFEST).is_file():
        engine_dir = model
    if engine_dir is None:
        raise ValueError("the tensorrt backend runs an engine folder: give engine_dir "
                         "(whisper-eas export ... --out DIR --engines)")
    if not device.startswith("cuda"):
        raise ValueError(f"the tensorrt backend runs on a CUDA GPU, not {device!r}")
    return TensorRTRunner(engine_dir, device=device)
