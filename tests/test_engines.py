"""TensorRT engines: profiles from graph_specs, engines.json checks, clear errors without TensorRT.

Everything above the `requires_tensorrt` line runs without TensorRT (fabricated manifests and
folders); the tests below it build and run real engines and are skipped where TensorRT is absent.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import replace

import pytest
from click.testing import CliRunner

from conftest import DATA
from prune_configs import ADAPTIVE, K, COVERAGE, TINY
from whisper_eas.config import PruneConfig
from whisper_eas.engines.builder import build_engines, engine_file, engine_profiles, uses_plugin
from whisper_eas.deps import TensorRTMissingError
from whisper_eas.engines.manifest import (
    ENGINE_MANIFEST,
    EngineEntry,
    EngineError,
    EngineManifest,
    Platform,
    rebuild_hint,
)
from whisper_eas.engines.profiles import EngineConfig, axis_ranges
from whisper_eas.exporter.manifest import ExportManifest
from whisper_eas.io_utils import sha256_file

NO_TENSORRT = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed")
BUILT_ON = Platform(tensorrt="10.13.2.6", gpu="NVIDIA H100 80GB HBM3", compute_capability="9.0")


def _export(directory, config: PruneConfig | None = COVERAGE, batch: int | str = "batch") -> ExportManifest:
    """An export manifest over small stand-in files (the checks hash files; they never parse them)."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = ExportManifest(directory, "tiny.en", TINY, config, 17, batch, files={})
    for spec in manifest.graphs.values():
        (directory / spec.file).write_bytes(f"stand-in for {spec.file}".encode())
        manifest.files[spec.file] = sha256_file(directory / spec.file)
    return manifest


def _engines(export: ExportManifest, platform: Platform = BUILT_ON) -> EngineManifest:
    """An engines.json as the builder would write it, over stand-in engine files."""
    profiles = engine_profiles(export, EngineConfig())
    entries = {}
    for graph, spec in export.graphs.items():
        path = export.directory / engine_file(graph)
        path.write_bytes(f"plan of {graph}".encode())
        entries[graph] = EngineEntry(path.name, sha256_file(path), spec.file, export.files[spec.file],
                                     {k: [list(s) for s in v] for k, v in profiles[graph].items()})
    manifest = EngineManifest(export.directory, export.model, export.config, platform, EngineConfig().to_dict(),
                              entries, prune_form="plugin" if export.config else None)
    manifest.write()
    return manifest


# ---- profiles ----


def test_profiles_follow_graph_specs_for_the_shipped_config(tmp_path):
    profiles = engine_profiles(_export(tmp_path), EngineConfig())
    assert list(profiles) == ["encoder_head", "prune", "encoder_tail", "decoder_cross", "decoder_step"]
    assert profiles["encoder_head"] == {"mel": ((1, 80, 3000), (8, 80, 3000), (16, 80, 3000))}
    assert profiles["prune"] == {"head_hidden": ((1, 1500, 384), (8, 1500, 384), (16, 1500, 384)),
                                 "frame_scores": ((1, 1500), (8, 1500), (16, 1500))}
    # kept frames (K) up to all frames: the quality guard re-runs windows dense on the same engines
    assert profiles["encoder_tail"] == {"tail_input": ((1, K, 384), (8, K, 384), (16, 1500, 384))}
    assert profiles["decoder_cross"] == {"encoder_hidden": ((1, K, 384), (8, K, 384), (16, 1500, 384))}
    step = profiles["decoder_step"]
    assert "offset" not in step  # a scalar: nothing to profile
    assert len(step) == 2 + 4 * TINY.decoder_layers
    assert step["logit_positions"] == ((1,), (1,), (232,))  # the last token's logits; a whole prompt at most
    assert step["tokens"] == ((1, 1), (8, 1), (80, 232))  # 16 windows x 5 beams; a whole prompt at first
    assert step["self_k_0"] == step["self_v_3"] == ((1, 6, 0, 64), (8, 6, 32, 64), (80, 6, 447, 64))
    assert step["cross_k_0"] == step["cross_v_3"] == ((1, 6, K, 64), (8, 6, K, 64), (80, 6, 1500, 64))


