"""`make_runner(backend | "auto")`: the one place a runner is chosen and built, and why.

`auto`: TensorRT where the folder holds engines and TensorRT can run (`deps.tensorrt_usable`),
else ONNX Runtime where the folder is an ONNX export, else PyTorch (always available). A named
backend is checked up front, so a missing optional package is one clear line.

A folder carries its own model and prune config (its manifest). A model or config named as well
must agree with it, else `ConfigError` names both; with none named, the folder's are used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whisper_eas.config import DEFAULT_PRUNE, PruneConfig, format_prune
from whisper_eas.checkpoints.registry import DEFAULT_MODEL
from whisper_eas.deps import INSTALL_HINTS, installed, require_cuda, require_tensorrt, tensorrt_usable
from whisper_eas.errors import ConfigError, MissingDependencyError
from whisper_eas.exporter.manifest import MANIFEST, ExportError, ExportManifest
from whisper_eas.runners.base import Runner

BACKENDS = ("pytorch", "onnxruntime", "tensorrt")
BACKEND_CHOICES = ("auto", *BACKENDS)


@dataclass(frozen=True)
class BackendChoice:
    backend: str
    reason: str


def has_engines(folder: Path) -> bool:
    return any(folder.glob("*.engine")) or any(folder.glob("*.plan"))


def is_onnx_export(folder: Path) -> bool:
    """Whether `folder` holds an ONNX export; a manifest.json that is there but unreadable, or not a
    JSON object, is an error naming it (not a silent fallback to PyTorch)."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise ExportError(f"{manifest}: not valid JSON ({str(error).splitlines()[0] if str(error) else error!r})") from None
    if not isinstance(data, dict):
        raise ExportError(f"{manifest}: holds a JSON {type(data).__name__.replace('dict', 'object')}, not the "
                          "object of a whisper-eas export manifest")
    return data.get("format") == "whisper-eas-onnx" and any(folder.glob("*.onnx"))


