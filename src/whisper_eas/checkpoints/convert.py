"""Convert a CTranslate2 / faster-whisper Whisper folder into a Hugging Face checkpoint.

CTranslate2 fuses the self-attention q/k/v projections into one matrix and the cross-attention
k/v into another; Whisper's key projections carry no bias, so the fused key bias (zeros) is
dropped. The weights are copied unchanged (CTranslate2's fp16 values stay fp16 on disk).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from whisper_eas.checkpoints.ct2_reader import read_ct2_model
from whisper_eas.checkpoints.quiet import quiet_transformers
from whisper_eas.errors import WhisperEasError
from whisper_eas.tokenizer import is_multilingual

CT2_FILES = ("model.bin", "config.json", "tokenizer.json")
N_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>


class ConversionError(WhisperEasError, ValueError):
    """The source folder is not a convertible CTranslate2 Whisper model."""


def _split(array: np.ndarray, parts: int) -> list[np.ndarray]:
    return np.split(array, parts, axis=0)


def _layer_count(variables: dict[str, np.ndarray], prefix: str) -> int:
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in variables:
        n += 1
    return n


def _attention(v: dict, src: str, dst: str, out: dict, fused_qkv: bool) -> None:
    """Map one CTranslate2 attention block onto HF's q/k/v/out projections."""
    if fused_qkv:
        q, k, vw = _split(v[f"{src}/linear_0/weight"], 3)
        qb, _, vb = _split(v[f"{src}/linear_0/bias"], 3)
        out_name = "linear_1"
    else:  # cross-attention: queries apart, keys/values fused
        q, qb = v[f"{src}/linear_0/weight"], v[f"{src}/linear_0/bias"]
        k, vw = _split(v[f"{src}/linear_1/weight"], 2)
        _, vb = _split(v[f"{src}/linear_1/bias"], 2)
        out_name = "linear_2"
    out[f"{dst}.q_proj.weight"], out[f"{dst}.q_proj.bias"] = q, qb
    out[f"{dst}.k_proj.weight"] = k
    out[f"{dst}.v_proj.weight"], out[f"{dst}.v_proj.bias"] = vw, vb
    out[f"{dst}.out_proj.weight"] = v[f"{src}/{out_name}/weight"]
    out[f"{dst}.out_proj.bias"] = v[f"{src}/{out_name}/bias"]


def _norm(v: dict, src: str, dst: str, out: dict) -> None:
    out[f"{dst}.weight"], out[f"{dst}.bias"] = v[f"{src}/gamma"], v[f"{src}/beta"]


def _ffn(v: dict, src: str, dst: str, out: dict) -> None:
    _norm(v, f"{src}/layer_norm", f"{dst}.final_layer_norm", out)
    for i, name in enumerate(("fc1", "fc2")):
        out[f"{dst}.{name}.weight"] = v[f"{src}/linear_{i}/weight"]
        out[f"{dst}.{name}.bias"] = v[f"{src}/linear_{i}/bias"]


