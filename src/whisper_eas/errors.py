"""The one exception base of whisper-eas.

Every error the project raises on purpose derives from `WhisperEasError`, and most also from the
built-in type callers already catch (`ValueError` for bad input, `FileNotFoundError` for a
missing file, `RuntimeError` for a missing optional dependency). The CLI prints these as one line;
anything else is a bug and is printed with a hint to set `WHISPER_EAS_DEBUG=1` for the traceback.
"""

from __future__ import annotations

DEBUG_ENV = "WHISPER_EAS_DEBUG"


class WhisperEasError(Exception):
    """Base of every error whisper-eas raises on purpose: its message names the file and the problem."""


class ConfigError(WhisperEasError, ValueError):
    """Settings that contradict each other (e.g. command-line flags against a folder's manifest)."""


class InputError(WhisperEasError, ValueError):
    """Input data that cannot be used (a report, a manifest's recordings, a file's contents); the
    message names the file or item and the problem."""


class MissingDependencyError(WhisperEasError, RuntimeError):
    """An optional package (or the GPU it needs) is not available; the message says what to install."""