def test_adaptive_dense_and_static_batch_profiles():
    ranges = axis_ranges(TINY, ADAPTIVE, EngineConfig(), "batch")
    assert ranges["encoder_tail"]["frames"] == (300, 600, 1500)  # min_keep 0.2 .. max_keep 0.6 of 1500
    dense = axis_ranges(TINY, None, EngineConfig(), "batch")
    assert dense["encoder_tail"]["frames"] == dense["decoder_step"]["frames"] == (1500, 1500, 1500)
    static = axis_ranges(TINY, COVERAGE, EngineConfig(), 4)
    assert {r["batch"] for r in static.values()} == {(4, 4, 4)}
    small = axis_ranges(TINY, COVERAGE, EngineConfig(max_batch=2, opt_batch=1, max_beam=1), "batch")
    assert small["decoder_step"]["batch"] == (1, 1, 2)


def test_dense_exports_have_no_prune_engine(tmp_path):
    assert "prune" not in engine_profiles(_export(tmp_path, None), EngineConfig())


def test_engine_config_is_checked_up_front():
    with pytest.raises(ValueError, match="opt_batch <= max_batch"):
        EngineConfig(max_batch=4, opt_batch=8)
    with pytest.raises(ValueError, match="max_prompt"):
        EngineConfig(max_prompt=448)


def test_plugin_form_only_for_scored_configs(tmp_path):
    assert uses_plugin(_export(tmp_path / "a"), EngineConfig())
    assert not uses_plugin(_export(tmp_path / "b"), EngineConfig(prune_plugin=False))
    uniform = PruneConfig(layer=1, keep_ratio=0.5, strategy="uniform")
    assert not uses_plugin(_export(tmp_path / "c", uniform), EngineConfig())


# ---- engines.json ----


