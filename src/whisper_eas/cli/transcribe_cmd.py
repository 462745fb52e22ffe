"""`trt-transcribe`: audio files or folders in; txt, json, srt or vtt out; resumable, batched."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from whisper_eas.cli.common import (batched_options, friendly_errors, model_option, prune_options, quiet_libraries,
                                    resolve_model, resolve_prune)
from whisper_eas.cli.inputs import InputFile, discover
from whisper_eas.audio import display_path
from whisper_eas.cli.progress import Progress, RunStats
from whisper_eas.io_utils import check_writable, clean_orphans
from whisper_eas.outputs import FORMATS, expand_formats, outputs_exist, render, write_outputs
from whisper_eas.runners.factory import BACKEND_CHOICES


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", metavar="FILE_OR_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_option
@click.option("--engine-dir", type=click.Path(path_type=Path), help="ONNX export folder or TensorRT engines.")
@click.option("--backend", default="auto", show_default=True, type=click.Choice(BACKEND_CHOICES),
              help="auto: TensorRT with engines and a GPU, else ONNX Runtime with an export; on a CPU without "
                   "--engine-dir, ONNX Runtime graphs exported once into the model cache; else PyTorch. "
                   "onnxruntime without --engine-dir runs those cached graphs too.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@prune_options
@click.option("--language", help="Language code (multilingual models; default: detect per file).")
@click.option("--task", default="transcribe", show_default=True, type=click.Choice(["transcribe", "translate"]))
@click.option("--beam-size", type=click.IntRange(min=1), help="Beam search width (default: greedy).")
@click.option("--word-timestamps", is_flag=True,
              help="Word start/end/probability in the json (cross-attention alignment): PyTorch, or ONNX Runtime "
                   "on an export with an alignment graph (the cached default exports and --engine-dir folders "
                   "exported by this version).")
@click.option("--highlight-words", is_flag=True,
              help="srt/vtt: one cue per word with that word underlined (<u>), as openai-whisper's "
                   "--highlight_words; needs --word-timestamps.")
@click.option("--hallucination-silence-threshold", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="With --word-timestamps: skip silences longer than this around likely hallucinations "
                   "(openai-whisper's hallucination_silence_threshold). Sequential mode (not --batched).")
@click.option("--without-timestamps", is_flag=True,
              help="Decode no timestamp tokens (fewer decoder steps): each 30 s window is one segment. What "
                   "the service does for json and text responses of clips up to 30 s.")
@click.option("--multilingual", is_flag=True,
              help="Detect the language of every 30 s window, not only the first (faster-whisper's multilingual): "
                   "a recording that changes language is decoded in each part's language; the json gives each "
                   "segment's language. Multilingual models, sequential mode, without --language.")
@click.option("--initial-prompt", help="Text that conditions the first window (names, spelling, style); with "
                                       "--batched, every chunk (as faster-whisper's batched pipeline).")
@click.option("--hotwords", help="Text kept in front of every window's prompt (faster-whisper's hotwords).")
@click.option("--format", "fmt", default="txt", show_default=True, type=click.Choice(FORMATS + ("all",)))
@click.option("--output-dir", type=click.Path(path_type=Path), help="Write outputs here (default: print to stdout).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Windows decoded together: across files, or within a file with --batched.")
@click.option("--batched", is_flag=True,
              help="Batched long-form: speech chunks (Silero VAD) of each file decoded as independent windows, "
                   "--batch-size at a time. Faster on long recordings; the default sequential mode conditions on "
                   "the previous text and is usually a little more accurate. Needs whisper-eas[vad].")
@click.option("--vad-filter/--no-vad-filter", default=None,
              help="Decode only the speech Silero VAD finds (faster-whisper's vad_filter): silence, tones and "
                   "noise are skipped in one VAD pass, times stay the recording's [default: on where "
                   "whisper-eas[vad] is installed]. --batched always cuts at the VAD's speech.")
@click.option("--vad-threshold", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              help="--batched: speech probability from which a 32 ms window counts as speech [default: 0.5].")
@click.option("--overwrite", is_flag=True, help="Redo files whose outputs already exist (default: skip them).")
@click.option("--allow-partial", is_flag=True,
              help="Transcribe what a truncated or corrupt file yields (with a warning) instead of failing it.")
@click.option("--progress-interval", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between progress lines when stderr is not a terminal (a log file).")
@friendly_errors
def command(inputs, model, engine_dir, backend, device, dense, layer, keep_ratio, mass, strategy, scoring,
            query_stride, merge, language, task, beam_size, fmt, output_dir, batch_size, overwrite,
            allow_partial, progress_interval, batched, vad_threshold, word_timestamps=False, initial_prompt=None,
            hotwords=None, highlight_words=False, hallucination_silence_threshold=None,
            without_timestamps=False, multilingual=False, vad_filter=None) -> None:
    """Transcribe audio files and folders (default: embedded tiny.en; config and precision from
    `whisper-eas defaults`; the best backend here)."""
    from whisper_eas.transcribe import Transcriber

    formats = expand_formats(fmt)
    if output_dir is None and len(formats) > 1:
        raise click.UsageError("--format all writes several files: give --output-dir")
    _check_device(device)
    if highlight_words and not word_timestamps:
        raise click.UsageError("--highlight-words needs --word-timestamps")
    if hallucination_silence_threshold is not None and not word_timestamps:
        raise click.UsageError("--hallucination-silence-threshold needs --word-timestamps")
    if without_timestamps and word_timestamps:
        raise click.UsageError("--without-timestamps cannot be combined with --word-timestamps")
    if multilingual and (batched or language is not None):
        raise click.UsageError("--multilingual detects each window's language: not with --language or --batched")
    if vad_threshold is not None and not batched:
        raise click.UsageError("--vad-threshold applies to --batched only")
    if hallucination_silence_threshold is not None and batched:
        raise click.UsageError("--hallucination-silence-threshold skips silences between sequential windows: "
                               "not with --batched (its VAD leaves silence out)")
    _check_text(initial_prompt=initial_prompt, hotwords=hotwords, language=language)
    files = discover(list(inputs))
    if not files:
        raise click.UsageError(f"no audio files found in {', '.join(map(display_path, inputs))}")
    stats = RunStats()
    _prepare_output_dir(output_dir, files, stats)
    todo = _skip_finished(files, output_dir, formats, overwrite, stats)
    if not todo:
        click.echo(stats.summary(), err=True)
        return
    # beside --engine-dir, an unnamed model / config is the folder's, a named one must match it
    prune = resolve_prune(model, dense, layer, keep_ratio, mass, strategy, scoring, query_stride, merge, engine_dir,
                          device, batched)
    model = resolve_model(model, engine_dir)
    settings = dict(language=language, task=task, beam_size=beam_size, batch_size=batch_size,
                    word_timestamps=word_timestamps, initial_prompt=initial_prompt, hotwords=hotwords,
                    without_timestamps=without_timestamps, multilingual=multilingual,
                    hallucination_silence_threshold=hallucination_silence_threshold, allow_partial=allow_partial,
                    batched=batched_options(batched, vad_threshold))
    if vad_filter is not None:
        if vad_filter:
            from whisper_eas.vad import model_path

            model_path()  # asked for by name: one line saying what to install, not a silent no-op
        settings["vad_filter"] = vad_filter
    transcriber = Transcriber.from_model(model, prune, backend, device, engine_dir, **settings)
    info = transcriber.runner.describe()
    click.echo(f"backend: {info['backend']} on {info['device']} ({transcriber.backend_reason}); "
               f"model {info['model']}, {_prune_label(transcriber)}", err=True)
    stats.restart()  # the real-time factor counts transcription, not model loading
    _run(transcriber, todo, output_dir, formats, stats, progress_interval, highlight_words)
    click.echo(stats.summary(), err=True)
    if stats.failed:
        sys.exit(1)


def _skip_finished(files: list[InputFile], output_dir: Path | None, formats, overwrite: bool,
                   stats: RunStats) -> list[InputFile]:
    if output_dir is None or overwrite:
        return files
    todo = [f for f in files if not outputs_exist(f.name, output_dir, formats)]
    stats.skipped = len(files) - len(todo)
    return todo


def _check_text(**options: str | None) -> None:
    """Option text must be text: bytes that are not UTF-8 (`$'\\xff'`) reach Python as lone
    surrogates, which the tokenizer rejects once per file; one line naming the option instead."""
    for name, text in options.items():
        if text is None:
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise click.BadParameter(f"{ascii(text)} is not valid UTF-8 text", param_hint=f"--{name.replace('_', '-')}") from None


def _check_device(device: str) -> None:
    """One line for a device this PyTorch cannot use (a CPU-only build asked for cuda)."""
    if device == "cpu":
        return
    if not device.startswith("cuda"):
        raise click.BadParameter(f"{device!r}: use cpu or cuda (cuda:N)", param_hint="--device")
    from whisper_eas.deps import cuda_available

    if not cuda_available():
        raise click.BadParameter(f"{device!r}: no CUDA GPU is visible to this PyTorch (CPU-only build, or no "
                                 "GPU/driver); use --device cpu", param_hint="--device")


def _prepare_output_dir(output_dir: Path | None, files: list[InputFile], stats: RunStats) -> None:
    """Fail early on an unwritable folder, clear temporaries a killed run left, and say which inputs
    were given other output names so that none overwrites another."""
    for f in files:
        if f.renamed:
            stats.renamed += 1
            click.echo(f"note: {display_path(f.path)} -> output name {display_path(f.name)} "
                       "(another input has the same name)", err=True)
    if output_dir is None:
        return
    check_writable(output_dir)
    removed = clean_orphans(output_dir)
    if removed:
        click.echo(f"removed {len(removed)} temporary file(s) an interrupted run left in {output_dir}", err=True)


def _run(transcriber, files: list[InputFile], output_dir: Path | None, formats, stats: RunStats,
         progress_interval: float = 60.0, highlight_words: bool = False) -> None:
    """Transcribe with windows batched across files; report and write each file as it finishes."""
    from whisper_eas.audio import probe_duration

    expected = [probe_duration(f.path) or 0.0 for f in files]
    progress = Progress(len(files), sum(expected), progress_interval)
    try:
        for outcome in transcriber.transcribe_many((f.path for f in files), progress=progress.windows):
            if outcome.error is not None:
                stats.failed += 1
                progress.write(f"error: {outcome.error}")
                progress.advance(expected[outcome.index])
                continue
            result, target = outcome.result, files[outcome.index]
            progress.advance(result.duration_s)
            try:
                _emit(result, target, output_dir, formats, progress, highlight_words)
            except (OSError, ValueError) as error:  # a full or read-only disk fails this file, not the run
                stats.failed += 1
                progress.write(f"error: {display_path(target.path)}: could not write outputs ({error})")
                continue
            for warning in result.warnings:
                progress.write(f"warning: {result.source}: {warning}")
            stats.partial += bool(result.warnings)
            stats.ok += 1
            stats.audio_s += result.duration_s
    finally:
        progress.close()


def _emit(result, target: InputFile, output_dir: Path | None, formats, progress: Progress,
          highlight_words: bool = False) -> None:
    if output_dir is None:
        click.echo(render(result, formats[0], highlight_words).rstrip("\n"))
        return
    write_outputs(result, output_dir, formats, target.name, highlight_words)
    suffix = formats[0] if len(formats) == 1 else "{" + ",".join(formats) + "}"
    progress.write(f"done {display_path(target.path)} ({result.duration_s:.1f} s audio) -> "
                   f"{display_path(output_dir / target.name)}.{suffix}")


def _prune_label(transcriber) -> str:
    prune = transcriber.runner.prune
    return "dense" if prune is None else f"sparse {prune.format()}"


def main() -> None:
    quiet_libraries()
    # SIGTERM (kill, a scheduler's stop) unwinds as an exit: a write in progress removes its temporary
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    command()


if __name__ == "__main__":
    main()
