"""whisper-eas: faster Whisper by early attentive sparsification of the encoder.

Public API:
    PruneConfig            where and how much to sparsify
    sparsified             context manager: an HF Whisper model with its encoder pruned
    apply_sparsification   install pruning on a long-lived model
    Transcriber            files or arrays in, `TranscriptionResult` out
    load_whisper           an HF Whisper model from a name (tiny.en, base) or folder
    make_runner            a runner for a backend ("auto": the best here, `runner.reason` says why)
    WhisperEasError        the base of every error whisper-eas raises on purpose
"""

from whisper_eas.config import PruneConfig
from whisper_eas.errors import WhisperEasError

__version__ = "0.1.0"


def __getattr__(name: str):
    # heavy imports on first use only (PyTorch: the ONNX Runtime path never imports it)
    if name in ("sparsified", "apply_sparsification"):
        from whisper_eas import sparsify

        return getattr(sparsify, name)
    if name == "Transcriber":
        from whisper_eas.transcribe import Transcriber

        return Transcriber
    if name == "load_whisper":
        from whisper_eas.checkpoints.loading import load_whisper

        return load_whisper
    if name == "make_runner":
        from whisper_eas.runners.factory import make_runner

        return make_runner
    raise AttributeError(name)


__all__ = ["PruneConfig", "Transcriber", "WhisperEasError", "apply_sparsification", "load_whisper", "make_runner",
           "sparsified", "__version__"]
