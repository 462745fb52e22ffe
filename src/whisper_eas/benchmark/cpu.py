"""CPU benchmark: the same dev utterances through ONNX Runtime, PyTorch and faster-whisper.

End to end from decoded 16 kHz audio in memory (log-mel features, encoder, greedy decoding, text)
for: ONNX Runtime dense and sparse, PyTorch dense and sparse, faster-whisper's CTranslate2 int8
and float32 (beam 1, the same model, faster-whisper's own CT2 folder) run two ways: fed our
log-mel windows in the same batches (`ct2-windows`), and through `WhisperModel.transcribe` one
file at a time (`faster-whisper`). Backends take turns within each repeat (drift on a shared
machine hits all of them alike); one warm-up pass first; median and min-max of the repeats. WER
after Whisper's English normalizer, beside each. Also encoder-only ONNX Runtime dense vs layer 1
keep 0.4, the published selection and ours (target >= 2x). Writes a markdown table and JSON.
Timed by `benchmark.timing`, the harness every benchmark shares.

    whisper-eas bench --manifest ../shared/data/speech-dev/manifest-short.tsv \\
        --json bench.json --markdown bench.md             # shipped config; --limit 4 for a smoke run
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from whisper_eas.audio import load_audio
from whisper_eas.benchmark.timing import take_turns
from whisper_eas.config import PruneConfig
from whisper_eas.decoding import DecodingOptions
from whisper_eas.defaults import shipped_config
from whisper_eas.errors import ConfigError
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.evaluation.wer import corpus_wer
from whisper_eas.features import N_SAMPLES, window_features
from whisper_eas.io_utils import atomic_write_json, atomic_write_text
from whisper_eas.window_decode import decode_windows, window_requests

# 60% sparsity at layer 1 (the 2x encoder target): the published selection, and ours as shipped
ENCODER_CONFIGS = {
    "encoder-published": PruneConfig(layer=1, keep_ratio=0.4),
    "encoder-ours": PruneConfig(layer=1, keep_ratio=0.4, strategy="coverage", merge=True, query_stride=4),
}


@dataclass
class Measured:
    name: str
    config: str
    times: list[float] = field(default_factory=list)  # seconds per pass over every utterance
    texts: list[str] = field(default_factory=list)
    wer: float | None = None
    fallbacks: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def _batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def ours(runner, options: DecodingOptions, batch: int) -> Callable[[list[np.ndarray]], tuple[list[str], int]]:
    """whisper-eas end to end: features, encoder (pruned or not), greedy decoding, quality guard."""

    def run(audios):
        texts, fallbacks = [], 0
        for group in _batches(audios, batch):
            mel = np.stack([window_features(a, runner.n_mels) for a in group])
            for window in decode_windows(runner, window_requests(mel, options), options):
                texts.append(window.result.text)
                fallbacks += window.fallback is not None
        return texts, fallbacks

    return run


def ct2_windows(fw_model, prompt: list[int], n_mels: int, batch: int):
    """CTranslate2 (faster-whisper's engine) on our log-mel windows, batched like ours, beam 1."""
    import ctranslate2

    def run(audios):
        texts = []
        for group in _batches(audios, batch):
            mel = np.stack([window_features(a, n_mels) for a in group])
            features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel, dtype=np.float32))
            results = fw_model.model.generate(features, [prompt] * len(group), beam_size=1,
                                              max_length=len(prompt) + 224, suppress_blank=True, suppress_tokens=[-1])
            texts += [fw_model.hf_tokenizer.decode(r.sequences_ids[0]).strip() for r in results]
        return texts, 0

    return run


def fw_transcribe(fw_model, language: str | None):
    """faster-whisper as users run it: `transcribe` per file, its own features, beam 1, no VAD."""

    def run(audios):
        texts = []
        for audio in audios:
            segments, _ = fw_model.transcribe(audio, beam_size=1, temperature=0.0, without_timestamps=True,
                                              condition_on_previous_text=False, vad_filter=False, language=language)
            texts.append(" ".join(s.text.strip() for s in segments).strip())
        return texts, 0

    return run


