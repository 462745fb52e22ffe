"""Long-form CPU benchmark: whole recordings end to end, our systems beside faster-whisper's.

The real job: long recordings transcribed with timestamps, openai/whisper's sequential algorithm
(previous-text conditioning, temperature fallback), greedy. Every system runs in this one process
on the same decoded 16 kHz audio in memory, one file at a time:

* ours: ONNX Runtime graphs, dense, the shipped sparse config and any `--prune` config, float32
  and int8 (`trt-transcribe`'s defaults on a CPU are `shipped int8`), sequential
  (`Transcriber.transcribe` per file) and batched (`trt-transcribe --batched`: VAD chunks,
  `--fw-batch` at a time); optionally PyTorch (`--pytorch`);
* faster-whisper (CTranslate2, the same model) int8 and float32: `WhisperModel.transcribe` per
  file (beam 1, no VAD, its own long-form loop), and `BatchedInferencePipeline` (batch 8, its
  Silero VAD chunks decoded as a batch, no conditioning, no timestamps).

One warm-up pass on a 30 s excerpt first, then `--repeats` rounds with the systems taking turns
(`benchmark.timing.take_turns`: per round, or per file with `--turns file`, so machine drift
hits all alike); median seconds, RTFx (audio seconds / wall seconds), WER after
Whisper's English normalizer against the manifest's reference, and memory (resident MB the
system's model added when it was built, and the peak working set above that during its runs,
from /proc: Linux only). `--profile` adds a per-stage breakdown of our systems (features,
encoder, cross keys/values, decoder steps, the rest: Python). Other systems join by adding a
builder to `SYSTEMS` (name -> function of the benchmark's arguments returning a `System`).

    whisper-eas bench --longform --model tiny.en \\
        --manifest ../shared/data/speech-dev/manifest-long.tsv \\
        --manifest ../shared/data/speech-val/manifest-long.tsv --json lf.json --markdown lf.md
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from whisper_eas.audio import SAMPLE_RATE, load_audio
from whisper_eas.benchmark.timing import take_turns
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.evaluation.wer import corpus_wer
from whisper_eas.io_utils import atomic_write_json, atomic_write_text

Transcribe = Callable[[np.ndarray], str]  # one file's samples -> its text


@dataclass
class System:
    """One benchmarked system: how it transcribes a file, and what it is."""

    name: str
    transcribe: Transcribe
    kind: str = "sequential"  # or "batched"
    load_mb: float = 0.0  # resident memory its model added when built
    runner: object = None  # ours: the runner, for `--profile`


@dataclass
class Row:
    name: str
    kind: str
    times: list[float] = field(default_factory=list)  # seconds per round over every file
    file_times: list[list[float]] = field(default_factory=list)  # per round, per file
    texts: list[str] = field(default_factory=list)
    wer: float = float("nan")
    load_mb: float = 0.0
    peak_mb: float = 0.0
    profile: dict[str, float] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def rss_mb() -> float:
    return _status("VmRSS")


def _status(key: str) -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def reset_peak() -> None:
    """Linux: `5` in clear_refs resets the peak resident set size (VmHWM) to the current one."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def built(name: str, make: Callable[[], tuple[Transcribe, object]], kind: str = "sequential") -> System:
    before = rss_mb()
    transcribe, runner = make()
    return System(name, transcribe, kind, max(0.0, rss_mb() - before), runner)


# ---- our systems -----------------------------------------------------------------------------

def ours(model: str, prune, precision: str, threads: int | None) -> tuple[Transcribe, object]:
    """ONNX Runtime on the cached export `trt-transcribe` would use, sequential long-form per file."""
    from whisper_eas.runners.cached_export import cached_export
    from whisper_eas.runners.ort_runner import OrtRunner
    from whisper_eas.transcribe import Transcriber

    folder = cached_export(model, prune, precision).folder
    runner = OrtRunner(folder, threads=threads, verify=False)
    transcriber = Transcriber(runner, batch_size=1)
    return (lambda audio: transcriber.transcribe(audio).text), runner


