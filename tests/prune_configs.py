"""Prune configs and tiny.en dims shared by the plugin and engine tests (no model loading)."""

from __future__ import annotations

from whisper_eas.config import PruneConfig
from whisper_eas.exporter.graph_specs import ModelDims

TINY = ModelDims(n_mels=80, n_frames=1500, d_model=384, encoder_layers=4, encoder_heads=6, decoder_layers=4,
                 decoder_heads=6, vocab_size=51864, max_target_positions=448)
# A fixed-ratio coverage + merge config (base's shipped form at tiny.en's layer 1; tiny.en's default
# until speech-val showed it costs +1.04 WER points: tiny.en now ships dense).
COVERAGE = PruneConfig.parse("coverage@4+merge L1 k0.5")
K = COVERAGE.keep_count(TINY.n_frames)  # frames it keeps per window
ADAPTIVE = PruneConfig(layer=2, keep_ratio=None, mass=0.95, strategy="coverage", min_keep=0.2, max_keep=0.6,
                       uniform_floor=0.3, merge=True)
