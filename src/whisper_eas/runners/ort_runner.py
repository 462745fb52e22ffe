"""ONNX Runtime backend: runs an export folder (`whisper-eas export`) behind the `Runner` interface.

Encoder: head -> prune -> tail (`dense=True`: head -> tail on all frames). Decoder: cross keys and
values are computed once per window; each step feeds the self-attention cache back as ORT values
through IO binding, so the only per-step copy of the cache is the concatenation inside the graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from whisper_eas.exporter.manifest import TOKENIZER, ExportError, ExportManifest
from whisper_eas.runners.base import EncodedBatch, Runner, encode_in_chunks
from whisper_eas.tokenizer import WhisperTokenizer


def _ort():
    try:
        import onnxruntime
    except ImportError as error:
        raise RuntimeError("the onnxruntime backend needs onnxruntime: pip install 'whisper-eas[onnx]'") from error
    return onnxruntime


def session_options(threads: int | None = None, spin: bool = False) -> Any:
    """CPU defaults: all graph optimizations, sequential execution, `threads` intra-op threads.

    Each graph has its own thread pool and the runner alternates between five of them (and Python
    decoding steps): idle pools that spin steal the cores the running one needs (measured 20%
    slower end to end on a shared 2-core machine), so spinning is off unless asked for.
    """
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
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


class OrtDecoderSession:
    """Decoding state of one batch: per-layer self cache as ORT values, cross k/v fixed per window.

    Every input is bound as an `OrtValue` (the cross keys/values are zero-copy views of the cross
    graph's stacked output), and each step's new cache is bound as the next step's input as it is.
    """

    def __init__(self, session: Any, cross: tuple[np.ndarray, np.ndarray], empty_cache: np.ndarray):
        self._ort = _ort()
        value = self._ort.OrtValue.ortvalue_from_numpy
        self.session = session
        self.n_layers = cross[0].shape[0]
        # views keep the stacked arrays alive through their .base
        self.cross = {f"cross_{kv}_{i}": value(c[i]) for kv, c in zip("kv", cross) for i in range(self.n_layers)}
        self.cache = {f"self_{kv}_{i}": value(empty_cache) for kv in "kv" for i in range(self.n_layers)}
        self.offset = 0
        self._binding = session.io_binding()
        self._outputs = [o.name for o in session.get_outputs()]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        binding = self._binding
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        binding.bind_cpu_input("tokens", np.ascontiguousarray(tokens.cpu().numpy(), dtype=np.int64))
        binding.bind_cpu_input("offset", np.array(self.offset, dtype=np.int64))
        for name, ort_value in (*self.cache.items(), *self.cross.items()):
            binding.bind_ortvalue_input(name, ort_value)
        for name in self._outputs:
            binding.bind_output(name)
        self.session.run_with_iobinding(binding)
        logits, *caches = binding.get_outputs()
        self.cache = dict(zip(self.cache, caches))  # new_self_k_i / new_self_v_i in input order
        self.offset += tokens.shape[1]
        return torch.from_numpy(logits.numpy())

    def reorder(self, index: torch.Tensor) -> None:
        self.cache = self._gather(self.cache, index)

    def select(self, rows: torch.Tensor) -> None:
        self.cache, self.cross = self._gather(self.cache, rows), self._gather(self.cross, rows)

    def _gather(self, values: dict, index: torch.Tensor) -> dict:
        rows = index.cpu().numpy()
        value = self._ort.OrtValue.ortvalue_from_numpy
        return {name: value(np.ascontiguousarray(v.numpy()[rows])) for name, v in values.items()}


class OrtRunner(Runner):
    """Runs the graphs of one export folder; model and prune config come from its manifest.

    The encoder runs `encoder_batch` windows at a time inside a larger batch (see
    `encode_in_chunks`); the decoder step is what gains from batching.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        engine_dir: str | Path,
        threads: int | None = None,
        providers: list[str] | None = None,
        verify: bool = True,
        spin: bool = False,
        encoder_batch: int = 1,
    ):
        self.encoder_batch = max(1, encoder_batch)
        self.manifest = ExportManifest.load(engine_dir, verify=verify)
        dims = self.manifest.dims
        self.dims, self.prune, self.model_name = dims, self.manifest.config, self.manifest.model
        self.n_mels, self.device = dims.n_mels, "cpu"
        self.tokenizer = WhisperTokenizer.from_file(Path(engine_dir) / TOKENIZER, multilingual=dims.multilingual)
        options = session_options(threads, spin)
        providers = providers or ["CPUExecutionProvider"]
        self.sessions = {name: load_session(self.manifest, name, options, providers) for name in self.manifest.graphs}

    def _check_batch(self, rows: int) -> None:
        static = self.manifest.batch
        if isinstance(static, int) and rows != static:
            raise ValueError(f"{self.manifest.directory}: exported with a static batch of {static}, got {rows} rows "
                             "(export with --batch dynamic, or feed that many windows)")

    def encode(self, mel: torch.Tensor, dense: bool = False) -> EncodedBatch:
        self._check_batch(mel.shape[0])
        rows = self.encoder_batch if isinstance(self.manifest.batch, str) else None  # static: as exported
        return encode_in_chunks(lambda m: self._encode(m, dense), mel, rows, self.prune, dense)

    def _encode(self, mel: torch.Tensor, dense: bool) -> EncodedBatch:
        feed = np.ascontiguousarray(mel.detach().cpu().numpy(), dtype=np.float32)
        head = self.sessions["encoder_head"].run(None, {"mel": feed})
        hidden, kept = head[0], None
        if self.prune is not None and not dense:
            names = self.manifest.graphs["prune"].input_names
            hidden, index = self.sessions["prune"].run(None, dict(zip(names, head)))
            kept = torch.from_numpy(index)
        hidden = self.sessions["encoder_tail"].run(None, {"tail_input": hidden})[0]
        return EncodedBatch(hidden, kept, n_frames=self.dims.n_frames)

    def decoder(self, encoded: EncodedBatch, group: int = 1) -> OrtDecoderSession:
        if encoded.frame_mask is not None:
            raise ValueError(f"{self.backend}: padded batches (EncodedBatch.padded) decode on the pytorch runner only")
        hidden = np.ascontiguousarray(np.asarray(encoded.hidden, dtype=np.float32))
        cross_k, cross_v = self.sessions["decoder_cross"].run(None, {"encoder_hidden": hidden})
        if group > 1:  # project once per window, then repeat the keys/values per beam
            cross_k, cross_v = np.repeat(cross_k, group, axis=1), np.repeat(cross_v, group, axis=1)
        self._check_batch(cross_k.shape[1])
        d = self.dims
        empty = np.zeros((cross_k.shape[1], d.decoder_heads, 0, d.decoder_head_dim), np.float32)
        return OrtDecoderSession(self.sessions["decoder_step"], (cross_k, cross_v), empty)

    def describe(self) -> dict:
        info = super().describe()
        info["engine_dir"] = str(self.manifest.directory)
        return info
