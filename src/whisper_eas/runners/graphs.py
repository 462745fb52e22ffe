"""One runner over the graphs of an export folder, whatever executes them (Polygraphy's split).

A loader (`onnx_graphs.load_onnx_graphs`, `engine_graphs.load_engine_graphs`) turns a folder into
`LoadedGraphs`: the export manifest, the tokenizer and one `GraphCall` per graph, each a plain
`infer(feed) -> dict` over the backend's arrays (NumPy for ONNX Runtime, torch tensors on the GPU
for TensorRT: this module imports no PyTorch and treats both alike). `GraphRunner` drives them: encoder head -> prune ->
tail (`dense=True`: head -> tail on all frames), cross keys/values once per window, then one
decoder-step call per step with one self-attention cache tensor per layer. The ONNX Runtime runner
keeps its IO-binding decoder session as a specialisation (`ort_runner.OrtRunner`).

Creating a runner reads the manifest and tokenizer only; `load()` (or the first encode) builds
the sessions or deserializes the engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from whisper_eas.errors import ConfigError
from whisper_eas.exporter.graph_specs import SPEECH_BOUNDS
from whisper_eas.exporter.manifest import TOKENIZER, ExportManifest
from whisper_eas.features import speech_bounds
from whisper_eas.runners.base import EncodedBatch, Runner, encode_in_chunks
from whisper_eas.tokenizer import WhisperTokenizer


class GraphCall(Protocol):
    """One loaded graph: named arrays in, named arrays out (the backend's own kind)."""

    def infer(self, feed: dict[str, Any]) -> dict[str, Any]: ...


def host_array(value: Any) -> np.ndarray:
    """A NumPy array of a backend array (a torch tensor is copied off its device)."""
    return value if isinstance(value, np.ndarray) else value.detach().cpu().numpy()


def _repeat(value: Any, times: int, axis: int) -> Any:
    """Each index of `axis` repeated `times` times, for NumPy arrays and torch tensors."""
    if isinstance(value, np.ndarray):
        return np.repeat(value, times, axis=axis)
    return value.repeat_interleave(times, dim=axis)


@dataclass
class LoadedGraphs:
    """What a loader returns: one call per graph of `export`, on `device`; `to_device` turns a
    NumPy array (or an array of the backend's kind) into what the calls take."""

    export: ExportManifest
    calls: dict[str, GraphCall]
    device: str = "cpu"
    info: dict = field(default_factory=dict)  # backend facts for `describe()` (TensorRT version, GPU...)
    close: Callable[[], None] = lambda: None
    to_device: Callable[[Any], Any] = np.ascontiguousarray


class GraphDecoderSession:
    """Decoding state of one batch: per-layer self cache as tensors, cross k/v fixed per window."""

    def __init__(self, step: GraphCall, cross_k: Any, cross_v: Any,
                 to_device: Callable[[Any], Any] = np.ascontiguousarray):
        self.step_graph, self.to_device = step, to_device
        self.n_layers = cross_k.shape[0]
        layers = range(self.n_layers)
        self.cross = {**{f"cross_k_{i}": cross_k[i] for i in layers}, **{f"cross_v_{i}": cross_v[i] for i in layers}}
        # zero positions [rows, heads, 0, head_dim], but a real address (a view of the cross keys):
        # TensorRT rejects null pointers for empty tensors
        empty = cross_k[0, :, :, :1][:, :, :0]
        self.cache = {f"self_{kv}_{i}": empty for kv in "kv" for i in layers}
        self.offset = 0

    def step(self, tokens: np.ndarray, positions: Sequence[int] | None = None) -> np.ndarray:
        wanted = np.array(range(tokens.shape[1]) if positions is None else positions, np.int64)
        feed = {"tokens": self.to_device(np.asarray(tokens, np.int64)),
                "offset": self.to_device(np.array(self.offset, np.int64)),
                "logit_positions": self.to_device(wanted), **self.cache, **self.cross}
        outputs = self.step_graph.infer(feed)
        self.cache = {name: outputs[f"new_{name}"] for name in self.cache}
        self.offset += tokens.shape[1]
        return host_array(outputs["logits"]).astype(np.float32, copy=False)

    def reorder(self, index: np.ndarray) -> None:
        index = self.to_device(np.asarray(index, np.int64))
        self.cache = {name: value[index] for name, value in self.cache.items()}

    def select(self, rows: np.ndarray) -> None:
        self.reorder(rows)
        rows = self.to_device(np.asarray(rows, np.int64))
        self.cross = {name: value[rows] for name, value in self.cross.items()}


class GraphRunner(Runner):
    """Runs the graphs of one export folder; model and prune config come from its manifest.

    `loader` builds the graph calls when the runner is first used (or on `load()`); a ready
    `LoadedGraphs` may be given instead (tests drive this logic with other calls). With
    `encoder_batch`, a dynamic-batch export encodes that many windows at a time (`encode_in_chunks`).
    """

    backend = "graphs"

    def __init__(self, export: ExportManifest, loader: Callable[[], LoadedGraphs] | LoadedGraphs,
                 device: str = "cpu", encoder_batch: int | None = None):
        self.export, self.device, self.encoder_batch = export, device, encoder_batch
        self._loader = loader if callable(loader) else None
        self._graphs: LoadedGraphs | None = None if callable(loader) else loader
        dims = export.dims
        self.dims, self.prune, self.model_name, self.n_mels = dims, export.config, export.model, dims.n_mels
        self.tokenizer = WhisperTokenizer.from_file(Path(export.directory) / TOKENIZER, multilingual=dims.multilingual)

    def load(self) -> "GraphRunner":
        if self._graphs is None:
            self._graphs = self._loader()
        return self

    @property
    def graphs(self) -> dict[str, GraphCall]:
        return self.load()._graphs.calls

    def _check_batch(self, rows: int) -> None:
        static = self.export.batch
        if isinstance(static, int) and rows != static:
            raise ConfigError(f"{self.export.directory}: exported with a static batch of {static}, got {rows} rows "
                             "(export with --batch dynamic, or feed that many windows)")

    def encode(self, mel: np.ndarray, dense: bool = False) -> EncodedBatch:
        self._check_batch(mel.shape[0])
        rows = self.encoder_batch if isinstance(self.export.batch, str) else None  # static: as exported
        return encode_in_chunks(lambda m: self._encode(m, dense), mel, rows, self.prune, dense)

    def _to_device(self, value: Any) -> Any:
        return self.load()._graphs.to_device(value)

    def _encode(self, mel: np.ndarray, dense: bool) -> EncodedBatch:
        graphs = self.graphs
        head = graphs["encoder_head"].infer({"mel": self._to_device(np.asarray(mel, np.float32))})
        hidden, kept = head["head_hidden"], None
        if self.prune is not None and not dense:
            names = self.export.graphs["prune"].input_names
            if SPEECH_BOUNDS in names:  # the audio's extent, from the features as the PyTorch hooks read it
                return self._encode_regions(mel, head, names)
            pruned = graphs["prune"].infer({name: head[name] for name in names})
            hidden, kept = pruned["kept_hidden"], host_array(pruned["kept_index"])
        hidden = graphs["encoder_tail"].infer({"tail_input": hidden})["encoder_hidden"]
        return EncodedBatch(hidden, kept, n_frames=self.dims.n_frames)

    def _encode_regions(self, mel: np.ndarray, head: dict, names: list[str]) -> EncodedBatch:
        """Prune graphs that take `speech_bounds` keep a count per window: one window at a time
        (a batch of unequal counts comes back padded, which only the PyTorch decoder takes)."""
        graphs, parts = self.graphs, []
        bounds = self._to_device(speech_bounds(np.asarray(mel, np.float32)))
        for row in range(mel.shape[0]):
            feed = {name: head[name][row : row + 1] for name in names if name != SPEECH_BOUNDS}
            pruned = graphs["prune"].infer({**feed, SPEECH_BOUNDS: bounds[row : row + 1]})
            hidden = graphs["encoder_tail"].infer({"tail_input": pruned["kept_hidden"]})["encoder_hidden"]
            parts.append(EncodedBatch(hidden, host_array(pruned["kept_index"]), n_frames=self.dims.n_frames))
        if len({part.n_kept for part in parts}) > 1:
            return EncodedBatch.padded(parts)
        return EncodedBatch.concat(parts)

    def decoder(self, encoded: EncodedBatch, group: int = 1):
        return self._session(*self._cross(encoded, group))

    def _cross(self, encoded: EncodedBatch, group: int) -> tuple[Any, Any]:
        """The decoder's cross-attention keys and values of `encoded`, repeated `group` times per window."""
        if encoded.frame_mask is not None:
            raise ConfigError(f"{self.backend}: padded batches (EncodedBatch.padded) decode on the pytorch runner only")
        hidden = encoded.hidden
        hidden = np.asarray(hidden, np.float32) if isinstance(hidden, np.ndarray) else hidden.float()
        cross = self.graphs["decoder_cross"].infer({"encoder_hidden": self._to_device(hidden)})
        cross_k, cross_v = cross["cross_k"], cross["cross_v"]
        if group > 1:  # project once per window, then repeat the keys/values per beam
            cross_k, cross_v = _repeat(cross_k, group, 1), _repeat(cross_v, group, 1)
        self._check_batch(cross_k.shape[1])
        return cross_k, cross_v

    def _session(self, cross_k: Any, cross_v: Any):
        return GraphDecoderSession(self.graphs["decoder_step"], cross_k, cross_v, self._graphs.to_device)

    def close(self) -> None:
        if self._graphs is not None:
            self._graphs.close()

    def describe(self) -> dict:
        info = super().describe()
        info["engine_dir"] = str(self.export.directory)
        if self._graphs is not None:
            info.update(self._graphs.info)
        return info