def encoder_only(runner, dense: bool):
    """Encoder alone on precomputed log-mel batches (features are not part of this timing)."""

    def run(mel_batches):
        for mel in mel_batches:
            runner.encode(mel, dense=dense)
        return [], 0

    return run


def export_folders(model: str, config: PruneConfig, root: Path) -> dict[str, Path]:
    """Dense, the benchmarked config, and the layer 1 keep 0.4 encoders (the decoder is shared)."""
    from whisper_eas.exporter.export import export_model
    from whisper_eas.exporter.manifest import ExportManifest

    wanted = {"dense": None, "sparse": config, **ENCODER_CONFIGS}
    folders = {}
    for key, cfg in wanted.items():
        out = root / key
        try:
            if ExportManifest.load(out, verify=False).config == cfg:
                folders[key] = out
                continue
        except ValueError:
            pass
        export_model(model, cfg, out)
        folders[key] = out
    return folders


Backends = dict[str, tuple[str, Callable]]  # name -> (config label, function of the inputs)


def build(args, config: PruneConfig) -> tuple[Backends, Backends, int]:
    """End-to-end backends (on audio), encoder-only ones (on log-mel batches), and n_mels."""
    from whisper_eas.runners.ort_runner import OrtRunner
    from whisper_eas.runners.torch_runner import TorchRunner

    folders = export_folders(args.model, config, Path(args.export_dir))
    ort_dense = OrtRunner(folders["dense"], threads=args.threads)
    ort_sparse = OrtRunner(folders["sparse"], threads=args.threads)
    torch_sparse = TorchRunner(args.model, prune=config)
    torch_dense = TorchRunner(args.model, hf_model=torch_sparse.model)
    language = "en" if torch_sparse.tokenizer.multilingual else None
    options = DecodingOptions(language=language)
    label = config.format()
    backends = {
        "onnxruntime dense": ("dense", ours(ort_dense, options, args.batch_size)),
        "onnxruntime sparse": (label, ours(ort_sparse, options, args.batch_size)),
        "pytorch dense": ("dense", ours(torch_dense, options, args.batch_size)),
        "pytorch sparse": (label, ours(torch_sparse, options, args.batch_size)),
    }
    if not args.no_faster_whisper:
        backends.update(faster_whisper_backends(args, torch_sparse, language))
    encoders = {"encoder onnxruntime dense": ("dense", encoder_only(ort_dense, dense=True))}
    for key, cfg in ENCODER_CONFIGS.items():
        runner = OrtRunner(folders[key], threads=args.threads)
        encoders[f"encoder onnxruntime {key.removeprefix('encoder-')}"] = (cfg.format(), encoder_only(runner, dense=False))
    return backends, encoders, ort_dense.n_mels


def faster_whisper_backends(args, runner, language) -> dict[str, tuple[str, Callable]]:
    from faster_whisper import WhisperModel

    from whisper_eas.checkpoints.registry import embedded_ct2_dir

    from whisper_eas.decoding import initial_tokens

    prompt = initial_tokens(runner.tokenizer, DecodingOptions(language=language), language or "en")
    out = {}
    with tempfile.TemporaryDirectory() as scratch:  # the joined model.bin is only read while loading
        ct2_dir = Path(args.ct2_dir) if args.ct2_dir else embedded_ct2_dir(args.model, Path(scratch))
        for compute in ("int8", "float32"):
            fw = WhisperModel(str(ct2_dir), device="cpu", compute_type=compute, cpu_threads=args.threads or 0)
            out[f"ct2-windows {compute}"] = ("dense", ct2_windows(fw, prompt, runner.n_mels, args.batch_size))
            out[f"faster-whisper {compute}"] = ("dense", fw_transcribe(fw, language))
    return out


def measure(backends: dict, inputs: list, refs: list[str], repeats: int) -> list[Measured]:
    """Warm every backend on the first inputs, then `repeats` rounds with the backends taking turns
    (`benchmark.timing.take_turns`: one item, the whole pass)."""
    runs = {name: fn for name, (_, fn) in backends.items()}
    turns = take_turns(runs, [inputs], repeats, warmup=[inputs[:2]])
    rows = []
    for name, (label, _) in backends.items():
        texts, fallbacks = turns[name].last[0]
        row = Measured(name, label, turns[name].totals.seconds, texts, fallbacks=fallbacks)
        if row.texts:
            row.wer = corpus_wer(list(zip(refs, row.texts)))[0]
        rows.append(row)
    return rows