def ours_pytorch(model: str, prune) -> tuple[Transcribe, object]:
    from whisper_eas.runners.torch_runner import TorchRunner
    from whisper_eas.transcribe import Transcriber

    runner = TorchRunner(model, prune=prune)
    transcriber = Transcriber(runner, batch_size=1)
    return (lambda audio: transcriber.transcribe(audio).text), runner


def _our_configs(args, batched: bool = False) -> list[tuple[str, object, str]]:
    """(label, prune config, precision) of our rows: dense and the model's shipped config in that
    mode (skipped for a model that ships dense there) and any `--prune` configs, at each precision
    asked for."""
    from whisper_eas.defaults import shipped_config

    shipped = shipped_config(args.model, batched=batched)
    configs = [(label, prune) for label, prune in (("dense", None), ("shipped", shipped))
               if label in args.configs and not (label == "shipped" and shipped is None)]
    configs += [(prune.format(), prune) for prune in getattr(args, "prune", None) or ()]  # --prune: named configs
    return [(label, prune, precision) for precision in args.precisions for label, prune in configs]


def our_systems(args) -> list[System]:
    from whisper_eas.defaults import shipped_config

    systems = [built(f"ours onnxruntime {label} {precision}",
                     lambda p=prune, q=precision: ours(args.model, p, q, args.threads))
               for label, prune, precision in _our_configs(args)]
    shipped = shipped_config(args.model)
    if args.pytorch and shipped is not None:
        systems.append(built("ours pytorch shipped fp32", lambda: ours_pytorch(args.model, shipped)))
    return systems


def ours_batched(model: str, prune, precision: str, threads: int | None, batch_size: int) -> tuple[Transcribe, object]:
    """The same cached export in batched long-form (`trt-transcribe --batched`): a file's VAD
    chunks decoded `batch_size` at a time, no previous text, no timestamps (faster-whisper's
    batched pipeline, to which it is compared at the same batch size)."""
    from whisper_eas.batched_longform import BatchedOptions
    from whisper_eas.runners.cached_export import cached_export
    from whisper_eas.runners.ort_runner import OrtRunner
    from whisper_eas.transcribe import Transcriber

    runner = OrtRunner(cached_export(model, prune, precision).folder, threads=threads, verify=False)
    transcriber = Transcriber(runner, batch_size=batch_size, batched=BatchedOptions())
    return (lambda audio: transcriber.transcribe(audio).text), runner


def our_batched_systems(args) -> list[System]:
    return [built(f"ours onnxruntime {label} {precision} batched {args.fw_batch}",
                  lambda p=prune, q=precision: ours_batched(args.model, p, q, args.threads, args.fw_batch),
                  kind="batched")
            for label, prune, precision in _our_configs(args, batched=True)]


# ---- faster-whisper --------------------------------------------------------------------------

def faster_whisper_systems(args, ct2_dir: Path) -> list[System]:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    language = "en"  # the data is English; a multilingual model is told so, as ours is
    systems = []
    for compute in args.fw_types:
        def sequential(compute=compute):
            model = WhisperModel(str(ct2_dir), device="cpu", compute_type=compute, cpu_threads=args.threads or 0)

            def run(audio):
                segments, _ = model.transcribe(audio, beam_size=1, language=language, vad_filter=False)
                return " ".join(s.text.strip() for s in segments).strip()

            return run, model

        def batched(compute=compute):
            model = WhisperModel(str(ct2_dir), device="cpu", compute_type=compute, cpu_threads=args.threads or 0)
            pipeline = BatchedInferencePipeline(model)

            def run(audio):
                segments, _ = pipeline.transcribe(audio, beam_size=1, language=language, batch_size=args.fw_batch)
                return " ".join(s.text.strip() for s in segments).strip()

            return run, model

        if "sequential" in args.fw_modes:
            systems.append(built(f"faster-whisper {compute}", sequential))
        if "batched" in args.fw_modes:
            systems.append(built(f"faster-whisper {compute} batched {args.fw_batch}", batched, kind="batched"))
    return systems


# ---- extension point: other systems (e.g. our batched long-form) register a builder here -------

SYSTEMS: dict[str, Callable[[argparse.Namespace], list[System]]] = {"ours": our_systems,
                                                                    "ours-batched": our_batched_systems}


# ---- measurement -----------------------------------------------------------------------------

