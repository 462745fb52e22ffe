"""`manifest.json` beside the graphs: what was exported, from what, and how to check it.

Loading verifies the folder before any runtime touches it: the format, the graph list against
`graph_specs` (so a manifest edited by hand or written by another version is caught), every
file's presence and sha256. Every error names the file it is about.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from whisper_eas.config import PruneConfig, format_prune
from whisper_eas.errors import WhisperEasError
from whisper_eas.exporter.graph_specs import ATTENTIONS, BATCH, GraphSpec, ModelDims, export_specs, split_layer
from whisper_eas.exporter.quantize import QuantizeConfig
from whisper_eas.hash_stamps import HashStamps
from whisper_eas.io_utils import atomic_write_json

MANIFEST = "manifest.json"
FORMAT = "whisper-eas-onnx"
FORMAT_VERSION = 1
TOKENIZER = "tokenizer.json"


class ExportError(WhisperEasError, ValueError):
    """An export folder that cannot be used as it is; the message names the file."""


@dataclass
class ExportManifest:
    """The contents of `manifest.json`; `directory` is where it was read from or written to."""

    directory: Path
    model: str
    dims: ModelDims
    config: PruneConfig | None
    opset: int
    batch: int | str
    files: dict[str, str]  # file relative to the folder -> sha256
    versions: dict[str, str] = field(default_factory=dict)
    decoder_key: str = ""  # identifies decoder graphs shared between exports of one model
    quantization: QuantizeConfig | None = None  # int8 graphs (`exporter.quantize`); None: all float32
    attention: str = "standard"  # the encoder's self-attention ops (exporter.fused_attention)

    @property
    def precision(self) -> str:
        return self.quantization.precision if self.quantization is not None else "fp32"

    def graph_precision(self, graph: str) -> str:
        """int8 for the graphs `--precision int8` quantized, fp32 for the others."""
        return "int8" if self.quantization is not None and graph in self.quantization.graphs else "fp32"

    @property
    def split_layer(self) -> int:
        return split_layer(self.config)

    @property
    def graphs(self) -> dict[str, GraphSpec]:
        return export_specs(self.dims, self.config, self.batch)

    def path(self, graph: str) -> Path:
        return self.directory / self.graphs[graph].file

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "config": self.config.to_dict() if self.config else None,
            "prune": format_prune(self.config),  # the same config in the one text form (read: "config")
            "split_layer": self.split_layer,
            "opset": self.opset,
            "batch": self.batch,
            "dims": self.dims.to_dict(),
            "graphs": {name: spec.to_dict() for name, spec in self.graphs.items()},
            "files": self.files,
            "decoder_key": self.decoder_key,
            "precision": self.precision,
            "quantization": self.quantization.to_dict() if self.quantization else None,
            "attention": self.attention,
            "versions": self.versions,
        }

    def write(self) -> Path:
        return atomic_write_json(self.directory / MANIFEST, self.to_dict())

    @classmethod
    def load(cls, directory: str | Path, verify: bool = True) -> "ExportManifest":
        """Read and check `directory/manifest.json`; `verify` also hashes every file."""
        directory = Path(directory)
        missing = f"{directory} is not a whisper-eas export folder; run whisper-eas export"
        data = read_manifest_json(directory / MANIFEST, FORMAT, FORMAT_VERSION, ExportError, missing)
        manifest = _from_dict(directory, data)
        _check_graph_entries(manifest, data.get("graphs"))
        manifest.check_files(hashes=verify)
        return manifest

    def check_files(self, hashes: bool = True) -> None:
        """Every recorded file is there and, with `hashes`, has its sha256 (files unchanged since
        they last matched are not read again: `hash_stamps`)."""
        for spec in self.graphs.values():
            if spec.file not in self.files:
                raise ExportError(f"{self.directory / MANIFEST}: no sha256 recorded for {spec.file}")
        stamps = HashStamps(self.directory) if hashes else None
        for name, digest in self.files.items():
            path = file_inside(self.directory, name, ExportError)
            if not path.is_file():
                raise ExportError(f"{path}: missing from the export folder (re-run whisper-eas export)")
            if stamps is not None and not stamps.matches(path, digest):
                raise ExportError(f"{path}: sha256 differs from {MANIFEST} (file changed after export; re-export)")
        if stamps is not None:
            stamps.save()


def file_inside(directory: Path, name: object, error: type[Exception]) -> Path:
    """`directory / name` for a manifest entry, refused (before anything opens it) when it is not a
    plain relative name inside the folder: absolute, `..`, or a link that leads out."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise error(f"{directory}: manifest file entry {name!r} is not a file inside the folder")
    path = directory / name
    if not path.resolve().is_relative_to(directory.resolve()):
        raise error(f"{directory}: manifest file entry {name!r} leads outside the folder")
    return path


