"""tiny.en exported once (dense and layer 1 keep 0.5), shared by the ONNX tests.

The folders are kept in the model cache (`$WHISPER_EAS_HOME/test-exports/`) under a key that holds
a digest of every source file of the package under test and the exporting libraries' versions: a
run on unchanged code reuses the folder an earlier run exported (the export is a function of the
code, the weights and those versions), and any change to the code exports afresh, so the tests
always check what the current exporter writes. A fresh cache (CI) exports each config once, as
before.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from whisper_eas.config import PruneConfig

SPARSE = PruneConfig(layer=1, keep_ratio=0.5)
_EXPORTS: dict[str, Path] = {}
_STALE_S = 2 * 3600  # folders of other code versions unused this long are removed (~0.4 GB each)


@lru_cache(maxsize=1)
def _source_digest() -> str:
    """Every file of the imported `whisper_eas` package (code and data) and the exporting libraries."""
    import whisper_eas

    root = Path(whisper_eas.__file__).parent
    digest = hashlib.sha256()
    for package in ("torch", "transformers", "onnx", "onnxruntime", "numpy"):
        try:
            digest.update(f"{package}={metadata.version(package)}|".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package}=absent|".encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".py", ".json")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def _verified(folder: Path) -> bool:
    from whisper_eas.exporter.manifest import ExportError, ExportManifest

    try:
        ExportManifest.load(folder, verify=True)  # every file's sha256 against the manifest
    except (ExportError, OSError, ValueError):
        return False
    return True


def _drop_stale(parent: Path, keep: Path) -> None:
    for other in parent.glob(f"{keep.name.rsplit('-', 1)[0]}-*"):
        try:
            if other != keep and time.time() - other.stat().st_mtime > _STALE_S:
                shutil.rmtree(other, ignore_errors=True)
        except OSError:
            pass


def exported(tmp_path_factory, model, config: PruneConfig | None, attention: str = "standard") -> Path:
    """Export folder for `config` (None: dense) with the encoder's `attention` ops; the decoder
    graphs come from the model's cache. Tests never write into it: they edit a `linked_copy`."""
    from whisper_eas.checkpoints.registry import cache_home
    from whisper_eas.exporter.export import export_model
    from whisper_eas.io_utils import build_folder

    key = (config.format().replace(" ", "-") if config else "dense") + ("" if attention == "standard" else f"-{attention}")
    if key not in _EXPORTS:
        folder = cache_home() / "test-exports" / f"tiny.en-{key}-{_source_digest()}"
        if not _verified(folder):
            build_folder(folder, lambda private: export_model("tiny.en", config, private, hf_model=model,
                                                              attention=attention), _verified)
            _drop_stale(folder.parent, folder)
        os.utime(folder)  # in use: another session's clean-up leaves it
        _EXPORTS[key] = folder
    return _EXPORTS[key]


def linked_copy(src: Path, dst: Path, copy: tuple[str, ...] = ("manifest.json",)) -> Path:
    """A copy of an export folder: `copy` files are real copies (to edit), the rest hard links (a
    symlink leading out of the folder is refused by the manifest check, as it should be)."""
    dst.mkdir(parents=True)
    for path in src.iterdir():
        if path.name in copy:
            shutil.copy2(path, dst / path.name)
        else:
            try:
                os.link(path, dst / path.name)
            except OSError:  # another filesystem
                shutil.copy2(path, dst / path.name)
    return dst


def serve_graphs() -> Path:
    """The export folder `whisper-eas serve` runs by default: the serve row's config and precision,
    which can differ from the sequential row's (the CLI reference of the service's texts runs it)."""
    from whisper_eas.defaults import default_precision, shipped_config
    from whisper_eas.runners.cached_export import cached_export

    config = shipped_config("tiny.en", serve=True)
    return cached_export("tiny.en", config, default_precision("tiny.en", serve=True)).folder
