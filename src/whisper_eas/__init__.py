"""whisper-eas: faster Whisper by early attentive sparsification of the encoder.

Public API:
    PruneConfig            where and how much to sparsify
    sparsified             context manager: an HF Whisper model with its encoder pruned
    apply_sparsification   install pruning on a long-lived model
    Transcriber            files or arrays in, `TranscriptionResult` out
    load_whisper           an HF Whisper model from a name (tiny.en, base) or folder
"""

from whisper_eas.config import PruneConfig
from whisper_eas.sparsify import apply_sparsification, sparsified

__version__ = "0.1.0"


def __getattr__(name: str):
    # heavy imports on first use only
    if name == "Transcriber":
        from whisper_eas.transcribe import Transcriber

        return Transcriber
    if name == "load_whisper":
        from whisper_eas.checkpoints.loading import load_whisper

        return load_whisper
    raise AttributeError(name)


__all__ = ["PruneConfig", "Transcriber", "apply_sparsification", "load_whisper", "sparsified", "__version__"]