def measure(systems: list[System], audios: list[np.ndarray], refs: list[str], repeats: int,
            turns: str = "round") -> list[Row]:
    """Warm-up on a 30 s excerpt, then `repeats` rounds with the systems taking turns
    (`benchmark.timing.take_turns`): each system over every file in turn (`turns="round"`), or
    every system on one file before the next file (`"file"`)."""
    rows = {s.name: Row(s.name, s.kind, load_mb=s.load_mb) for s in systems}

    @contextmanager
    def peak_memory(name: str) -> Iterator[None]:
        base = rss_mb()
        reset_peak()
        yield
        rows[name].peak_mb = max(rows[name].peak_mb, _status("VmHWM") - base)

    runs = {s.name: s.transcribe for s in systems}
    timed = take_turns(runs, audios, repeats, warmup=[audios[0][: 30 * SAMPLE_RATE]],
                       order="round" if turns == "round" else "item", around=peak_memory)
    for name, row in rows.items():
        row.file_times = timed[name].seconds
        row.times = timed[name].totals.seconds
        row.texts = timed[name].last
    return list(rows.values())


def profile_ours(system: System, audios: list[np.ndarray]) -> dict[str, float]:
    """Seconds per stage of one pass of an ONNX Runtime system (see `benchmark.stages`)."""
    from whisper_eas.benchmark.stages import stage_profile

    return stage_profile(system.runner, system.transcribe, audios)


def load_manifests(paths: list[str], limit: int | None) -> tuple[list[str], list[np.ndarray], list[str]]:
    ids, audios, refs = [], [], []
    for path in paths:
        for utt in read_manifest(path, limit):
            ids.append(utt.id)
            audios.append(load_audio(utt.path))
            refs.append(utt.text)
    return ids, audios, refs


def load_average() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


# ---- report ----------------------------------------------------------------------------------

@dataclass
class SetResult:
    """One system on one manifest's files: median seconds over rounds, RTFx, WER."""

    seconds: float
    rtfx: float
    wer: float


def by_set(row: Row, sets: dict[str, list[int]], refs: list[str], durations: list[float]) -> dict[str, SetResult]:
    out = {}
    for name, index in sets.items():
        seconds = statistics.median(sum(round_[i] for i in index) for round_ in row.file_times)
        audio = sum(durations[i] for i in index)
        wer = corpus_wer([(refs[i], row.texts[i]) for i in index])[0]
        out[name] = SetResult(seconds, audio / seconds, wer)
    return out


def int8_deltas(rows: list[Row], ids: list[str], refs: list[str], sets: dict[str, list[int]]) -> list[str]:
    """Paired WER deltas, int8 minus fp32 of the same graphs, per set (utterances resampled)."""
    from whisper_eas.evaluation.stats import pair_transcripts, paired_bootstrap

    named = {r.name: r for r in rows}
    lines = []
    for fp32 in [r for r in rows if r.name.startswith("ours onnxruntime") and r.name.endswith(" fp32")]:
        int8 = named.get(fp32.name.removesuffix("fp32") + "int8")
        if int8 is None:
            continue
        for set_name, index in sets.items():
            pairs = pair_transcripts({ids[i]: refs[i] for i in index}, {ids[i]: fp32.texts[i] for i in index},
                                     {ids[i]: int8.texts[i] for i in index})
            delta = paired_bootstrap(pairs)
            lines.append(f"| {fp32.name.removesuffix(' fp32')} | {set_name} | {delta.describe()} |")
    return lines


