"""Prune configs and tiny.en dims shared by the plugin and engine tests (no model loading)."""

from __future__ import annotations

from whisper_eas.config import PruneConfig
from whisper_eas.defaults import shipped_config
from whisper_eas.exporter.graph_specs import ModelDims

TINY = ModelDims(n_mels=80, n_frames=1500, d_model=384, encoder_layers=4, encoder_heads=6, decoder_layers=4,
                 decoder_heads=6, vocab_size=51864, max_target_positions=448)
SHIPPED = shipped_config("tiny.en")  # the shipped default: a fixed-ratio coverage + merge config
K = SHIPPED.keep_count(TINY.n_frames)  # frames it keeps per window
ADAPTIVE = PruneConfig(layer=2, keep_ratio=None, mass=0.95, strategy="coverage", min_keep=0.2, max_keep=0.6,
                       uniform_floor=0.3, merge=True)
