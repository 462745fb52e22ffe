"""TensorRT is optional: import it lazily, and say once, clearly, what to install when it is missing."""

from __future__ import annotations

import importlib.util
from types import ModuleType

INSTALL_HINT = ("pip install tensorrt (NVIDIA's wheel, from https://pypi.nvidia.com) on a machine with an "
                "NVIDIA GPU and driver")


class TensorRTMissingError(RuntimeError):
    """TensorRT (or the CUDA GPU it needs) is not available in this environment."""


def tensorrt_installed() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def require_tensorrt(purpose: str = "TensorRT engines") -> ModuleType:
    """The `tensorrt` module, or one `TensorRTMissingError` that names the package and the GPU it needs."""
    if not tensorrt_installed():
        raise TensorRTMissingError(f"{purpose}: TensorRT is not installed; {INSTALL_HINT}")
    import tensorrt

    return tensorrt


def require_cuda(purpose: str = "TensorRT engines") -> None:
    import torch

    if not torch.cuda.is_available():
        raise TensorRTMissingError(f"{purpose}: no CUDA GPU is visible to torch (TensorRT needs an NVIDIA GPU, "
                                   "its driver and a CUDA build of PyTorch)")
