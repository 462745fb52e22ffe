"""Issue 13's accuracy tools: paired statistics, compare, the speech region (dropped padding, the
padding trim), onset protection and the onset diagnostic. Real weights and real audio where the
model runs; the statistics run on known error counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from whisper_eas.cli.main import cli
from whisper_eas.config import PruneConfig
from whisper_eas.evaluation.onset import diagnose, first_words_lost, word_status
from whisper_eas.evaluation.stats import PairedUtterance, compare, paired_bootstrap, source_of
from whisper_eas.features import N_SAMPLES, log_mel, pad_or_trim
from whisper_eas.search.shared_prefix import DenseStates
from whisper_eas.selection import content_frames, speech_bounds


def _pairs(rows):
    return [PairedUtterance(f"u{i}", a, b, n) for i, (a, b, n) in enumerate(rows)]


def test_paired_bootstrap_is_corpus_level_seeded_and_paired():
    pairs = _pairs([(1, 1, 10), (0, 2, 10), (3, 3, 20), (2, 1, 10)] * 10)
    result = paired_bootstrap(pairs, resamples=2000, seed=0)
    assert result.wer_a == pytest.approx(100 * 60 / 500) and result.wer_b == pytest.approx(100 * 70 / 500)
    assert result.delta == pytest.approx(2.0)
    assert result.low < result.delta < result.high
    assert (result.better, result.worse, result.same) == (10, 10, 20)
    assert paired_bootstrap(pairs, resamples=2000, seed=0) == result  # seeded: reproducible
    # identical systems: every resample has delta 0
    same = paired_bootstrap(_pairs([(2, 2, 10), (0, 0, 5)] * 5))
    assert (same.delta, same.low, same.high, same.same) == (0.0, 0.0, 0.0, 10)
    # the same per-utterance changes on four times the utterances: a narrower interval
    wide = paired_bootstrap(_pairs([(0, 1, 10), (1, 0, 10), (0, 2, 10)] * 4))
    narrow = paired_bootstrap(_pairs([(0, 1, 10), (1, 0, 10), (0, 2, 10)] * 16))
    assert narrow.high - narrow.low < wide.high - wide.low
    with pytest.raises(ValueError):
        paired_bootstrap([])


def test_compare_reports_sources_apart():
    refs = {"so762-1": "I FEEL LIKE GOING FOR A WALK", "vctk-p225_001": "Please call Stella.",
            "ls-test-clean-1": "HE COULD WAIT NO LONGER"}
    dense = {"so762-1": "I feel like going for a walk.", "vctk-p225_001": "Please call Stella.",
             "ls-test-clean-1": "He could wait no longer."}
    pruned = dict(dense, **{"so762-1": "going for a walk."})
    result = compare(refs, dense, pruned, resamples=500)
    assert set(result["sources"]) == {"so762", "vctk", "ls"} and source_of("so762-1") == "so762"
    assert result["sources"]["so762"]["delta"] == pytest.approx(100 * 3 / 7)
    assert result["sources"]["vctk"]["delta"] == 0.0
    assert result["all"]["worse"] == 1 and result["all"]["same"] == 2


def test_compare_command(tmp_path):
    def report(hyps):
        return {"utterances": [{"id": k, "ref": v, "hyp": hyps[k], "error": None} for k, v in refs.items()]}

    refs = {f"vctk-p{i}": "six spoons of fresh snow peas" for i in range(6)}
    (tmp_path / "dense.json").write_text(json.dumps(report({k: "six spoons of fresh snow peas" for k in refs})))
    (tmp_path / "sparse.json").write_text(json.dumps(report({k: "spoons of fresh snow peas" for k in refs})))
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "dense.json"), str(tmp_path / "sparse.json"),
                                      "--json", str(tmp_path / "cmp.json")])
    assert result.exit_code == 0, result.output
    assert "+16.67" in result.output and "vctk" in result.output
    assert json.loads((tmp_path / "cmp.json").read_text())["all"]["worse"] == 6
    bad = CliRunner().invoke(cli, ["compare", str(tmp_path / "dense.json"), str(tmp_path / "missing.json")])
    assert bad.exit_code != 0 and "missing.json: no such file" in bad.output and "Traceback" not in bad.output


def test_onset_diagnostic_places_lost_first_words():
    ref = "answered he with a smile and went on his way home"
    assert word_status(ref, "with a smile and went on his way home")[:3] == ["del", "del", "ok"]
    assert first_words_lost(ref, "with a smile and went on his way home")
    assert not first_words_lost(ref, "answered he with a smile and went on his way")
    report = diagnose({"a": ref}, {"a": ref}, {"a": "with a smile and went on his way home"}, {"a": (0, 200)},
                      {"a": list(range(0, 200, 2))})
    assert report.onset_lost == ["a"] and report.parts["onset"].errors_pruned == 2
    assert report.parts["middle"].errors_pruned == 0 and report.parts["onset"].kept_share == pytest.approx(0.5)


def _clip_mel(seconds: float) -> torch.Tensor:
    """A real utterance's features, cut to `seconds` and padded as Whisper pads a clip."""
    from whisper_eas.audio import load_audio

    audio = load_audio("tests/data/audio/jfk-inaugural-1961.flac")[: int(seconds * 16000)]
    return torch.from_numpy(pad_or_trim(log_mel(audio, 80, padding=N_SAMPLES)))


