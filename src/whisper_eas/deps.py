"""Optional dependencies (onnxruntime, tensorrt, a CUDA GPU): checked in one place, imported lazily.

A CPU-only install works without any of them; what needs one raises one
`MissingDependencyError` that says what to install (as faster-whisper does for its VAD).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from whisper_eas.errors import MissingDependencyError

TENSORRT_HINT = ("pip install tensorrt (NVIDIA's wheel, from https://pypi.nvidia.com) on a machine with an "
                 "NVIDIA GPU and driver")
INSTALL_HINTS = {
    "tensorrt": TENSORRT_HINT,
    "onnxruntime": "pip install 'whisper-eas[onnx]' (or onnxruntime)",
    "polygraphy": "pip install polygraphy",
    "triton": "pip install triton (Linux, NVIDIA GPU)",
    "fastapi": "pip install 'whisper-eas[serve]'",
    "uvicorn": "pip install 'whisper-eas[serve]'",
    "multipart": "pip install 'whisper-eas[serve]'",
    "prometheus_client": "pip install 'whisper-eas[serve]'",
}
NAMES = {"tensorrt": "TensorRT", "onnxruntime": "ONNX Runtime", "polygraphy": "Polygraphy", "triton": "Triton"}


class TensorRTMissingError(MissingDependencyError):
    """TensorRT (or the CUDA GPU it needs) is not available in this environment."""


def installed(package: str) -> bool:
    """Whether `package` can be imported, without importing it."""
    return importlib.util.find_spec(package) is not None


def require(package: str, purpose: str) -> ModuleType:
    """The module `package`, or one `MissingDependencyError` naming what to install for `purpose`."""
    if not installed(package):
        hint = INSTALL_HINTS.get(package, f"pip install {package}")
        error = TensorRTMissingError if package == "tensorrt" else MissingDependencyError
        raise error(f"{purpose}: {NAMES.get(package, package)} is not installed; {hint}")
    return importlib.import_module(package)


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available()


def require_tensorrt(purpose: str = "TensorRT engines") -> ModuleType:
    """The `tensorrt` module, or one `TensorRTMissingError` that names the package and the GPU it needs."""
    return require("tensorrt", purpose)


def require_cuda(purpose: str = "TensorRT engines") -> None:
    if not cuda_available():
        raise TensorRTMissingError(f"{purpose}: no CUDA GPU is visible to torch (TensorRT needs an NVIDIA GPU, "
                                   "its driver and a CUDA build of PyTorch)")


def tensorrt_usable() -> str | None:
    """None when TensorRT engines can run here, else why not (the one TensorRT availability check)."""
    if not installed("tensorrt"):
        return "tensorrt is not installed"
    if not cuda_available():
        return "no CUDA GPU"
    return None
