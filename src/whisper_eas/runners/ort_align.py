"""Word timestamps on ONNX Runtime: the export folder's alignment graph (`exporter/align_graph.py`)
as the cross-attention source `alignment.find_alignment` reads.

A folder exported before the graph existed has no `align.onnx` in its manifest: asking it for
word timestamps is one clear error that says to re-export.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import numpy as np

from whisper_eas.exporter.graph_specs import ALIGN_FILE

# hidden [1, K, D] (the runner's array) and the token sequence -> the alignment heads' raw scores
# [H, T, K] and logits [T, V], float32 NumPy arrays
Attention = Callable[[Any, list[int]], tuple[np.ndarray, np.ndarray]]

_SESSIONS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def has_align_graph(runner: Any) -> bool | None:
    """True/False for an ONNX Runtime runner (does its folder hold the graph?), None for others."""
    if getattr(runner, "backend", None) != "onnxruntime" or getattr(runner, "export", None) is None:
        return None
    return ALIGN_FILE in runner.export.files


def ort_attention(runner: Any) -> Attention:
    """The alignment graph of an ONNX Runtime runner's folder, as an `Attention` (session built once)."""
    session = _SESSIONS.get(runner)
    if session is None:
        from whisper_eas.runners.onnx_graphs import file_session

        session = file_session(runner.export.directory, ALIGN_FILE, getattr(runner, "threads", None))
        _SESSIONS[runner] = session

    def attend(hidden: np.ndarray, tokens: list[int]) -> tuple[np.ndarray, np.ndarray]:
        feed = {"tokens": np.array([tokens], dtype=np.int64), "hidden": np.ascontiguousarray(hidden, np.float32)}
        scores, logits = session.run(None, feed)
        return scores, logits

    return attend