def markdown(rows: list[Row], sets: dict[str, list[int]], ids: list[str], refs: list[str], durations: list[float],
             info: dict, args) -> str:
    reference = next((r for r in rows if r.name == "faster-whisper int8"), None)
    batched_ref = next((r for r in rows if r.name.startswith("faster-whisper int8 batched")), None)
    lines = [f"Long-form (whole recordings, sequential unless marked batched). Machine: {info['cpu']}, "
             f"{info['cores']} cores, load average {info['load_before']} before / {info['load_after']} after; "
             f"model {args.model}, threads {args.threads or 'default'}, {args.repeats} rounds (median), "
             "systems taking turns in one process after a warm-up.", ""]
    for set_name, index in sets.items():
        audio = sum(durations[i] for i in index)
        ref = by_set(reference, sets, refs, durations)[set_name] if reference else None
        ref_b = by_set(batched_ref, sets, refs, durations)[set_name] if batched_ref else None
        lines += [f"**{set_name}**: {len(index)} recordings, {audio:.0f} s of audio", "",
                  "| system | seconds | RTFx | vs faster-whisper int8 | vs its batched | WER % | model MB "
                  "| peak working MB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in rows:
            result = by_set(row, sets, refs, durations)[set_name]
            versus = f"{ref.seconds / result.seconds:.2f}x" if ref else "-"
            versus_b = f"{ref_b.seconds / result.seconds:.2f}x" if ref_b else "-"
            lines.append(f"| {row.name} | {result.seconds:.2f} | {result.rtfx:.1f} | {versus} | {versus_b} | "
                         f"{result.wer:.2f} | "
                         f"{row.load_mb:.0f} | {row.peak_mb:.0f} |")
        lines.append("")
    deltas = int8_deltas(rows, ids, refs, sets)
    if deltas:
        lines += ["int8 vs float32 of our graphs (paired bootstrap over recordings):", "",
                  "| graphs | set | fp32 -> int8 |", "|---|---|---|", *deltas, ""]
    profiled = [r for r in rows if r.profile]
    if profiled:
        from whisper_eas.benchmark.stages import STAGES

        lines += [f"Where our time goes (one pass over the first {getattr(args, 'profile_files', 2)} recordings, "
                  "seconds):", "",
                  "| system | " + " | ".join(STAGES) + " | total | decoder steps | ms / step |",
                  "|---|" + "---:|" * (len(STAGES) + 3)]
        for r in profiled:
            p = r.profile
            per_step = 1000 * p["decoder_steps"] / max(p["steps"], 1)
            lines.append(f"| {r.name} | " + " | ".join(f"{p[s]:.2f}" for s in STAGES)
                         + f" | {p['total']:.2f} | {p['steps']} | {per_step:.1f} |")
        lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    """Run the benchmark `whisper-eas bench --longform` describes (its options are `args`)."""
    import tempfile

    import torch

    from whisper_eas.benchmark.cpu import machine

    if args.threads:
        torch.set_num_threads(args.threads)
    ids, audios, refs = load_manifests(args.manifest, args.limit)
    sets: dict[str, list[int]] = {}
    position = 0
    for path in args.manifest:
        count = len(read_manifest(path, args.limit))
        sets[Path(path).resolve().parent.name] = list(range(position, position + count))
        position += count
    if len(sets) > 1:
        sets["all"] = list(range(len(ids)))
    durations = [len(a) / SAMPLE_RATE for a in audios]
    load_before = load_average()
    systems = []
    for name, builder in SYSTEMS.items():
        if args.systems is None or name in args.systems:
            systems += builder(args)
    with tempfile.TemporaryDirectory() as scratch:
        if not args.no_faster_whisper:
            from whisper_eas.checkpoints.registry import embedded_ct2_dir

            ct2 = Path(args.ct2_dir) if args.ct2_dir else embedded_ct2_dir(args.model, Path(scratch))
            systems += faster_whisper_systems(args, ct2)
        rows = measure(systems, audios, refs, args.repeats, getattr(args, "turns", "round"))
    if args.profile:
        for system, row in zip(systems, rows):
            if "onnxruntime" in system.name and system.kind == "sequential":  # ours: every config and precision
                row.profile = profile_ours(system, audios[: getattr(args, "profile_files", 2)])
    info = {**machine(), "load_before": load_before, "load_after": load_average()}
    for row in rows:
        row.wer = corpus_wer(list(zip(refs, row.texts)))[0]
    table = markdown(rows, sets, ids, refs, durations, info, args)
    atomic_write_text(Path(args.markdown), table)
    settings = {**vars(args), "prune": [c.format() for c in getattr(args, "prune", None) or ()]}
    payload = {"machine": info, "args": settings, "ids": ids, "durations": durations, "sets": sets,
               "results": [asdict(r) | {"median": r.median,
                                        "sets": {k: asdict(v) for k, v in by_set(r, sets, refs, durations).items()}}
                           for r in rows]}
    atomic_write_json(Path(args.json), payload)
    print(table)
