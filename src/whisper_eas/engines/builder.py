"""Build FP16 TensorRT engines for an export folder with Polygraphy's TensorRT loaders.

Per graph: `NetworkFromOnnxPath` -> `CreateConfig(fp16=True, profiles=[Profile()...])` ->
`EngineFromNetwork` -> `SaveEngine`, profiles from `engines.profiles`. The prune graph of scored
configs is built from `prune_plugin.onnx` (one `AttentivePrune` node, the plugin registered
first), so selection runs exactly in float32 inside an FP16 engine; uniform/truncate configs, or
`prune_plugin=False`, build the standard-op `prune.onnx`.

Decoder engines do not depend on the prune config: one set per (decoder graphs, TensorRT, GPU,
decoder profiles) is kept in `$WHISPER_EAS_HOME/trt-decoders/<key>/` and linked into each
folder, like the exporter's shared decoder graphs. `engines.json` is removed first and written
last, so a half-built folder never looks complete.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from whisper_eas.deps import require_cuda, require_tensorrt
from whisper_eas.engines.manifest import ENGINE_MANIFEST, EngineEntry, EngineManifest, Platform
from whisper_eas.engines.profiles import EngineConfig, Shapes, axis_ranges, profile_shapes
from whisper_eas.errors import ConfigError, MissingDependencyError
from whisper_eas.exporter.export import library_versions
from whisper_eas.exporter.graph_specs import DECODER_GRAPHS
from whisper_eas.exporter.manifest import ExportManifest
from whisper_eas.io_utils import link_or_copy, publish_folder, sha256_file
from whisper_eas.plugins.attributes import plugin_applies
from whisper_eas.plugins.onnx_plugin_node import PLUGIN_FILE, export_prune_plugin


def engine_file(graph: str) -> str:
    return f"{graph}.engine"


def engine_profiles(export: ExportManifest, engine: EngineConfig) -> dict[str, dict[str, Shapes]]:
    """The optimization profile of every graph of an export folder (no TensorRT needed)."""
    ranges = axis_ranges(export.dims, export.config, engine, export.batch)
    return {name: profile_shapes(spec, ranges[name]) for name, spec in export.graphs.items()}


def uses_plugin(export: ExportManifest, engine: EngineConfig) -> bool:
    return engine.prune_plugin and plugin_applies(export.config)


def build_engine(onnx_path: Path, profile: dict[str, Shapes], out: Path, fp16: bool = True) -> Path:
    """One engine: Polygraphy network -> FP16 builder config with one profile -> serialized plan."""
    from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, NetworkFromOnnxPath, Profile, SaveEngine

    trt_profile = Profile()
    for name, (low, opt, high) in profile.items():
        trt_profile.add(name, min=low, opt=opt, max=high)
    config = CreateConfig(fp16=fp16, profiles=[trt_profile])
    out.unlink(missing_ok=True)  # never write through a hard link to a shared engine
    SaveEngine(EngineFromNetwork(NetworkFromOnnxPath(str(onnx_path)), config=config), path=str(out))()
    return out


def _entry(directory: Path, graph: str, source: Path, profile: dict[str, Shapes]) -> EngineEntry:
    path = directory / engine_file(graph)
    return EngineEntry(path.name, sha256_file(path), source.name, sha256_file(source),
                       {name: [list(s) for s in shapes] for name, shapes in profile.items()})


def decoder_engine_key(export: ExportManifest, platform: Platform, engine: EngineConfig,
                       profiles: dict[str, dict[str, Shapes]]) -> str:
    """Fingerprint of what the decoder engines depend on: graphs, platform, profiles, precision."""
    parts = {"decoder_key": export.decoder_key,
             "files": {g: export.files[export.graphs[g].file] for g in DECODER_GRAPHS},
             "platform": [platform.tensorrt, platform.gpu, platform.compute_capability], "fp16": engine.fp16,
             "profiles": {g: profiles[g] for g in DECODER_GRAPHS}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _decoder_engines(export: ExportManifest, profiles, engine: EngineConfig, key: str, reuse: bool) -> None:
    from whisper_eas.checkpoints.registry import cache_home

    cache = cache_home() / "trt-decoders" / key
    files = [engine_file(g) for g in DECODER_GRAPHS]
    if reuse and all((cache / f).is_file() for f in files):
        for f in files:
            link_or_copy(cache / f, export.directory / f)
        return
    for graph in DECODER_GRAPHS:
        build_engine(export.path(graph), profiles[graph], export.directory / engine_file(graph), engine.fp16)
    if reuse:
        publish_folder(cache, {f: export.directory / f for f in files})


def _prune_source(export: ExportManifest, engine: EngineConfig) -> tuple[Path, bool]:
    """(ONNX file the prune engine is built from, whether its plugin node asks for the AOT kernel)."""
    if not uses_plugin(export, engine):
        return export.path("prune"), False
    from whisper_eas.plugins.trt_plugin import register_plugin

    aot_available = register_plugin()
    aot = engine.plugin_aot and not export.config.adaptive
    if aot and not aot_available:
        raise MissingDependencyError("--aot-plugin needs triton (it ships with CUDA builds of PyTorch) and a TensorRT "
                                     "release with tensorrt.plugin.aot_impl")
    path = export_prune_plugin(export.config, export.dims, export.directory / PLUGIN_FILE, export.opset,
                               export.batch, aot=aot)
    return path, aot


def build_engines(
    directory: str | Path, engine: EngineConfig = EngineConfig(), reuse_decoder: bool = True
) -> EngineManifest:
    """Build every engine of the export folder `directory` and write `engines.json` beside them."""
    require_tensorrt("whisper-eas export --engines")
    require_cuda("whisper-eas export --engines")
    export = ExportManifest.load(directory, verify=True)
    if export.config is not None and export.config.needs_audio:
        raise ConfigError(f"{directory}: [{export.config.format()}] reads the window's speech bounds "
                          "(padding=drop, onset_keep); TensorRT engines of it are not built (run the folder on "
                          "onnxruntime, or the config on the PyTorch backend)")
    if export.attention != "standard":
        raise ConfigError(f"{directory}: its encoder attention is ONNX Runtime's fused MultiHeadAttention, which "
                          "TensorRT does not parse; export again with --attention standard (the default)")
    platform = Platform.current()
    profiles = engine_profiles(export, engine)
    (export.directory / ENGINE_MANIFEST).unlink(missing_ok=True)
    sources, aot = {}, False
    for graph in export.graphs:
        if graph in DECODER_GRAPHS:
            continue
        source = export.path(graph)
        if graph == "prune":
            source, aot = _prune_source(export, engine)
        build_engine(source, profiles[graph], export.directory / engine_file(graph), engine.fp16)
        sources[graph] = source
    _decoder_engines(export, profiles, engine, decoder_engine_key(export, platform, engine, profiles), reuse_decoder)
    sources.update({g: export.path(g) for g in DECODER_GRAPHS})
    form = None if export.config is None else ("plugin" if uses_plugin(export, engine) else "standard")
    manifest = EngineManifest(
        directory=export.directory,
        model=export.model,
        config=export.config,
        platform=platform,
        engine_config=engine.to_dict(),
        engines={g: _entry(export.directory, g, sources[g], profiles[g]) for g in export.graphs},
        prune_form=form,
        plugin_aot=aot,
        versions=_versions(),
    )
    manifest.write()
    return manifest


def _versions() -> dict[str, str]:
    versions = library_versions()
    for package in ("tensorrt", "triton"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions
