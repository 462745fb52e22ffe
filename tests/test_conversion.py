"""The CTranslate2 -> HF conversion reproduces CTranslate2 on real audio."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_eas.checkpoints.ct2_reader import CT2FormatError, read_ct2_model
from whisper_eas.checkpoints.registry import EMBEDDED_MODELS, ModelNotFoundError, _package_dir, resolve_model


def _tiny_ct2_dir():
    model = EMBEDDED_MODELS["tiny.en"]
    return _package_dir(model.data[0], model) / model.data[1]


def test_converted_model_matches_ctranslate2(tiny_runner, dev_mels):
    pytest.importorskip("ctranslate2")
    from whisper_eas.checkpoints.ct2_reference import CT2Reference
    from whisper_eas.decoding import DecodingOptions, initial_tokens
    from whisper_eas.window_decode import decode_encoded

    mel, _ = dev_mels
    ref = CT2Reference(_tiny_ct2_dir())
    encoded = tiny_runner.encode(mel, dense=True)
    # fp16 weights upcast identically on both sides: only summation order differs
    assert np.abs(encoded.hidden.numpy() - ref.encode(mel)).max() < 5e-3
    options = DecodingOptions(language="en")
    ours = [r.tokens for r in decode_encoded(tiny_runner, encoded, options, ["en"] * mel.shape[0])]
    theirs = ref.greedy_tokens(mel, initial_tokens(tiny_runner.tokenizer, options, "en"))
    assert ours == theirs
    assert all(len(t) > 3 for t in ours)


def test_converted_checkpoint_is_a_complete_hf_folder():
    path = resolve_model("tiny.en")
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (path / name).is_file(), name
    from transformers import WhisperConfig

    config = WhisperConfig.from_pretrained(path)
    assert (config.d_model, config.encoder_layers, config.vocab_size) == (384, 4, 51864)


def test_truncated_model_bin_is_reported(tmp_path):
    src = _tiny_ct2_dir() / "model.bin"
    broken = tmp_path / "model.bin"
    broken.write_bytes(src.read_bytes()[:100_000])
    with pytest.raises(CT2FormatError, match="truncated"):
        read_ct2_model(broken)


def test_convert_cli_rejects_a_folder_without_model_bin(tmp_path):
    from click.testing import CliRunner

    from whisper_eas.cli.main import cli

    result = CliRunner().invoke(cli, ["convert", "--ct2", str(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "missing model.bin" in result.output
    assert "Traceback" not in result.output


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ModelNotFoundError, match="not an embedded model name"):
        resolve_model("no-such-model")
