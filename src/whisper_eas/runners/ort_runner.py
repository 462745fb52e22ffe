"""ONNX Runtime backend: `GraphRunner` over ONNX Runtime sessions, with an IO-binding decoder.

Encoder: head -> prune -> tail, as every graph runner (`runners.graphs`). Decoder: cross keys
and values are computed once per window; each step feeds the self-attention cache back as ORT
values through IO binding, so the only per-step copy of the cache is the concatenation inside
the graph.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from whisper_eas.exporter.graph_specs import EXACT_STEP_FILE
from whisper_eas.exporter.manifest import ExportManifest
from whisper_eas.runners.graphs import GraphRunner
from whisper_eas.runners.base import EncodedBatch
from whisper_eas.runners.onnx_graphs import _ort, file_session, load_onnx_graphs


class OrtDecoderSession:
    """Decoding state of one batch: per-layer self cache as ORT values, cross k/v fixed per window.

    Every input is bound as an `OrtValue` (the cross keys/values are zero-copy views of the cross
    graph's stacked output), and each step's new cache is bound as the next step's input as it is.
    """

    def __init__(self, session, cross: tuple[np.ndarray, np.ndarray], empty_cache: np.ndarray):
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

    def step(self, tokens: np.ndarray, positions: Sequence[int] | None = None) -> np.ndarray:
        binding = self._binding
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        wanted = np.arange(tokens.shape[1], dtype=np.int64) if positions is None else np.array(positions, np.int64)
        binding.bind_cpu_input("tokens", np.ascontiguousarray(tokens, dtype=np.int64))
        binding.bind_cpu_input("offset", np.array(self.offset, dtype=np.int64))
        binding.bind_cpu_input("logit_positions", wanted)
        for name, ort_value in (*self.cache.items(), *self.cross.items()):
            binding.bind_ortvalue_input(name, ort_value)
        for name in self._outputs:
            binding.bind_output(name)
        self.session.run_with_iobinding(binding)
        logits, *caches = binding.get_outputs()
        self.cache = dict(zip(self.cache, caches))  # new_self_k_i / new_self_v_i in input order
        self.offset += tokens.shape[1]
        return logits.numpy()

    def reorder(self, index: np.ndarray) -> None:
        self.cache = self._gather(self.cache, index)

    def select(self, rows: np.ndarray) -> None:
        self.cache, self.cross = self._gather(self.cache, rows), self._gather(self.cross, rows)

    def _gather(self, values: dict, rows: np.ndarray) -> dict:
        value = self._ort.OrtValue.ortvalue_from_numpy
        return {name: value(np.ascontiguousarray(v.numpy()[rows])) for name, v in values.items()}


class OrtRunner(GraphRunner):
    """Runs one export folder on ONNX Runtime (CPU); model and prune config come from its manifest.

    Creating it reads manifest.json and the tokenizer; the sessions are built (after every file's
    sha256 is checked, with `verify`) by `load()` or the first encode. The encoder runs
    `encoder_batch` windows at a time inside a larger batch (see `encode_in_chunks`); the decoder
    step is what gains from batching.
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
        export = ExportManifest.load(engine_dir, verify=False)
        loader = partial(load_onnx_graphs, export, threads, providers, spin, verify)
        super().__init__(export, loader, "cpu", max(1, encoder_batch))
        self.threads, self._providers, self._spin = threads, providers or ["CPUExecutionProvider"], spin
        self._exact_step = None  # built on the first window the guard re-decodes

    @property
    def approximate_decoder(self) -> bool:
        quantization = self.export.quantization
        return bool(quantization and quantization.weight_only_bits and EXACT_STEP_FILE in self.export.files)

    def exact_decoder(self, encoded: EncodedBatch, group: int = 1) -> OrtDecoderSession:
        """The folder's int8-proj step (float32 layers) over `encoded`: loaded on first use, since
        most files never need it, and kept for the runner's life."""
        if not self.approximate_decoder:
            return self.decoder(encoded, group)
        if self._exact_step is None:
            self._exact_step = file_session(self.export.directory, EXACT_STEP_FILE, self.threads, self._spin,
                                            self._providers)
        return self._bind(self._exact_step, *self._cross(encoded, group))

    @property
    def manifest(self) -> ExportManifest:
        return self.export

    def _session(self, cross_k: np.ndarray, cross_v: np.ndarray) -> OrtDecoderSession:
        return self._bind(self.graphs["decoder_step"].session, cross_k, cross_v)

    def _bind(self, step, cross_k: np.ndarray, cross_v: np.ndarray) -> OrtDecoderSession:
        d = self.dims
        empty = np.zeros((cross_k.shape[1], d.decoder_heads, 0, d.decoder_head_dim), np.float32)
        return OrtDecoderSession(step, (cross_k, cross_v), empty)
