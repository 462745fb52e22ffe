"""The wiring above the core: one prune grammar, one runner factory, flags never dropped, one error base."""

from __future__ import annotations

import click
import pytest
import torch
from click.testing import CliRunner

from whisper_eas.cli.common import friendly_errors
from whisper_eas.config import DEFAULT_PRUNE, PruneConfig, format_prune, parse_prune
from whisper_eas.decoding import DecodingOptions
from whisper_eas.errors import ConfigError, WhisperEasError
from whisper_eas.runners.factory import make_runner

from onnx_exports import SPARSE
from prune_configs import ADAPTIVE, COVERAGE

AUDIO = "tests/data/audio/cathy-arctic_a0001.flac"

# every field away from its default, so a field the grammar forgets fails the round trip
ALL_FIELDS = PruneConfig(layer=3, keep_ratio=None, mass=0.9, strategy="coverage", scoring="max_head", min_keep=0.2,
                         max_keep=0.7, query_stride=8, merge=True, uniform_floor=0.25)


@pytest.mark.parametrize("config", [COVERAGE, ADAPTIVE, SPARSE, ALL_FIELDS, None], ids=str)
def test_prune_grammar_round_trips(config):
    text = format_prune(config)
    assert parse_prune(text) == config
    assert format_prune(parse_prune(text)) == text  # canonical: one text per config


def test_grammar_reads_the_search_tokens_and_names_bad_text():
    shipped_like = PruneConfig(layer=1, keep_ratio=0.4, strategy="coverage", query_stride=4, merge=True)
    assert PruneConfig.parse("coverage@4+merge L1 k0.4") == shipped_like
    assert PruneConfig.parse("L2 k0.5") == PruneConfig(layer=2, keep_ratio=0.5)  # attentive by default
    for bad, problem in [("coverage L1", "needs L<layer>"), ("cover L1 k0.5", "unknown strategy"),
                         ("coverage L1 k0.5 colour=red", "unknown field 'colour'"), ("coverage+mrg L1 k0.5", r"\+mrg"),
                         ("attentive L1 k1.5", "keep_ratio must be in")]:
        with pytest.raises(ConfigError, match=problem) as error:
            PruneConfig.parse(bad)
        assert repr(bad) in str(error.value) and "grammar:" in str(error.value)


def test_creating_a_runner_does_not_load_it(sparse_dir):
    runner = make_runner("onnxruntime", engine_dir=sparse_dir, load=False)
    assert runner._graphs is None and runner.prune == SPARSE and "named" in runner.reason
    assert runner.describe()["engine_dir"] == str(sparse_dir)
    assert runner.load().graphs.keys() == {"encoder_head", "prune", "encoder_tail", "decoder_cross", "decoder_step"}


def test_named_config_or_model_that_disagrees_with_the_folder_is_an_error(sparse_dir):
    with pytest.raises(ConfigError, match=rf"\[attentive L2 k0.3\] disagrees with {sparse_dir}/manifest.json, "
                                          rf"which holds \[{SPARSE.format()}\]"):
        make_runner("onnxruntime", prune=PruneConfig(layer=2, keep_ratio=0.3), engine_dir=sparse_dir, load=False)
    with pytest.raises(ConfigError, match=r"\[dense\] disagrees"):
        make_runner("onnxruntime", prune=None, engine_dir=sparse_dir, load=False)
    with pytest.raises(ConfigError, match=r"--model base disagrees .* which holds tiny.en"):
        make_runner("onnxruntime", model="base", engine_dir=sparse_dir, load=False)
    assert make_runner("onnxruntime", "tiny.en", SPARSE, engine_dir=sparse_dir, load=False).prune == SPARSE
    assert make_runner("onnxruntime", prune=DEFAULT_PRUNE, engine_dir=sparse_dir, load=False).prune == SPARSE


def test_transcribe_flags_beside_an_engine_dir_are_not_dropped(sparse_dir):
    from whisper_eas.cli.transcribe_cmd import command

    args = [AUDIO, "--engine-dir", str(sparse_dir), "--backend", "onnxruntime"]
    result = CliRunner().invoke(command, [*args, "--layer", "2", "--keep-ratio", "0.3"])
    assert result.exit_code == 1 and "disagrees" in result.output and SPARSE.format() in result.output
    assert "attentive L2 k0.3" in result.output and "Traceback" not in result.output
    for agreeing in ([], ["--prune", SPARSE.format(), "--model", "tiny.en"]):  # the folder's config, printed
        result = CliRunner().invoke(command, [*args, *agreeing])
        assert result.exit_code == 0, result.output
        assert f"model tiny.en, sparse {SPARSE.format()}" in result.output and "danger trail" in result.output