def read_manifest_json(path: Path, fmt: str, version: int, error: type[Exception], missing: str,
                       outdated: Callable[[dict], str] | None = None) -> dict[str, Any]:
    """A JSON manifest of format `fmt` and `version`, or `error` naming the file and the problem.

    `missing` says what a folder without the file is; `outdated(data)` how to fix an older format.
    """
    if not path.is_file():
        raise error(f"{path}: not found ({missing})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as problem:  # RecursionError: absurd nesting
        raise error(f"{path}: not valid JSON ({problem})") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise error(f"{path}: not a {fmt} manifest")
    if data.get("format_version") != version:
        hint = f"; {outdated(data)}" if outdated else ""
        raise error(f"{path}: format_version {data.get('format_version')!r}, this version reads {version}{hint}")
    return data


def _from_dict(directory: Path, data: dict[str, Any]) -> ExportManifest:
    path = directory / MANIFEST
    try:
        config = PruneConfig.from_dict(data["config"]) if data["config"] is not None else None
        manifest = ExportManifest(
            directory=directory,
            model=str(data["model"]),
            dims=ModelDims(**data["dims"]),
            config=config,
            opset=int(data["opset"]),
            batch=data.get("batch", BATCH),
            files=dict(data["files"]),
            versions=dict(data.get("versions", {})),
            decoder_key=str(data.get("decoder_key", "")),
            quantization=QuantizeConfig.from_dict(data["quantization"]) if data.get("quantization") else None,
            attention=str(data.get("attention", "standard")),
        )
    except KeyError as error:
        raise ExportError(f"{path}: missing key {error}") from None
    except (TypeError, ValueError) as error:
        raise ExportError(f"{path}: invalid entry ({error})") from None
    if manifest.attention not in ATTENTIONS:
        raise ExportError(f"{path}: attention {manifest.attention!r} is not one of {', '.join(ATTENTIONS)}")
    if data.get("split_layer") != manifest.split_layer:
        raise ExportError(f"{path}: split_layer {data.get('split_layer')!r} does not match its config")
    quantized = set(manifest.quantization.graphs) if manifest.quantization else set()
    if not quantized <= set(manifest.graphs):
        raise ExportError(f"{path}: quantization names graphs {sorted(quantized - set(manifest.graphs))} "
                          "that the folder does not have")
    if config is not None and config.layer > manifest.dims.encoder_layers:
        raise ExportError(f"{path}: layer {config.layer} is outside the model's {manifest.dims.encoder_layers} blocks")
    return manifest


def _check_graph_entries(manifest: ExportManifest, recorded: Any) -> None:
    """The recorded graphs must be exactly what this version would export for the same config."""
    path = manifest.directory / MANIFEST
    expected = {name: spec.to_dict() for name, spec in manifest.graphs.items()}
    if not isinstance(recorded, dict) or set(recorded) != set(expected):
        got = sorted(recorded) if isinstance(recorded, dict) else recorded
        raise ExportError(f"{path}: graphs {got} do not match the config (expected {sorted(expected)})")
    for name, spec in expected.items():
        if recorded[name] != spec:
            raise ExportError(f"{path}: entry for {spec['file']} does not match its expected inputs/outputs "
                              "(exported by another version; re-run whisper-eas export)")
