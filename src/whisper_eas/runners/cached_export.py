"""The default CPU path: ONNX Runtime graphs exported once into the model cache, reused after.

`trt-transcribe` with no `--engine-dir` on a CPU runs the fastest backend that holds accuracy:
ONNX Runtime on graphs of the requested model and prune config, at the precision measured to hold
accuracy for that model and mode (the table of defaults, `data/defaults.json`), float32 elsewhere.
`int8-proj` is the decoder's vocabulary projection in int8 with exact float32 rescoring of every
token that can win (`exporter.rescore`): its greedy transcripts equal float32's. `int8-dec` adds
int8 decoder layer weights (a third off each decoder step); its folders also hold the int8-proj
step, which the guard uses to re-decode any window it flags (`window_decode`), so one window gone
wrong (a sentence said four times) does not stay wrong. tiny.en runs int8-dec in the sequential
and batched modes and int8-proj in the service; base runs int8-proj. Whole int8 (`int8`) is not a
default anywhere: on tiny.en it lost +1.9 points on the eight long recordings of speech-dev +
speech-val; nor is `int8-enc` (an int8 encoder tail): +1.02 on speech-val long (docs/benchmarks.md). The
first run exports them into `$WHISPER_EAS_HOME/onnx-exports/<key>/` (a progress line on stderr,
~15-45 s for tiny.en, ~1-2 min for base); later runs load that folder.

Concurrent processes are safe: each exports into a private sibling folder and renames it into
place; a process that loses the race drops its copy and uses the winner's. A folder is only ever
seen complete (its manifest is written last, inside the private folder).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from whisper_eas.config import PruneConfig
from whisper_eas.defaults import default_precision
from whisper_eas.io_utils import build_folder

# bump when what a cached folder must hold changes (2: int8-dec holds the exact step; 3: weights
# beside the graphs; 4: the encoder's attention in query chunks)
CACHE_FORMAT = "4"


@dataclass(frozen=True)
class CachedExport:
    """Where the default CPU graphs are (or will be) and whether this call exported them."""

    folder: Path | None  # None: no usable export (see `reason`)
    reason: str
    exported: bool = False


def export_key(model: str | Path, prune: PruneConfig | None, precision: str) -> str:
    """Everything a cached folder depends on: model (name, or folder and its files' sizes and times),
    config, precision, exporter versions."""
    from whisper_eas.checkpoints.registry import EMBEDDED_MODELS, resolve_model
    from whisper_eas.exporter.graph_specs import DECODER_EXPORT_VERSION
    from whisper_eas.exporter.quantize import QUANTIZE_VERSION

    parts = [CACHE_FORMAT, DECODER_EXPORT_VERSION, QUANTIZE_VERSION, precision,
             json.dumps(prune.to_dict() if prune else None, sort_keys=True), _versions()]
    if str(model) in EMBEDDED_MODELS:
        parts.append(str(model))
    else:
        folder = resolve_model(model)
        parts.append(str(folder.resolve()))
        parts += [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(folder.iterdir()) if p.is_file()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def _versions() -> str:
    from importlib import metadata

    found = []
    for package in ("whisper-eas", "torch", "onnxruntime"):
        try:
            found.append(f"{package}={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package}=absent")
    return ",".join(found)


def cache_folder(key: str) -> Path:
    from whisper_eas.checkpoints.registry import cache_home

    return cache_home() / "onnx-exports" / key


def _usable(folder: Path) -> bool:
    from whisper_eas.exporter.manifest import ExportError, ExportManifest

    try:
        ExportManifest.load(folder, verify=False)
    except (ExportError, OSError, ValueError):
        return False
    return True


def _label(model: str | Path, prune: PruneConfig | None, precision: str) -> str:
    from whisper_eas.config import format_prune

    return f"{model} [{format_prune(prune)}] {precision}"


def cached_export(model: str | Path, prune: PruneConfig | None, precision: str = "int8",
                  progress: Callable[[str], None] | None = None) -> CachedExport:
    """The cached export folder for (model, prune, precision), exporting it on first use (which
    imports PyTorch; reading a cached folder does not)."""
    label = _label(model, prune, precision)
    folder = cache_folder(export_key(model, prune, precision))
    if _usable(folder):
        return CachedExport(folder, f"cached {label} ONNX graphs in {folder}")
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    say(f"exporting {label} ONNX graphs into {folder} (first run only; later runs reuse them)")
    from whisper_eas.exporter.export import export_model

    build_folder(folder, lambda private: export_model(model, prune, private, precision=precision), _usable)
    return CachedExport(folder, f"{label} ONNX graphs exported into {folder}", exported=True)


def default_cpu_export(model: str | Path | None, prune: PruneConfig | None,
                       progress: Callable[[str], None] | None = None, batched: bool = False,
                       serve: bool = False) -> CachedExport:
    """What `auto` runs on a CPU without `--engine-dir` (`batched`, `serve`: for that mode): a cached
    export, or None and why not."""
    from whisper_eas.checkpoints.registry import DEFAULT_MODEL
    from whisper_eas.deps import installed

    model = model if model is not None else DEFAULT_MODEL
    if not installed("onnxruntime"):
        return CachedExport(None, "onnxruntime is not installed (pip install 'whisper-eas[onnx]' for the faster path)")
    if prune is not None and prune.adaptive:
        return CachedExport(None, f"config [{prune}] sets keep counts per window from attention, which the "
                                  "cached ONNX graphs do not")
    try:
        return cached_export(model, prune, default_precision(model, batched, serve), progress)
    except Exception as error:  # an export that fails must not stop a transcription: PyTorch runs anything
        return CachedExport(None, f"ONNX export of {model} failed ({type(error).__name__}: {error})")