def machine() -> dict[str, str | int]:
    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib import metadata

    versions = {}
    for package in ("torch", "onnxruntime", "ctranslate2", "faster-whisper"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return {"cpu": cpu, "cores": os.cpu_count() or 0, "python": platform.python_version(), **versions}


def markdown(rows: list[Measured], encoders: list[Measured], info: dict, n: int, args) -> str:
    base = next(r for r in rows if r.name == "onnxruntime dense").median
    fw = next((r.median for r in rows if r.name == "faster-whisper int8"), None)
    lines = [f"Machine: {info['cpu']}, {info['cores']} cores, threads {args.threads or 'default'}; "
             f"{n} utterances, batch {args.batch_size}, {args.repeats} repeats (median, min-max).", "",
             "| backend | config | median s | min-max s | ms / utterance | vs ORT dense | vs faster-whisper int8 "
             "| WER % | guard re-runs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.config} | {r.median:.2f} | {min(r.times):.2f}-{max(r.times):.2f} | "
                     f"{1000 * r.median / n:.0f} | {base / r.median:.2f}x | "
                     f"{f'{fw / r.median:.2f}x' if fw else '-'} | {r.wer:.2f} | {r.fallbacks} |")
    dense = encoders[0]
    lines += ["", "| encoder only | config | median s | min-max s | speedup |", "|---|---|---|---|---|"]
    for r in encoders:
        lines.append(f"| {r.name} | {r.config} | {r.median:.2f} | {min(r.times):.2f}-{max(r.times):.2f} | "
                     f"{dense.median / r.median:.2f}x |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class BenchSpec:
    """What `whisper-eas bench` measures; stored with the results."""

    manifest: str
    json: str
    markdown: str
    model: str = "tiny.en"
    config: PruneConfig | None = None  # the sparse config (None: the model's shipped one)
    limit: int | None = None
    batch_size: int = 8
    repeats: int = 3
    threads: int | None = None  # for every backend (None: each library's own)
    export_dir: str = str(Path(tempfile.gettempdir()) / "whisper-eas-bench")
    ct2_dir: str | None = None  # faster-whisper CT2 folder (None: the embedded model's)
    no_faster_whisper: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")
        if self.config is None and shipped_config(self.model) is None:
            raise ConfigError(f"{self.model} ships dense (no shipped config): name one (--layer and --keep-ratio, or --prune)")


def run(args: BenchSpec) -> str:
    """Measure, write the markdown table and the JSON, and return the table."""
    if args.threads:
        torch.set_num_threads(args.threads)
    config = args.config or shipped_config(args.model)
    utts = [u for u in read_manifest(args.manifest, args.limit)]
    audios = [load_audio(u.path) for u in utts]
    keep = [i for i, a in enumerate(audios) if a.shape[0] <= N_SAMPLES]  # one 30 s window each
    utts, audios = [utts[i] for i in keep], [audios[i] for i in keep]
    refs = [u.text for u in utts]
    backends, encoder_backends, n_mels = build(args, config)
    rows = measure(backends, audios, refs, args.repeats)
    mels = [torch.from_numpy(np.stack([window_features(a, n_mels) for a in group]))
            for group in _batches(audios, args.batch_size)]
    encoders = measure(encoder_backends, mels, refs, args.repeats)
    info = machine()
    table = markdown(rows, encoders, info, len(audios), args)
    atomic_write_text(Path(args.markdown), table)
    settings = {k: v for k, v in asdict(args).items() if k != "config"}
    payload = {"machine": info, "args": settings, "config": config.to_dict(), "prune": config.format(),
               "n_utterances": len(audios),
               "results": [asdict(r) | {"median": r.median} for r in rows + encoders]}
    atomic_write_json(Path(args.json), payload)
    return table