def test_cli_errors_one_line_and_a_debug_hint_for_the_unexpected(monkeypatch):
    @click.command()
    @click.argument("kind")
    @friendly_errors
    def fail(kind):
        if kind == "user":
            raise ConfigError("a.tsv: line 3 has 2 fields")
        if kind == "library":
            torch.zeros(2) @ torch.zeros(3)  # a RuntimeError from inside torch
        if kind == "own":
            DecodingOptions(beam_size=0)  # a check of our own (a ValueError, or already a WhisperEasError)
        raise ZeroDivisionError("division by zero")

    user = CliRunner().invoke(fail, ["user"])
    assert user.exit_code == 1 and user.output == "Error: a.tsv: line 3 has 2 fields\n"
    own = CliRunner().invoke(fail, ["own"])
    assert own.exit_code == 1 and own.output == "Error: beam_size must be >= 1, got 0\n"
    for kind, name in (("bug", "ZeroDivisionError"), ("library", "RuntimeError")):
        bug = CliRunner().invoke(fail, [kind])
        assert bug.exit_code == 1 and f"unexpected {name}; set WHISPER_EAS_DEBUG=1" in bug.output
        assert bug.output.count("\n") == 1
    monkeypatch.setenv("WHISPER_EAS_DEBUG", "1")
    assert isinstance(CliRunner().invoke(fail, ["bug"]).exception, ZeroDivisionError)


def test_project_exceptions_share_one_base():
    from whisper_eas.audio import AudioError
    from whisper_eas.checkpoints.registry import ModelNotFoundError
    from whisper_eas.deps import TensorRTMissingError
    from whisper_eas.evaluation.manifest import ManifestError
    from whisper_eas.exporter.manifest import ExportError
    from whisper_eas.validation.parity import ParityError

    from whisper_eas.evaluation.evaluate import EvalError
    from whisper_eas.scaleout.job import JobError
    from whisper_eas.scaleout.sources import SourceError

    for error in (AudioError, ModelNotFoundError, TensorRTMissingError, ManifestError, ExportError, ParityError,
                  EvalError, JobError, SourceError):
        assert issubclass(error, WhisperEasError), error


def test_an_internal_error_raised_in_our_own_code_gets_the_debug_hint(monkeypatch, tiny_model):
    """A RuntimeError from inside whisper_eas that is no check of ours (here: the pruner's query
    hook lost, a bug) is not a user error: the CLI adds the hint, not just the message."""
    from whisper_eas.sparsify import EncoderPruner, sparsified

    monkeypatch.setattr(EncoderPruner, "_keep_q", lambda self, module, inputs, output: None)

    @click.command()
    @friendly_errors
    def encode():
        with torch.inference_mode(), sparsified(tiny_model, COVERAGE):
            tiny_model.model.encoder(torch.zeros(1, 80, 3000))

    result = CliRunner().invoke(encode, [])
    assert result.exit_code == 1 and "scoring block ran without its query/key projections" in result.output
    assert "(unexpected RuntimeError; set WHISPER_EAS_DEBUG=1 to see the traceback)" in result.output
    assert result.output.count("\n") == 1


def test_pytorch_runners_load_on_first_use(tiny_model):
    """Creating a PyTorch runner reads the checkpoint's config only; `load()` or the first encode
    loads the weights (as the graph runners build their sessions)."""
    from whisper_eas.runners.torch_runner import TorchRunner

    runner = make_runner("pytorch", "tiny.en", COVERAGE, load=False)
    assert isinstance(runner, TorchRunner) and runner._model is None and runner.reason == "named with --backend"
    assert runner.n_mels == 80 and runner.prune == COVERAGE and runner.tokenizer.eot == 50256
    with pytest.raises(ConfigError, match="layer"):
        TorchRunner("tiny.en", prune=PruneConfig(layer=9, keep_ratio=0.5))  # checked against config.json
    shared = TorchRunner("tiny.en", prune=COVERAGE, hf_model=tiny_model)
    assert shared.load() is shared and shared.model is tiny_model
    mel = torch.zeros(1, 80, 3000)
    assert runner.encode(mel).n_kept == shared.encode(mel).n_kept == 750 and runner._model is not None
