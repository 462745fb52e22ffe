"""`engines.json` beside the engines: what was built, from which ONNX files, for which TensorRT and GPU.

A serialized engine only loads on the TensorRT version and GPU model it was built for, and only
means something for the ONNX files it was built from. Loading checks all three before TensorRT
sees a byte, so a mismatch is one clear line ending in the command that rebuilds the folder
instead of a deserialization failure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from whisper_eas.config import PruneConfig, format_prune
from whisper_eas.exporter.manifest import ExportError, ExportManifest, file_inside, read_manifest_json
from whisper_eas.io_utils import sha256_file

ENGINE_MANIFEST = "engines.json"
FORMAT = "whisper-eas-trt"
FORMAT_VERSION = 1


class EngineError(ExportError):
    """An engine folder that cannot be used as it is; the message names the file and the fix."""


@dataclass(frozen=True)
class Platform:
    """What a serialized engine is tied to: the TensorRT version and the GPU model."""

    tensorrt: str
    gpu: str
    compute_capability: str  # "9.0"

    @classmethod
    def current(cls, device: int = 0) -> "Platform":
        """This process's TensorRT and GPU (raises `TensorRTMissingError` without them)."""
        import torch

        from whisper_eas.deps import require_cuda, require_tensorrt

        trt = require_tensorrt()
        require_cuda()
        major, minor = torch.cuda.get_device_capability(device)
        return cls(trt.__version__, torch.cuda.get_device_name(device), f"{major}.{minor}")

    def differences(self, other: "Platform") -> list[str]:
        """Human-readable mismatches between the build platform (self) and `other`."""
        found = []
        if self.tensorrt != other.tensorrt:
            found.append(f"TensorRT {self.tensorrt} (this machine: {other.tensorrt})")
        if self.compute_capability != other.compute_capability:
            found.append(f"compute capability {self.compute_capability} (this GPU: {other.compute_capability})")
        if self.gpu != other.gpu:
            found.append(f"GPU {self.gpu} (this GPU: {other.gpu})")
        return found


@dataclass(frozen=True)
class EngineEntry:
    """One engine file, the ONNX file it was built from, and its optimization profile."""

    file: str
    sha256: str
    source: str
    source_sha256: str
    profile: dict[str, list[list[int]]]  # input -> [min, opt, max] shapes

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EngineEntry":
        return cls(str(data["file"]), str(data["sha256"]), str(data["source"]), str(data["source_sha256"]),
                   {k: [list(s) for s in v] for k, v in data["profile"].items()})


@dataclass
class EngineManifest:
    """The contents of `engines.json`; `directory` is the export folder that holds the engines."""

    directory: Path
    model: str
    config: PruneConfig | None
    platform: Platform
    engine_config: dict[str, Any]
    engines: dict[str, EngineEntry]  # graph -> entry
    prune_form: str | None = None  # "plugin" | "standard" | None (dense)
    plugin_aot: bool = False
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.directory / ENGINE_MANIFEST

    def engine_path(self, graph: str) -> Path:
        return self.directory / self.engines[graph].file

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "config": self.config.to_dict() if self.config else None,
            "prune": format_prune(self.config),  # the same config in the one text form (read: "config")
            "platform": asdict(self.platform),
            "precision": "fp16" if self.engine_config.get("fp16", True) else "fp32",
            "engine_config": self.engine_config,
            "prune_form": self.prune_form,
            "plugin_aot": self.plugin_aot,
            "engines": {graph: asdict(entry) for graph, entry in self.engines.items()},
            "versions": self.versions,
        }

    def write(self) -> Path:
        from whisper_eas.io_utils import atomic_write_json

        return atomic_write_json(self.path, self.to_dict())

    @classmethod
    def load(cls, directory: str | Path) -> "EngineManifest":
        directory = Path(directory)
        path = directory / ENGINE_MANIFEST
        missing = (f"{directory} holds no TensorRT engines; build them with "
                   f"`whisper-eas export ... --out {directory} --engines`")
        data = read_manifest_json(path, FORMAT, FORMAT_VERSION, EngineError, missing,
                                  lambda old: rebuild_hint(old.get("model", "?"), None, directory))
        try:
            return cls(
                directory=directory,
                model=str(data["model"]),
                config=PruneConfig.from_dict(data["config"]) if data["config"] is not None else None,
                platform=Platform(**data["platform"]),
                engine_config=dict(data["engine_config"]),
                engines={g: EngineEntry.from_dict(e) for g, e in data["engines"].items()},
                prune_form=data.get("prune_form"),
                plugin_aot=bool(data.get("plugin_aot", False)),
                versions=dict(data.get("versions", {})),
            )
        except KeyError as error:
            raise EngineError(f"{path}: missing key {error}") from None
        except (TypeError, ValueError) as error:
            raise EngineError(f"{path}: invalid entry ({error})") from None

    def rebuild(self) -> str:
        return rebuild_hint(self.model, self.config, self.directory)

    def check_platform(self, platform: Platform) -> None:
        """Engines built for another TensorRT version or GPU: one error with the rebuild command."""
        differences = self.platform.differences(platform)
        if differences:
            raise EngineError(f"{self.path}: engines were built for {'; '.join(differences)}; {self.rebuild()}")

    def check_sources(self, export: ExportManifest) -> None:
        """Every engine was built from the ONNX files, and for the config, the export folder holds now."""
        if (self.model, self.config) != (export.model, export.config):
            built, exported = (format_prune(c) for c in (self.config, export.config))
            hint = rebuild_hint(export.model, export.config, self.directory)
            raise EngineError(f"{self.path}: engines are for {self.model} [{built}], the export is "
                              f"{export.model} [{exported}]; {hint}")
        recorded = {**export.files}
        for graph, entry in self.engines.items():
            if graph not in export.graphs:
                raise EngineError(f"{self.path}: engine {entry.file} is for graph {graph!r}, which the export "
                                  f"does not have; {self.rebuild()}")
            current = recorded.get(entry.source) or _hash_if_present(self.directory / entry.source)
            if current != entry.source_sha256:
                raise EngineError(f"{self.directory / entry.source}: changed since {entry.file} was built from it; "
                                  f"{self.rebuild()}")
        missing = sorted(set(export.graphs) - set(self.engines))
        if missing:
            raise EngineError(f"{self.path}: no engine for {', '.join(missing)}; {self.rebuild()}")

    def check_files(self, hashes: bool = True) -> None:
        for entry in self.engines.values():
            path = file_inside(self.directory, entry.file, EngineError)
            if not path.is_file():
                raise EngineError(f"{path}: missing from the engine folder; {self.rebuild()}")
            if hashes and sha256_file(path) != entry.sha256:
                raise EngineError(f"{path}: sha256 differs from {ENGINE_MANIFEST} (changed after the build); "
                                  f"{self.rebuild()}")

    def check(self, export: ExportManifest, platform: Platform, hashes: bool = True) -> None:
        """Everything a runner needs before deserializing: platform, sources, files."""
        self.check_platform(platform)
        self.check_sources(export)
        self.check_files(hashes)


def _hash_if_present(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def rebuild_hint(model: str, config: PruneConfig | None, directory: str | Path) -> str:
    """The `whisper-eas export` command that rebuilds these engines: `--prune` takes `format_prune`'s text."""
    command = f"whisper-eas export --model {model} --prune '{format_prune(config)}' --out {directory} --engines"
    return f"rebuild with `{command}`"
