"""Every exported graph's inputs, outputs and dynamic axes, as data, in one place.

Like optimum's `WhisperOnnxConfig`: the exporter, the manifest, the ONNX Runtime runner, the
Polygraphy validation and (later) TensorRT profiles all read names and shapes from here, so a
renamed tensor cannot drift between them. A string in a shape is a named dynamic axis; an int is
static.

Graphs of one export folder (the encoder is split at the sparsification layer L):

    encoder_head   mel -> hidden after block L (+ per-frame attention scores)
    prune          hidden (+ scores) -> kept hidden and kept frame indices, time order
    encoder_tail   blocks L+1..N + final layer norm, any sequence length
    decoder_cross  encoder output -> per-layer cross-attention keys/values (once per window)
    decoder_step   tokens + self-attention cache + cross k/v -> logits + grown cache

A dense export splits at L = 0 (the head is the convolution stem) and has no prune graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from whisper_eas.config import PruneConfig
from whisper_eas.tokenizer import is_multilingual

DECODER_EXPORT_VERSION = "3"  # bump when the decoder graphs change for the same weights (cache keys read it)
ALIGN_FILE = "align.onnx"  # the word-alignment graph (`align_graph.py`), beside the graphs below
# int8-dec folders: the decoder step at int8-proj precision (float32 layers, exact greedy choices), which
# re-decodes the windows the guard flags (`runners.exact_step`)
EXACT_STEP_FILE = "decoder_step_exact.onnx"

N_MEL_FRAMES = 3000  # log-mel frames in a 30 s window
SPEECH_BOUNDS = "speech_bounds"  # prune input of configs that read the audio, computed on the host
# The encoder self-attention of an export: standard ONNX ops, or one ONNX Runtime MultiHeadAttention
# node per block (exporter.fused_attention; CPU only, opt-in).
ATTENTIONS = ("standard", "fused")
BATCH = "batch"

# The frame-pruning op as a single custom node, for runtimes that take a plugin (TensorRT): the
# node's op type is the plugin name and its domain the plugin namespace (`whisper_eas::AttentivePrune`).
# `exporter/prune_graph.py` builds the standard-op form; `plugins/onnx_plugin_node.py` the plugin form.
PRUNE_PLUGIN_OP = "AttentivePrune"
PRUNE_PLUGIN_DOMAIN = "whisper_eas"
PRUNE_PLUGIN_VERSION = 1


@dataclass(frozen=True)
class ModelDims:
    """The shapes of one Whisper model that the graphs depend on."""

    n_mels: int
    n_frames: int  # encoder frames per window (1500)
    d_model: int
    encoder_layers: int
    encoder_heads: int
    decoder_layers: int
    decoder_heads: int
    vocab_size: int
    max_target_positions: int

    @property
    def decoder_head_dim(self) -> int:
        return self.d_model // self.decoder_heads

    @property
    def multilingual(self) -> bool:
        return is_multilingual(self.vocab_size)

    @classmethod
    def from_hf_config(cls, config: Any) -> "ModelDims":
        return cls(
            n_mels=config.num_mel_bins,
            n_frames=config.max_source_positions,
            d_model=config.d_model,
            encoder_layers=config.encoder_layers,
            encoder_heads=config.encoder_attention_heads,
            decoder_layers=config.decoder_layers,
            decoder_heads=config.decoder_attention_heads,
            vocab_size=config.vocab_size,
            max_target_positions=config.max_target_positions,
        )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: float32, int64
    shape: tuple[int | str, ...]

    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """The `dynamic_axes` argument of `torch.onnx.export`."""
        axes = {t.name: t.dynamic_axes() for t in (*self.inputs, *self.outputs)}
        return {name: a for name, a in axes.items() if a}

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }


def encoder_head(dims: ModelDims, with_scores: bool, batch: int | str = BATCH) -> GraphSpec:
    outputs = [TensorSpec("head_hidden", "float32", (batch, dims.n_frames, dims.d_model))]
    if with_scores:
        outputs.append(TensorSpec("frame_scores", "float32", (batch, dims.n_frames)))
    mel = TensorSpec("mel", "float32", (batch, dims.n_mels, N_MEL_FRAMES))
    return GraphSpec("encoder_head", (mel,), tuple(outputs))


def prune(dims: ModelDims, config: PruneConfig, batch: int | str = BATCH) -> GraphSpec:
    """Kept count is static for a fixed ratio over the whole window and a named dynamic axis for
    per-window counts (adaptive, dropped padding). Configs that read the audio take the window's
    `speech_bounds` (speech onset, content end; encoder frames) as a third input."""
    kept: int | str = "kept" if config.per_input else config.keep_count(dims.n_frames)
    inputs = [TensorSpec("head_hidden", "float32", (batch, dims.n_frames, dims.d_model))]
    if config.uses_attention:
        inputs.append(TensorSpec("frame_scores", "float32", (batch, dims.n_frames)))
    if config.needs_audio:
        inputs.append(TensorSpec(SPEECH_BOUNDS, "int64", (batch, 2)))
    outputs = (
        TensorSpec("kept_hidden", "float32", (batch, kept, dims.d_model)),
        TensorSpec("kept_index", "int64", (batch, kept)),
    )
    return GraphSpec("prune", tuple(inputs), outputs)


def encoder_tail(dims: ModelDims, batch: int | str = BATCH) -> GraphSpec:
    return GraphSpec(
        "encoder_tail",
        (TensorSpec("tail_input", "float32", (batch, "frames", dims.d_model)),),
        (TensorSpec("encoder_hidden", "float32", (batch, "frames", dims.d_model)),),
    )


def _cache(name: str, dims: ModelDims, batch: int | str, length: str, stacked: bool) -> TensorSpec:
    shape = (batch, dims.decoder_heads, length, dims.decoder_head_dim)
    return TensorSpec(name, "float32", (dims.decoder_layers, *shape) if stacked else shape)


def _per_layer(prefix: str, dims: ModelDims, batch: int | str, length: str) -> list[TensorSpec]:
    return [_cache(f"{prefix}_{i}", dims, batch, length, stacked=False) for i in range(dims.decoder_layers)]


def decoder_cross(dims: ModelDims, batch: int | str = BATCH) -> GraphSpec:
    """Stacked [L, B, H, S, Dh] outputs: runtimes take per-layer views of them without copies."""
    return GraphSpec(
        "decoder_cross",
        (TensorSpec("encoder_hidden", "float32", (batch, "frames", dims.d_model)),),
        (_cache("cross_k", dims, batch, "frames", True), _cache("cross_v", dims, batch, "frames", True)),
    )


def decoder_step(dims: ModelDims, batch: int | str = BATCH) -> GraphSpec:
    """One cache tensor per layer [B, H, S, Dh]: stacked caches would be split (copied) every step.

    `offset` is the position of the first new token (a scalar; the past length in practice);
    `logit_positions` the new tokens whose logits are returned (a prompt step needs one or two).
    """
    inputs = [TensorSpec("tokens", "int64", (batch, "new")), TensorSpec("offset", "int64", ()),
              TensorSpec("logit_positions", "int64", ("wanted",))]
    inputs += _per_layer("self_k", dims, batch, "past") + _per_layer("self_v", dims, batch, "past")
    inputs += _per_layer("cross_k", dims, batch, "frames") + _per_layer("cross_v", dims, batch, "frames")
    outputs = [TensorSpec("logits", "float32", (batch, "wanted", dims.vocab_size))]
    outputs += _per_layer("new_self_k", dims, batch, "total") + _per_layer("new_self_v", dims, batch, "total")
    return GraphSpec("decoder_step", tuple(inputs), tuple(outputs))


def split_layer(config: PruneConfig | None) -> int:
    """Blocks inside the head: the scoring layer, or 0 (convolution stem only) when dense."""
    return config.layer if config is not None else 0


def export_specs(dims: ModelDims, config: PruneConfig | None, batch: int | str = BATCH) -> dict[str, GraphSpec]:
    """The graphs of one export folder, in execution order."""
    specs = [encoder_head(dims, config is not None and config.uses_attention, batch)]
    if config is not None:
        specs.append(prune(dims, config, batch))
    specs += [encoder_tail(dims, batch), decoder_cross(dims, batch), decoder_step(dims, batch)]
    return {s.name: s for s in specs}


ENCODER_GRAPHS = ("encoder_head", "prune", "encoder_tail")
DECODER_GRAPHS = ("decoder_cross", "decoder_step")
