"""One runner over the graphs of an export folder, whatever executes them (Polygraphy's split).

A loader (`onnx_graphs.load_onnx_graphs`, `engine_graphs.load_engine_graphs`) turns a folder into
`LoadedGraphs`: the export manifest, the tokenizer and one `GraphCall` per graph, each a plain
`infer(feed) -> dict` over torch tensors. `GraphRunner` drives them: encoder head -> prune ->
tail (`dense=True`: head -> tail on all frames), cross keys/values once per window, then one
decoder-step call per step with one self-attention cache tensor per layer. The ONNX Runtime runner
keeps its IO-binding decoder session as a specialisation (`ort_runner.OrtRunner`).

Creating a runner reads the manifest and tokenizer only; `load()` (or the first encode) builds
the sessions or deserializes the engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch

from whisper_eas.errors import ConfigError
from whisper_eas.exporter.graph_specs import SPEECH_BOUNDS
from whisper_eas.exporter.manifest import TOKENIZER, ExportManifest
from whisper_eas.runners.base import EncodedBatch, Runner, encode_in_chunks
from whisper_eas.selection import speech_bounds
from whisper_eas.tokenizer import WhisperTokenizer


class GraphCall(Protocol):
    """One loaded graph: named torch tensors in, named torch tensors out."""

    def infer(self, feed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...


@dataclass
class LoadedGraphs:
    """What a loader returns: one call per graph of `export`, on `device`."""

    export: ExportManifest
    calls: dict[str, GraphCall]
    device: str = "cpu"
    info: dict = field(default_factory=dict)  # backend facts for `describe()` (TensorRT version, GPU...)
    close: Callable[[], None] = lambda: None


class GraphDecoderSession:
    """Decoding state of one batch: per-layer self cache as tensors, cross k/v fixed per window."""

    def __init__(self, step: GraphCall, cross_k: torch.Tensor, cross_v: torch.Tensor):
        self.step_graph = step
        self.n_layers = cross_k.shape[0]
        layers = range(self.n_layers)
        self.cross = {**{f"cross_k_{i}": cross_k[i] for i in layers}, **{f"cross_v_{i}": cross_v[i] for i in layers}}
        rows, heads, _, head_dim = cross_k.shape[1:]
        # zero positions, but a real address: TensorRT rejects null pointers for empty tensors
        empty = torch.zeros(rows, heads, 1, head_dim, device=cross_k.device, dtype=cross_k.dtype)[:, :, :0]
        self.cache = {f"self_{kv}_{i}": empty for kv in "kv" for i in layers}
        self.offset = 0

    def step(self, tokens: torch.Tensor, positions: Sequence[int] | None = None) -> torch.Tensor:
        device = next(iter(self.cross.values())).device
        wanted = torch.tensor(range(tokens.shape[1]) if positions is None else positions, device=device)
        feed = {"tokens": tokens.to(device, torch.long), "offset": torch.tensor(self.offset, device=device),
                "logit_positions": wanted, **self.cache, **self.cross}
        outputs = self.step_graph.infer(feed)
        self.cache = {name: outputs[f"new_{name}"] for name in self.cache}
        self.offset += tokens.shape[1]
        return outputs["logits"]

    def reorder(self, index: torch.Tensor) -> None:
        index = index.to(next(iter(self.cache.values())).device)
        self.cache = {name: value.index_select(0, index) for name, value in self.cache.items()}

    def select(self, rows: torch.Tensor) -> None:
        self.reorder(rows)
        rows = rows.to(next(iter(self.cross.values())).device)
        self.cross = {name: value.index_select(0, rows) for name, value in self.cross.items()}


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

    @torch.inference_mode()
    def encode(self, mel: torch.Tensor, dense: bool = False) -> EncodedBatch:
        self._check_batch(mel.shape[0])
        rows = self.encoder_batch if isinstance(self.export.batch, str) else None  # static: as exported
        return encode_in_chunks(lambda m: self._encode(m, dense), mel, rows, self.prune, dense)

    def _encode(self, mel: torch.Tensor, dense: bool) -> EncodedBatch:
        graphs = self.graphs
        head = graphs["encoder_head"].infer({"mel": mel.to(self.device, torch.float32)})
        hidden, kept = head["head_hidden"], None
        if self.prune is not None and not dense:
            names = self.export.graphs["prune"].input_names
            if SPEECH_BOUNDS in names:  # the audio's extent, from the features as the PyTorch hooks read it
                return self._encode_regions(mel, head, names)
            pruned = graphs["prune"].infer({name: head[name] for name in names})
            hidden, kept = pruned["kept_hidden"], pruned["kept_index"].cpu()
        hidden = graphs["encoder_tail"].infer({"tail_input": hidden})["encoder_hidden"]
        return EncodedBatch(hidden, kept, n_frames=self.dims.n_frames)

    def _encode_regions(self, mel: torch.Tensor, head: dict, names: list[str]) -> EncodedBatch:
        """Prune graphs that take `speech_bounds` keep a count per window: one window at a time
        (a batch of unequal counts comes back padded, which only the PyTorch decoder takes)."""
        graphs, parts = self.graphs, []
        bounds = speech_bounds(mel.cpu()).to(self.device)
        for row in range(mel.shape[0]):
            feed = {name: head[name][row : row + 1] for name in names if name != SPEECH_BOUNDS}
            pruned = graphs["prune"].infer({**feed, SPEECH_BOUNDS: bounds[row : row + 1]})
            hidden = graphs["encoder_tail"].infer({"tail_input": pruned["kept_hidden"]})["encoder_hidden"]
            parts.append(EncodedBatch(hidden, pruned["kept_index"].cpu(), n_frames=self.dims.n_frames))
        if len({part.n_kept for part in parts}) > 1:
            return EncodedBatch.padded(parts)
        return EncodedBatch.concat(parts)

    @torch.inference_mode()
    def decoder(self, encoded: EncodedBatch, group: int = 1):
        if encoded.frame_mask is not None:
            raise ConfigError(f"{self.backend}: padded batches (EncodedBatch.padded) decode on the pytorch runner only")
        hidden = torch.as_tensor(encoded.hidden).to(self.device, torch.float32)
        cross = self.graphs["decoder_cross"].infer({"encoder_hidden": hidden})
        cross_k, cross_v = cross["cross_k"], cross["cross_v"]
        if group > 1:  # project once per window, then repeat the keys/values per beam
            cross_k, cross_v = cross_k.repeat_interleave(group, dim=1), cross_v.repeat_interleave(group, dim=1)
        self._check_batch(cross_k.shape[1])
        return self._session(cross_k, cross_v)

    def _session(self, cross_k: torch.Tensor, cross_v: torch.Tensor):
        return GraphDecoderSession(self.graphs["decoder_step"], cross_k, cross_v)

    def close(self) -> None:
        if self._graphs is not None:
            self._graphs.close()

    def describe(self) -> dict:
        info = super().describe()
        info["engine_dir"] = str(self.export.directory)
        if self._graphs is not None:
            info.update(self._graphs.info)
        return info
