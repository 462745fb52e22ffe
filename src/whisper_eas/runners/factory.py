"""Pick and build a runner by backend name."""

from __future__ import annotations

from pathlib import Path

from whisper_eas.config import PruneConfig
from whisper_eas.runners.base import Runner

BACKENDS = ("pytorch",)


def make_runner(
    backend: str = "pytorch",
    model: str | Path = "tiny.en",
    prune: PruneConfig | None = None,
    device: str = "cpu",
    engine_dir: str | Path | None = None,
) -> Runner:
    if backend == "pytorch":
        import torch

        from whisper_eas.runners.torch_runner import TorchRunner

        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        return TorchRunner(model, prune=prune, device=device, dtype=dtype)
    raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
