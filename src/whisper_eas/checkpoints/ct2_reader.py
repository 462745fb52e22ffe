"""Reader for CTranslate2's `model.bin` format.

CTranslate2 stores a flat list of named tensors (see `ctranslate2/specs/model_spec.py`,
`ModelSpec._serialize`). We read it directly so converting a faster-whisper model needs neither
ctranslate2 nor a network connection.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from whisper_eas.errors import WhisperEasError

# Order matches the DataType enum in ctranslate2/types.h.
_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # None: bfloat16


class CT2FormatError(WhisperEasError, ValueError):
    """A model.bin that is not a CTranslate2 model we can read."""


def _read(f: BinaryIO, fmt: str, path: Path) -> tuple:
    size = struct.calcsize(fmt)
    raw = f.read(size)
    if len(raw) != size:
        raise CT2FormatError(f"{path}: truncated CTranslate2 model (unexpected end of file)")
    return struct.unpack("<" + fmt, raw)


def _read_string(f: BinaryIO, path: Path) -> str:
    (length,) = _read(f, "H", path)
    raw = f.read(length)
    if len(raw) != length:
        raise CT2FormatError(f"{path}: truncated CTranslate2 model (unexpected end of file)")
    return raw[:-1].decode("utf-8")


def read_ct2_model(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """Return (spec name, {variable name: array}); aliases resolve to the same array."""
    path = Path(path)
    variables: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        (version,) = _read(f, "I", path)
        if version < 5 or version > 6:
            raise CT2FormatError(f"{path}: unsupported CTranslate2 binary version {version} (need 5-6)")
        spec = _read_string(f, path)
        _read(f, "I", path)  # spec revision
        (count,) = _read(f, "I", path)
        for _ in range(count):
            name = _read_string(f, path)
            (rank,) = _read(f, "B", path)
            shape = _read(f, "I" * rank, path) if rank else ()
            (type_id,) = _read(f, "B", path)
            (num_bytes,) = _read(f, "I", path)
            raw = f.read(num_bytes)
            if len(raw) != num_bytes:
                raise CT2FormatError(f"{path}: truncated CTranslate2 model in variable {name!r}")
            variables[name] = _decode(raw, type_id, shape, name, path)
        (n_aliases,) = _read(f, "I", path)
        for _ in range(n_aliases):
            alias, target = _read_string(f, path), _read_string(f, path)
            variables[alias] = variables[target]
    return spec, variables


def _decode(raw: bytes, type_id: int, shape: tuple, name: str, path: Path) -> np.ndarray:
    if type_id >= len(_DTYPES):
        raise CT2FormatError(f"{path}: variable {name!r} has unknown dtype id {type_id}")
    dtype = _DTYPES[type_id]
    if dtype is None:  # bfloat16: widen to float32 through the upper half of the bits
        bits = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=dtype).reshape(shape)
