"""`--backend auto`: the fastest backend this machine and `--engine-dir` can run, and why.

TensorRT where the folder holds engines and a CUDA GPU and the tensorrt package exist, else ONNX
Runtime where the folder is an ONNX export, else PyTorch (always available). Explicitly named
backends are checked up front so a missing optional package is one clear line, not a traceback.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from whisper_eas.config import PruneConfig
from whisper_eas.runners.base import Runner

BACKEND_CHOICES = ("auto", "pytorch", "onnxruntime", "tensorrt")
_INSTALL = {
    "tensorrt": "TensorRT is not installed: pip install tensorrt (needs an NVIDIA GPU and driver), "
                "or use --backend onnxruntime / pytorch",
    "onnxruntime": "ONNX Runtime is not installed: pip install 'whisper-eas[onnx]' (or onnxruntime), "
                   "or use --backend pytorch",
}


@dataclass(frozen=True)
class BackendChoice:
    backend: str
    reason: str


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def has_engines(folder: Path) -> bool:
    return any(folder.glob("*.engine")) or any(folder.glob("*.plan"))


def is_onnx_export(folder: Path) -> bool:
    manifest = folder / "manifest.json"
    try:
        return json.loads(manifest.read_text()).get("format") == "whisper-eas-onnx" and any(folder.glob("*.onnx"))
    except (OSError, ValueError, AttributeError):
        return False


def choose_backend(engine_dir: str | Path | None) -> BackendChoice:
    """The backend `auto` resolves to for this folder on this machine."""
    if engine_dir is None:
        return BackendChoice("pytorch", "no --engine-dir given")
    folder = Path(engine_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: --engine-dir is not a folder")
    missing = []
    if has_engines(folder):
        if not _installed("tensorrt"):
            missing.append("tensorrt is not installed")
        elif not _cuda_available():
            missing.append("no CUDA GPU")
        else:
            return BackendChoice("tensorrt", f"TensorRT engines in {folder} and a CUDA GPU")
    if is_onnx_export(folder):
        if _installed("onnxruntime"):
            prefix = f"TensorRT engines found but {missing[0]}; " if missing else ""
            return BackendChoice("onnxruntime", f"{prefix}ONNX export in {folder}")
        missing.append("onnxruntime is not installed")
    detail = "; ".join(missing) or "neither TensorRT engines nor an ONNX export"
    return BackendChoice("pytorch", f"{folder}: {detail}")


def check_backend(backend: str) -> None:
    """Raise one clear RuntimeError when a named backend's package is missing."""
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKEND_CHOICES)}")
    if backend in _INSTALL and not _installed(backend):
        raise RuntimeError(_INSTALL[backend])
    if backend == "tensorrt" and not _cuda_available():
        raise RuntimeError("the tensorrt backend needs a CUDA GPU; none is visible "
                           "(use --backend onnxruntime / pytorch)")


def build_runner(
    backend: str, model: str | Path, prune: PruneConfig | None, device: str, engine_dir: str | Path | None
) -> tuple[Runner, str]:
    """(runner, why this backend) for a backend name, `auto` included."""
    from whisper_eas.runners.factory import make_runner

    if backend == "auto":
        choice = choose_backend(engine_dir)
    else:
        check_backend(backend)
        choice = BackendChoice(backend, "named with --backend")
    if choice.backend == "tensorrt" and device == "cpu":
        device = "cuda"  # TensorRT engines run on the GPU only
    runner = make_runner(backend=choice.backend, model=model, prune=prune, device=device, engine_dir=engine_dir)
    return runner, choice.reason