def test_manifest_round_trips(tmp_path):
    written = _engines(_export(tmp_path))
    loaded = EngineManifest.load(tmp_path)
    assert loaded.to_dict() == written.to_dict()
    data = json.loads((tmp_path / ENGINE_MANIFEST).read_text())
    assert data["platform"] == {"tensorrt": "10.13.2.6", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    assert data["precision"] == "fp16" and data["engines"]["prune"]["source"] == "prune.onnx"
    assert data["engines"]["encoder_tail"]["profile"]["tail_input"] == [[1, K, 384], [8, K, 384], [16, 1500, 384]]


@pytest.mark.parametrize("change,expected", [
    ({"tensorrt": "10.3.0.26"}, r"TensorRT 10\.13\.2\.6 \(this machine: 10\.3\.0\.26\)"),
    ({"compute_capability": "8.9", "gpu": "NVIDIA L4"}, r"compute capability 9\.0 \(this GPU: 8\.9\).*GPU NVIDIA H100"),
    ({"gpu": "NVIDIA H100 PCIe"}, r"GPU NVIDIA H100 80GB HBM3 \(this GPU: NVIDIA H100 PCIe\)"),
])
def test_engines_for_another_tensorrt_or_gpu_say_how_to_rebuild(tmp_path, change, expected):
    export = _export(tmp_path / "e")
    _engines(export)
    manifest = EngineManifest.load(export.directory)
    manifest.check(export, BUILT_ON)  # the machine they were built on
    with pytest.raises(EngineError, match=expected) as error:
        manifest.check(export, replace(BUILT_ON, **change))
    message = str(error.value)
    assert message.startswith(f"{export.directory / ENGINE_MANIFEST}: engines were built for")
    assert message.endswith(f"rebuild with `whisper-eas export --model tiny.en --prune '{COVERAGE.format()}' "
                            f"--out {export.directory} --engines`")
    assert "\n" not in message


def test_engines_built_from_other_onnx_files_are_stale(tmp_path):
    export = _export(tmp_path)
    manifest = _engines(export)
    (tmp_path / "encoder_tail.onnx").write_bytes(b"re-exported")
    export.files["encoder_tail.onnx"] = sha256_file(tmp_path / "encoder_tail.onnx")
    with pytest.raises(EngineError, match=r"encoder_tail\.onnx: changed since encoder_tail\.engine was built.*`"):
        manifest.check_sources(export)


def test_engines_of_another_config_do_not_fit(tmp_path):
    manifest = _engines(_export(tmp_path))
    dense = _export(tmp_path, None)  # the folder was re-exported dense over the sparse engines
    expected = (rf"engines are for tiny.en \[{re.escape(COVERAGE.format())}\], the export is tiny.en \[dense\]; "
                r"rebuild with `whisper-eas export --model tiny.en --prune 'dense'")
    with pytest.raises(EngineError, match=expected):
        manifest.check_sources(dense)
    manifest.config = None
    with pytest.raises(EngineError, match="engine prune.engine is for graph 'prune'"):
        manifest.check_sources(dense)
    manifest.config = COVERAGE
    del manifest.engines["prune"]
    with pytest.raises(EngineError, match="no engine for prune"):
        manifest.check_sources(_export(tmp_path))


def test_missing_changed_and_absent_engine_files(tmp_path):
    export = _export(tmp_path)
    manifest = _engines(export)
    (tmp_path / "decoder_step.engine").write_bytes(b"edited")
    with pytest.raises(EngineError, match=r"decoder_step\.engine: sha256 differs"):
        manifest.check_files()
    manifest.check_files(hashes=False)
    (tmp_path / "decoder_step.engine").unlink()
    with pytest.raises(EngineError, match=r"decoder_step\.engine: missing from the engine folder"):
        manifest.check_files(hashes=False)


def test_unreadable_engine_manifests(tmp_path):
    with pytest.raises(EngineError, match=r"engines\.json: not found .* holds no TensorRT engines.*--engines`"):
        EngineManifest.load(tmp_path)
    (tmp_path / ENGINE_MANIFEST).write_text("{")
    with pytest.raises(EngineError, match="not valid JSON"):
        EngineManifest.load(tmp_path)
    _engines(_export(tmp_path))
    data = json.loads((tmp_path / ENGINE_MANIFEST).read_text())
    (tmp_path / ENGINE_MANIFEST).write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(EngineError, match="format_version 99, this version reads 1; rebuild with"):
        EngineManifest.load(tmp_path)
    del data["platform"]
    (tmp_path / ENGINE_MANIFEST).write_text(json.dumps(data))
    with pytest.raises(EngineError, match="missing key 'platform'"):
        EngineManifest.load(tmp_path)


@pytest.mark.parametrize("config", [COVERAGE, None, PruneConfig(layer=2, keep_ratio=None, mass=0.95,
                                    strategy="coverage", query_stride=8, merge=True, scoring="max_head")],
                         ids=["shipped", "dense", "adaptive"])
def test_rebuild_command_reproduces_the_config(config, tmp_path):
    """The hint's command, run through the export command's own option parser, names the same config."""
    import shlex

    import click

    from whisper_eas.cli.common import prune_options, resolve_prune

    hint = rebuild_hint("tiny.en", config, "out")
    words = shlex.split(hint.removeprefix("rebuild with `").removesuffix("`"))
    assert words[:4] == ["whisper-eas", "export", "--model", "tiny.en"] and words[-3:] == ["--out", "out", "--engines"]
    seen = []

    @click.command()
    @prune_options
    def parse(**flags):
        seen.append(resolve_prune("tiny.en", **flags))

    parse.main(words[4:-3], standalone_mode=False)
    assert seen == [config]


# ---- without TensorRT: one clear error, before anything is written ----


@NO_TENSORRT
def test_builder_without_tensorrt_is_one_clear_error(tmp_path):
    with pytest.raises(TensorRTMissingError, match=r"export --engines: TensorRT is not installed; pip install"):
        build_engines(tmp_path / "missing")
    with pytest.raises(TensorRTMissingError, match="pip install tensorrt"):
        Platform.current()


@NO_TENSORRT
def test_runner_without_tensorrt_is_one_clear_error(tmp_path):
    from whisper_eas.runners.factory import make_runner
    from whisper_eas.runners.trt_runner import TensorRTRunner

    _engines(_export(tmp_path))
    with pytest.raises(TensorRTMissingError, match="the tensorrt backend: TensorRT is not installed"):
        TensorRTRunner(tmp_path)
    with pytest.raises(TensorRTMissingError, match="the tensorrt backend: TensorRT is not installed"):
        make_runner("tensorrt", "tiny.en", None, "cuda", tmp_path)


@NO_TENSORRT
def test_export_engines_fails_before_exporting(tmp_path):
    from whisper_eas.cli.export_cmd import command

    result = CliRunner().invoke(command, ["--out", str(tmp_path / "e"), "--engines"])
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: whisper-eas export --engines: TensorRT is not installed; pip install "
                                     "tensorrt (NVIDIA's wheel, from https://pypi.nvidia.com) on a machine with an "
                                     "NVIDIA GPU and driver")
    assert not (tmp_path / "e").exists()


