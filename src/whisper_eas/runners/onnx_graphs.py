"""Loader: an export folder's ONNX graphs as ONNX Runtime sessions behind `GraphCall`.

Each call takes and returns NumPy arrays: the ONNX Runtime path imports no PyTorch.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from whisper_eas.deps import require
from whisper_eas.exporter.graph_specs import ENCODER_GRAPHS
from whisper_eas.exporter.manifest import ExportError, ExportManifest, file_inside
from whisper_eas.runners.graphs import LoadedGraphs


def _ort():
    return require("onnxruntime", "the onnxruntime backend")


@functools.cache
def shared_cpu_arena() -> bool:
    """One CPU arena for every session of this process, growing by what is asked (not doubling).

    Each session otherwise keeps its own arena at its own peak, and the runner's graphs run one at a
    time: the encoder head's and tail's attention buffers and the decoder's then add up where one
    arena holds only the largest of them (a 138 s recording: 560 -> 492 MB peak). Registered once
    per process (ONNX Runtime refuses a second registration); False where this ONNX Runtime has no
    such API."""
    ort = _ort()
    try:
        config = ort.OrtArenaCfg(0, 1, -1, -1)  # no limit, kSameAsRequested, default chunk sizes
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, config)
        return True
    except Exception as error:  # an older ONNX Runtime, or one already registered by the host program
        return "already" in str(error).lower()


def session_options(threads: int | None = None, spin: bool = False, memory_pattern: bool = True) -> Any:
    """CPU defaults: all graph optimizations, sequential execution, `threads` intra-op threads.

    Each graph has its own thread pool and the runner alternates between five of them (and Python
    decoding steps): idle pools that spin steal the cores the running one needs (measured 20%
    slower end to end on a shared 2-core machine), so spinning is off unless asked for.
    `memory_pattern=False`: no planned block per input shape. On the encoder graphs the planned
    block (the attention probabilities of 1500 frames) is allocated beside the arena chunks the
    first call already took, ~145 MB that the process then holds (docs/benchmarks.md).
    """
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_mem_pattern = memory_pattern
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if shared_cpu_arena():
        options.add_session_config_entry("session.use_env_allocators", "1")
    options.log_severity_level = 3
    return options


def load_session(manifest: ExportManifest, graph: str, options: Any, providers: list[str]) -> Any:
    """An InferenceSession for one graph, its I/O names checked against the manifest."""
    ort = _ort()
    path = manifest.path(graph)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as error:  # ORT raises its own Fail/InvalidGraph types
        raise ExportError(f"{path}: ONNX Runtime cannot load it ({str(error).splitlines()[0]})") from None
    spec = manifest.graphs[graph]
    names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    if names != (spec.input_names, spec.output_names):
        expected = (spec.input_names, spec.output_names)
        raise ExportError(f"{path}: inputs/outputs {names} do not match manifest.json {expected}")
    return session


def file_session(directory: Path, name: str, threads: int | None = None, spin: bool = False,
                 providers: list[str] | None = None) -> Any:
    """A session for a graph file of an export folder that is not one of its decoding graphs (the
    alignment graph, int8-dec's exact step): refused in one line when it is not inside the folder
    or ONNX Runtime cannot load it."""
    path = file_inside(directory, name, ExportError)
    try:
        return _ort().InferenceSession(str(path), sess_options=session_options(threads, spin),
                                       providers=providers or ["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own Fail/InvalidGraph types
        raise ExportError(f"{path}: ONNX Runtime cannot load it ({str(error).splitlines()[0]})") from None


class OrtGraph:
    """One ONNX Runtime session: a dict of arrays in, a dict of arrays out."""

    def __init__(self, session: Any):
        self.session = session
        self.outputs = [o.name for o in session.get_outputs()]
        self.calls = 0

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        arrays = {name: np.ascontiguousarray(value) for name, value in feed.items()}
        return dict(zip(self.outputs, self.session.run(None, arrays)))


def load_onnx_graphs(manifest: ExportManifest, threads: int | None = None, providers: list[str] | None = None,
                     spin: bool = False, verify: bool = True) -> LoadedGraphs:
    """One `OrtGraph` per graph of the folder; `verify` first checks every file's sha256."""
    if verify:
        manifest.check_files(hashes=True)
    options = {pattern: session_options(threads, spin, pattern) for pattern in (True, False)}
    providers = providers or ["CPUExecutionProvider"]
    calls = {name: OrtGraph(load_session(manifest, name, options[name not in ENCODER_GRAPHS], providers))
             for name in manifest.graphs}
    return LoadedGraphs(manifest, calls, "cpu", {"providers": providers})