def ct2_state_dict(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """HF `WhisperForConditionalGeneration` state dict (without the tied output projection)."""
    out: dict[str, np.ndarray] = {}
    for name in ("conv1", "conv2"):
        out[f"model.encoder.{name}.weight"] = v[f"encoder/{name}/weight"]
        out[f"model.encoder.{name}.bias"] = v[f"encoder/{name}/bias"]
    out["model.encoder.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    for i in range(_layer_count(v, "encoder")):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        _norm(v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
        _attention(v, f"{src}/self_attention", f"{dst}.self_attn", out, fused_qkv=True)
        _ffn(v, f"{src}/ffn", dst, out)
    _norm(v, "encoder/layer_norm", "model.encoder.layer_norm", out)

    out["model.decoder.embed_tokens.weight"] = v["decoder/embeddings/weight"]
    out["model.decoder.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
    for i in range(_layer_count(v, "decoder")):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        _norm(v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
        _attention(v, f"{src}/self_attention", f"{dst}.self_attn", out, fused_qkv=True)
        _norm(v, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm", out)
        _attention(v, f"{src}/attention", f"{dst}.encoder_attn", out, fused_qkv=False)
        _ffn(v, f"{src}/ffn", dst, out)
    _norm(v, "decoder/layer_norm", "model.decoder.layer_norm", out)
    return out


def _special_ids(tokenizer_json: dict) -> dict[str, int]:
    return {t["content"]: t["id"] for t in tokenizer_json["added_tokens"]}


def hf_configs(v: dict[str, np.ndarray], ct2_config: dict, tokenizer_json: dict):
    """Build (WhisperConfig, GenerationConfig) from the tensors' shapes and the tokenizer."""
    from transformers import GenerationConfig, WhisperConfig

    special = _special_ids(tokenizer_json)
    eot, sot = special["<|endoftext|>"], special["<|startoftranscript|>"]
    vocab_size, d_model = v["decoder/embeddings/weight"].shape
    multilingual = is_multilingual(vocab_size)
    lang_ids = set(ct2_config.get("lang_ids", []))
    lang_to_id = {tok: i for tok, i in special.items() if i in lang_ids}
    common = dict(
        vocab_size=int(vocab_size),
        num_mel_bins=int(v["encoder/conv1/weight"].shape[1]),
        d_model=int(d_model),
        encoder_layers=_layer_count(v, "encoder"),
        decoder_layers=_layer_count(v, "decoder"),
        encoder_attention_heads=int(v["encoder/num_heads"]),
        decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(v["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(v["decoder/position_encodings/encodings"].shape[0]),
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
    )
    config = WhisperConfig(**common, tie_word_embeddings=True)
    config.architectures = ["WhisperForConditionalGeneration"]
    generation = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=int(common["max_target_positions"]),
        suppress_tokens=common["suppress_tokens"],
        begin_suppress_tokens=common["begin_suppress_tokens"],
        alignment_heads=ct2_config.get("alignment_heads"),
        no_timestamps_token_id=special["<|notimestamps|>"],
        prev_sot_token_id=special.get("<|startofprev|>"),
        is_multilingual=multilingual,
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )
    if multilingual:  # HF generate() detects a language whenever lang_to_id exists, so .en models get none
        generation.lang_to_id = lang_to_id
        generation.task_to_id = {"transcribe": special["<|transcribe|>"], "translate": special["<|translate|>"]}
    return config, generation


def _read_json_object(path: Path) -> dict:
    """A JSON object from `path`, or a `ConversionError` naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConversionError(f"{path}: cannot read it ({error.strerror or error})") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ConversionError(f"{path}: not valid JSON ({str(error).splitlines()[0] if str(error) else error!r})") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _check_source(src: Path) -> None:
    if not src.is_dir():
        raise ConversionError(f"{src}: not a directory")
    missing = [name for name in CT2_FILES if not (src / name).is_file()]
    if missing:
        raise ConversionError(f"{src}: not a CTranslate2 Whisper model, missing {', '.join(missing)}")


def convert_ct2_to_hf(src: str | Path, dst: str | Path, model_bin: Path | None = None) -> Path:
    """Convert `src` (a CTranslate2 Whisper folder) into an HF checkpoint at `dst`, atomically.

    `model_bin` overrides `src/model.bin` (the embedded `base` model ships it in two parts).
    """
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    src, dst = Path(src), Path(dst)
    if model_bin is None:
        _check_source(src)
        model_bin = src / "model.bin"
    spec, variables = read_ct2_model(model_bin)
    if spec != "WhisperSpec":
        raise ConversionError(f"{model_bin}: a CTranslate2 {spec}, not a Whisper model")
    ct2_config = _read_json_object(src / "config.json")
    tokenizer_json = _read_json_object(src / "tokenizer.json")
    try:
        config, generation = hf_configs(variables, ct2_config, tokenizer_json)
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ConversionError(f"{src / 'tokenizer.json'} or {src / 'config.json'}: not a Whisper tokenizer/config "
                              f"(missing or malformed {error})") from None

    state = {k: torch.from_numpy(np.array(a)) for k, a in ct2_state_dict(variables).items()}
    dtype = next(iter(state.values())).dtype
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model = model.to_empty(device="cpu").to(dtype)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [m for m in missing if m != "proj_out.weight"]
    if missing or unexpected:
        raise ConversionError(f"{model_bin}: weights do not map onto Whisper: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model.generation_config = generation

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        with quiet_transformers():
            model.save_pretrained(tmp, safe_serialization=True)
            _save_tokenizer(src / "tokenizer.json", tmp)
            WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(tmp)
        (tmp / "whisper_eas_source.json").write_text(json.dumps({"converted_from": str(src)}, indent=2))
        if dst.exists():
            shutil.rmtree(dst)
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _save_tokenizer(tokenizer_file: Path, out: Path) -> None:
    from transformers import WhisperTokenizerFast

    eot = "<|endoftext|>"
    tok = WhisperTokenizerFast(
        tokenizer_file=str(tokenizer_file), unk_token=eot, bos_token=eot, eos_token=eot, pad_token=eot
    )
    tok.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(N_TIMESTAMPS)], special_tokens=False)
    tok.save_pretrained(out)