def choose_backend(engine_dir: str | Path | None) -> BackendChoice:
    """The backend `auto` resolves to for this folder on this machine, and why."""
    if engine_dir is None:
        return BackendChoice("pytorch", "no --engine-dir given")
    folder = Path(engine_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: --engine-dir is not a folder")
    missing = []
    if has_engines(folder):
        why_not = tensorrt_usable()
        if why_not is None:
            return BackendChoice("tensorrt", f"TensorRT engines in {folder} and a CUDA GPU")
        missing.append(why_not)
    if is_onnx_export(folder):
        if installed("onnxruntime"):
            prefix = f"TensorRT engines found but {missing[0]}; " if missing else ""
            return BackendChoice("onnxruntime", f"{prefix}ONNX export in {folder}")
        missing.append("onnxruntime is not installed")
    detail = "; ".join(missing) or "neither TensorRT engines nor an ONNX export"
    return BackendChoice("pytorch", f"{folder}: {detail}")


def check_backend(backend: str) -> None:
    """Raise one clear error when a named backend cannot run here."""
    if backend not in BACKEND_CHOICES:
        raise ConfigError(f"unknown backend {backend!r}; choose from {', '.join(BACKEND_CHOICES)}")
    if backend == "onnxruntime" and not installed("onnxruntime"):
        raise MissingDependencyError(f"ONNX Runtime is not installed: {INSTALL_HINTS['onnxruntime']}, "
                                     "or use --backend pytorch")
    if backend == "tensorrt":
        require_tensorrt("the tensorrt backend")
        require_cuda("the tensorrt backend")


def make_runner(
    backend: str = "auto",
    model: str | Path | None = None,
    prune: PruneConfig | None | Any = DEFAULT_PRUNE,
    device: str = "cpu",
    engine_dir: str | Path | None = None,
    *,
    load: bool = True,
    batched: bool = False,
    serve: bool = False,
    **options: Any,
) -> Runner:
    """A runner for `backend` (`auto`: the best this machine and `engine_dir` allow); `runner.reason` says why.

    `model=None`: the folder's model, else tiny.en. `prune=DEFAULT_PRUNE`: the folder's config, else
    the model's shipped default; `None` is dense. ONNX Runtime and TensorRT run an export folder
    (`engine_dir`, or `model` when that is one). `options` go to the runner class (e.g. `threads`,
    `encoder_batch` for ONNX Runtime, `head_precision` for the CUDA-graph runner). `load=False`
    returns the runner before its sessions or engines are built. `batched`: the runner is for
    batched long-form, `serve` for the service: their defaults (config and precision) can differ
    (the table of defaults, `whisper_eas.defaults`).
    """
    if backend == "ort":
        backend = "onnxruntime"
    if backend == "auto" and engine_dir is None and device == "cpu":
        choice, engine_dir = _default_cpu_choice(model, prune, batched, serve)
        if engine_dir is not None:  # our own cache, hashed when it was written
            options.setdefault("verify", False)
    elif backend == "auto":
        choice = choose_backend(engine_dir)
    else:
        check_backend(backend)
        choice = BackendChoice(backend, "named with --backend")
        if backend == "onnxruntime" and engine_dir is None and device == "cpu" and not _is_folder(model):
            engine_dir = _cached_export(model, prune, batched, serve)  # as `auto` does: graphs exported into the cache
            options.setdefault("verify", False)
            choice = BackendChoice(backend, f"named with --backend; cached export in {engine_dir}")
    if choice.backend == "pytorch":
        runner = _pytorch_runner(model, prune, device, engine_dir, options, batched, serve)
    else:
        folder = _export_folder(choice.backend, model, engine_dir)
        runner = _graph_runner(choice.backend, folder, device, options)
        check_request(runner, model if engine_dir is not None else None, prune)
    runner.reason = choice.reason
    return runner.load() if load else runner


def _default_cpu_choice(model, prune, batched: bool = False, serve: bool = False) -> tuple[BackendChoice, Path | None]:
    """`auto` on a CPU without a folder: ONNX Runtime on graphs exported once into the model cache
    (`runners.cached_export`), else PyTorch with the reason."""
    from whisper_eas.defaults import shipped_config
    from whisper_eas.runners.cached_export import default_cpu_export

    resolved = (shipped_config(model if model is not None else DEFAULT_MODEL, batched=batched, serve=serve)
                if prune is DEFAULT_PRUNE else prune)
    cached = default_cpu_export(model, resolved, batched=batched, serve=serve)
    if cached.folder is None:
        return BackendChoice("pytorch", f"no --engine-dir; {cached.reason}"), None
    return BackendChoice("onnxruntime", f"fastest on a CPU: {cached.reason}"), cached.folder


def _is_folder(model: str | Path | None) -> bool:
    return model is not None and (Path(str(model)) / "manifest.json").is_file()


def _cached_export(model, prune, batched: bool, serve: bool = False) -> Path:
    """The cached ONNX export `auto` would run on a CPU, or `ConfigError` saying why there is none."""
    choice, folder = _default_cpu_choice(model, prune, batched, serve)
    if folder is None:
        raise ConfigError(f"the onnxruntime backend has no export to run: {choice.reason}; give --engine-dir "
                          "(whisper-eas export ... --out DIR)")
    return folder


def _export_folder(backend: str, model: str | Path | None, engine_dir: str | Path | None) -> Path:
    if engine_dir is None and model is not None and (Path(str(model)) / "manifest.json").is_file():
        return Path(str(model))
    if engine_dir is None:
        extra = " --engines" if backend == "tensorrt" else ""
        raise ConfigError(f"the {backend} backend runs an export folder: give engine_dir "
                         f"(whisper-eas export ... --out DIR{extra})")
    return Path(engine_dir)


def _graph_runner(backend: str, folder: Path, device: str, options: dict) -> Runner:
    if backend == "onnxruntime":
        from whisper_eas.runners.ort_runner import OrtRunner

        if device != "cpu":
            raise ConfigError(f"the onnxruntime backend runs on cpu here, not {device!r}")
        return OrtRunner(folder, **options)
    from whisper_eas.runners.trt_runner import TensorRTRunner

    if not device.startswith("cuda") and device != "cpu":
        raise ConfigError(f"the tensorrt backend runs on a CUDA GPU, not {device!r}")
    return TensorRTRunner(folder, device="cuda" if device == "cpu" else device, **options)


def check_request(runner: Runner, model: str | Path | None, prune: PruneConfig | None | Any) -> None:
    """A model or prune config named beside a folder must be the folder's (flags are never dropped)."""
    check_against(getattr(runner, "export"), model, prune)


def check_against(export: ExportManifest, model: str | Path | None, prune: PruneConfig | None | Any) -> None:
    """`ConfigError` naming both when `model` / `prune` (where named) differ from the folder's manifest."""
    where = export.directory / MANIFEST
    if model is not None and not _same_model(model, export.model):
        raise ConfigError(f"--model {model} disagrees with {where}, which holds {export.model}; "
                          "leave --model out to use the folder's, or export that model")
    if prune is not DEFAULT_PRUNE and prune != export.config:
        raise ConfigError(f"prune config [{format_prune(prune)}] disagrees with {where}, which holds "
                          f"[{format_prune(export.config)}]; leave the prune flags out to use the folder's, "
                          "or export that config")


def _same_model(named: str | Path, recorded: str) -> bool:
    if str(named) == recorded:
        return True
    try:
        return Path(str(named)).resolve() == Path(recorded).resolve()
    except OSError:  # pragma: no cover
        return False


def _pytorch_runner(model, prune, device: str, engine_dir, options: dict, batched: bool = False,
                    serve: bool = False) -> Runner:
    """PyTorch: named, or (when `auto` fell back from an export folder) the folder's model and config."""
    from whisper_eas.defaults import shipped_config

    if engine_dir is not None and is_onnx_export(Path(engine_dir)):
        export = ExportManifest.load(engine_dir, verify=False)
        check_against(export, model, prune)
        model, prune = export.model, export.config
    model = model if model is not None else DEFAULT_MODEL
    if prune is DEFAULT_PRUNE:
        prune = shipped_config(model, device, batched, serve)
    runner_class = pytorch_runner_class(device, prune)
    if "head_precision" in options and runner_class.__name__ != "CudaGraphRunner":
        raise ConfigError("a head precision applies to the CUDA-graph runner: --device cuda with a fixed keep ratio")
    return runner_class(model, prune=prune, device=device, dtype=pytorch_dtype(device), **options)


def pytorch_dtype(device: str):
    """FP16 on a GPU (tensor cores), float32 on the CPU (no fast FP16 kernels there)."""
    import torch

    return torch.float16 if device.startswith("cuda") else torch.float32


def pytorch_runner_class(device: str, prune: PruneConfig | None) -> type[Runner]:
    """On CUDA the static-shape CUDA-graph runner, whose decoder step is not launch-bound
    (docs/benchmarks.md: graphs make the step 2.8-5.3x faster on an H200); adaptive keep counts change
    shapes per batch, so those and CPU runs take the eager runner."""
    if device.startswith("cuda") and (prune is None or not (prune.per_input or prune.needs_audio)):
        from whisper_eas.runners.cuda_runner import CudaGraphRunner

        return CudaGraphRunner
    from whisper_eas.runners.torch_runner import TorchRunner

    return TorchRunner