@NO_TENSORRT
def test_validate_trt_without_tensorrt_is_one_clear_error(tmp_path):
    from whisper_eas.cli.validate_cmd import command

    result = CliRunner().invoke(command, [str(tmp_path), "--trt", "--manifest", str(DATA / "manifest.tsv")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: whisper-eas validate --trt: TensorRT is not installed; pip install")


# ---- TensorRT (an NVIDIA GPU and the tensorrt package): not run on the development machines ----


@pytest.fixture(scope="module")
def shipped_engines(tmp_path_factory, tiny_model):
    from whisper_eas.exporter.export import export_model

    out = tmp_path_factory.mktemp("trt-shipped")
    export_model("tiny.en", COVERAGE, out, hf_model=tiny_model)
    build_engines(out, EngineConfig(max_batch=4, opt_batch=2))
    return out


@pytest.mark.requires_tensorrt
def test_engines_build_for_the_shipped_config(shipped_engines):
    manifest = EngineManifest.load(shipped_engines)
    assert manifest.platform == Platform.current() and manifest.prune_form == "plugin"
    assert sorted(manifest.engines) == sorted(ExportManifest.load(shipped_engines).graphs)
    assert (shipped_engines / "prune_plugin.onnx").is_file()


@pytest.mark.requires_tensorrt
def test_validate_trt_passes_with_fp16_tolerances(shipped_engines):
    from whisper_eas.validation.parity import validate_export

    report = validate_export(shipped_engines, DATA / "manifest.tsv", limit=2, batch=2, trt=True)
    assert {r.runner for r in report.rows} == {"onnxruntime", "tensorrt-fp16"}
    assert all(r.passed for r in report.rows)


@pytest.mark.requires_tensorrt
def test_tensorrt_transcripts_match_pytorch(shipped_engines, dev_mels, tiny_model):
    from whisper_eas.decoding import DecodingOptions
    from whisper_eas.evaluation.wer import corpus_wer
    from whisper_eas.runners.factory import make_runner
    from whisper_eas.runners.torch_runner import TorchRunner
    from whisper_eas.window_decode import decode_encoded

    mels, references = dev_mels
    trt_runner = make_runner("tensorrt", "tiny.en", None, "cuda", shipped_engines)
    torch_runner = TorchRunner("tiny.en", prune=COVERAGE, hf_model=tiny_model)
    texts = {}
    for name, runner in (("tensorrt", trt_runner), ("pytorch", torch_runner)):
        texts[name] = [r.text for r in decode_encoded(runner, runner.encode(mels), DecodingOptions())]
    wers = {name: corpus_wer(list(zip(references, hyps)))[0] for name, hyps in texts.items()}
    assert wers["tensorrt"] <= wers["pytorch"] + 0.03, (wers, texts)
    assert sum(a == b for a, b in zip(texts["tensorrt"], texts["pytorch"])) >= len(references) - 1  # FP16 may flip one