def test_content_frames_follow_the_audio_length():
    mels = torch.stack([_clip_mel(2.0), _clip_mel(7.3)])
    content = content_frames(mels).tolist()
    assert abs(content[0] - 100) <= 2 and abs(content[1] - 365) <= 2  # 50 encoder frames per second
    bounds = speech_bounds(mels)
    assert bool((bounds[:, 0] < bounds[:, 1]).all())
    # a long-form last window is padded with zeros, not with the clamp floor: also padding
    window = torch.nn.functional.pad(torch.from_numpy(log_mel(load_audio_seconds(3.0), 80)[:, :300]), (0, 2700))
    assert abs(int(content_frames(window.unsqueeze(0))[0]) - 150) <= 2


def load_audio_seconds(seconds: float):
    from whisper_eas.audio import load_audio

    return load_audio("tests/data/audio/jfk-inaugural-1961.flac")[: int(seconds * 16000)]


def test_padding_drop_keeps_the_speech_region(tiny_model):
    mels = torch.stack([_clip_mel(2.0), _clip_mel(7.3)])
    states = DenseStates(tiny_model, mels)
    trim = PruneConfig(layer=1, keep_ratio=1.0, strategy="uniform", padding="drop", speech_floor=10.0)
    no_floor = trim.with_(speech_floor=0.0)
    for i, expected in enumerate((500 + 64, 500 + 64)):  # max(10 s, content) + 1.28 s of frames
        kept = states.select(i).encode(trim).kept[0]
        assert abs(kept.size - expected) <= 2 and np.array_equal(kept, np.arange(kept.size))
    assert abs(states.select(0).encode(no_floor).n_kept - (100 + 64)) <= 2
    ours = PruneConfig(layer=1, keep_ratio=0.5, strategy="coverage", merge=True, query_stride=4, padding="drop",
                       speech_floor=10.0)
    one = states.select(1).encode(ours)
    assert abs(one.n_kept - (500 + 64) // 2) <= 2 and int(one.kept.max()) < 500 + 64 + 2
    # the hook path (what the Transcriber runs) keeps the same frames and the same states
    from whisper_eas.sparsify import sparsified

    with sparsified(tiny_model, ours) as record, torch.inference_mode():
        hidden = tiny_model.model.encoder(mels[1:]).last_hidden_state
    assert np.array_equal(record.kept, one.kept) and torch.allclose(hidden, one.hidden, atol=1e-5)
    # keep_ratio 1.0 without dropping is the dense encoder
    full = states.encode(PruneConfig(layer=1, keep_ratio=1.0, strategy="uniform"))
    assert torch.allclose(full.hidden, states.encode(None).hidden, atol=1e-5)


def test_onset_keep_keeps_the_first_second_of_speech(tiny_model):
    mels = _clip_mel(7.3).unsqueeze(0)
    states = DenseStates(tiny_model, mels)
    start = int(speech_bounds(mels)[0, 0])
    base = PruneConfig(layer=1, keep_ratio=0.3, strategy="coverage", merge=True, query_stride=4)
    plain, protected = states.encode(base).kept[0].tolist(), states.encode(base.with_(onset_keep=1.0)).kept[0].tolist()
    onset = set(range(max(0, start - 5), start + 50))
    assert onset <= set(protected) and not onset <= set(plain)
    assert len(protected) == len(plain)  # within the same budget
    with pytest.raises(ValueError, match="onset_keep"):
        PruneConfig(layer=1, keep_ratio=0.5, strategy="uniform", onset_keep=1.0)


def test_search_confirmation_remeasures_the_chosen_point(tmp_path, tiny_runner):
    """The chosen point and dense re-measured on a confirmation manifest (all of it), with the
    paired interval and whether the point holds by the chooser's rule there."""
    from whisper_eas.search.run import SearchSpec, confirm

    from pathlib import Path

    lines = Path("tests/data/manifest.tsv").read_text().splitlines()
    manifest = tmp_path / "confirm.tsv"  # the first two utterances (paths stay relative to the manifest)
    manifest.write_text("\n".join(lines[:3]) + "\n")
    (tmp_path / "audio").symlink_to(Path("tests/data/audio").resolve())
    config = PruneConfig(layer=1, keep_ratio=1.0, strategy="uniform")  # keeps every frame: dense's text
    spec = SearchSpec(model="tiny.en", manifest=str(manifest), strategies=("uniform",), keep_ratios=(1.0,),
                      confirm_manifest=str(manifest))
    chosen = {"key": config.format(), "config": config.to_dict()}
    result = confirm(spec, tiny_runner, chosen, tmp_path, progress=lambda _: None)
    assert result["all"]["n_utterances"] == 2 and result["all"]["delta"] == 0.0 and result["holds"]
    assert result["sparsity"] == 0.0 and (tmp_path / "confirm.json").is_file()


def test_search_grid_has_the_padding_trim_and_dropped_padding():
    from whisper_eas.search.run import SearchSpec

    spec = SearchSpec(model="tiny.en", manifest="m.tsv", layers=(1, 2), keep_ratios=(0.5,),
                      strategies=("padtrim", "padtrim0", "coverage@4+merge+drop"))
    keys = [c.format() for c in spec.configs(4)]
    assert keys[:3] == ["uniform L1 k1.0 padding=drop speech_floor=10.0", "uniform L1 k1.0 padding=drop",
                        "coverage@4+merge L1 k0.5 padding=drop speech_floor=10.0"]
    assert len(keys) == 6


def test_exported_padding_drop_keeps_pytorchs_frames(tmp_path, tmp_path_factory, tiny_model):
    """The prune graph takes the window's speech bounds (computed on the host from the features):
    an exported padding-drop + onset_keep config keeps exactly PyTorch's frames on real short
    clips, transcribes them as PyTorch does, passes the ORT parity check, and TensorRT refuses it."""
    from conftest import DATA

    from whisper_eas.decoding import DecodingOptions
    from whisper_eas.engines.builder import build_engines
    from whisper_eas.errors import ConfigError
    from whisper_eas.exporter.export import export_model
    from whisper_eas.exporter.graph_specs import SPEECH_BOUNDS
    from whisper_eas.runners.ort_runner import OrtRunner
    from whisper_eas.runners.torch_runner import TorchRunner
    from whisper_eas.validation.parity import validate_export
    from whisper_eas.window_decode import decode_encoded

    from whisper_eas.exporter.manifest import ExportManifest
    from onnx_exports import exported, linked_copy

    config = PruneConfig.parse("coverage@4+merge L1 k0.5 padding=drop speech_floor=5.0 onset_keep=1.0")
    # exported by export_model once per source version (tests/onnx_exports.py); checked here in a copy
    linked_copy(exported(tmp_path_factory, tiny_model, config), tmp_path / "drop")
    manifest = ExportManifest.load(tmp_path / "drop")
    assert manifest.config == config
    assert manifest.graphs["prune"].input_names[-1] == SPEECH_BOUNDS
    ort, reference = OrtRunner(tmp_path / "drop"), TorchRunner("tiny.en", prune=config, hf_model=tiny_model)
    for clip in ("cathy-arctic_a0001", "ls-test-clean-1089-134686-0001"):  # 3.3 s each: 5 s floor region
        mel = pad_or_trim(log_mel(load_audio(str(DATA / "audio" / f"{clip}.flac")), 80, padding=N_SAMPLES))[None]
        ours, theirs = ort.encode(mel), reference.encode(mel)
        # region: the 5 s floor + 1.28 s margin = 314 frames, half of them kept, none past it
        assert np.array_equal(ours.kept, theirs.kept) and ours.n_kept == 157 and int(ours.kept.max()) < 314
        text = decode_encoded(ort, ours, DecodingOptions())[0].text
        assert text == decode_encoded(reference, theirs, DecodingOptions())[0].text and len(text.split()) >= 5
    report = validate_export(tmp_path / "drop", DATA / "manifest.tsv", limit=2, hf_model=tiny_model,
                             graphs=["prune"])
    assert report.passed and report.n_utterances == 2
    from whisper_eas.deps import installed
    from whisper_eas.errors import MissingDependencyError

    gpu = installed("tensorrt") and torch.cuda.is_available()  # else that one line comes first
    with pytest.raises(ConfigError if gpu else MissingDependencyError,
                       match="TensorRT engines of it are not built" if gpu else None):
        build_engines(tmp_path / "drop")
    with pytest.raises(ConfigError, match="adaptive counts within a speech region"):
        export_model("tiny.en", PruneConfig(layer=1, keep_ratio=None, mass=0.9, strategy="coverage",
                                            padding="drop"), tmp_path / "adaptive", hf_model=tiny_model)


def load_audio(path: str):
    from whisper_eas.audio import load_audio as load

    return load(path)
