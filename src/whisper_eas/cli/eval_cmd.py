"""`whisper-eas eval`: WER of the text `trt-transcribe` produces, over a manifest of files of any length."""

from __future__ import annotations

from pathlib import Path

import click

from whisper_eas.cli.common import (batched_options, friendly_errors, model_option, prune_options, resolve_model,
                                    resolve_prune)


@click.command("eval")
@model_option
@click.option("--manifest", required=True, type=click.Path(path_type=Path), help="TSV: id path duration_s text.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N utterances (N >= 1).")
@prune_options
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--backend", default="auto", show_default=True,
              help="Runner backend: auto (as trt-transcribe: the cached ONNX Runtime graphs on a CPU), pytorch, onnxruntime, tensorrt.")
@click.option("--engine-dir", type=click.Path(path_type=Path), help="Export or engine folder (onnxruntime, tensorrt).")
@click.option("--head-precision", type=click.Choice(["model", "tf32", "float32"]),
              help="CUDA-graph runner (--device cuda): run the encoder up to the pruning layer in the model's "
                   "dtype (default), TF32 or float32.")
@click.option("--beam-size", type=int, help="Beam search width (default: greedy).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Windows decoded together (across files).")
@click.option("--no-guard", is_flag=True, help="Do not re-run degenerate sparse windows dense.")
@click.option("--batched", is_flag=True,
              help="As trt-transcribe --batched: each file's speech chunks (Silero VAD) decoded as independent "
                   "windows, --batch-size at a time, no previous text, no timestamps.")
@click.option("--vad-filter/--no-vad-filter", default=None,
              help="As trt-transcribe: decode only the speech Silero VAD finds (sequential mode; default: on "
                   "where whisper-eas[vad] is installed).")
@click.option("--language", help="Language code for multilingual models (default: detect per file).")
@click.option("--json", "json_out", type=click.Path(path_type=Path),
              help="Write the full report here (per-utterance errors, words, language, windows).")
@click.option("--against", type=click.Path(path_type=Path),
              help="An earlier --json report (e.g. dense): print the paired delta with its 95% interval, per source.")
@friendly_errors
def command(model, manifest, limit, dense, layer, keep_ratio, mass, strategy, scoring, query_stride, merge,
            device, backend, engine_dir, head_precision, beam_size, batch_size, no_guard, batched, language,
            json_out, against, vad_filter=None) -> None:
    """Transcribe a manifest as trt-transcribe does (timestamps, fallback, long files in 30 s
    windows) and score WER (Whisper English normalizer + jiwer). Exits 1 when nothing was scored."""
    from whisper_eas.cli.progress import Progress
    from whisper_eas.evaluation.evaluate import EvalError, check_scored, evaluate
    from whisper_eas.evaluation.manifest import read_manifest
    from whisper_eas.guard import GuardOptions
    from whisper_eas.io_utils import atomic_write_json
    from whisper_eas.runners.factory import make_runner
    from whisper_eas.transcribe import Transcriber

    prune = resolve_prune(model, dense, layer, keep_ratio, mass, strategy, scoring, query_stride, merge, engine_dir,
                          device, batched)
    model = resolve_model(model, engine_dir)
    utterances = read_manifest(manifest, limit)
    if not utterances:
        raise click.ClickException(f"{manifest}: no utterances (only a header?): nothing to evaluate")
    extra = {"head_precision": head_precision} if head_precision else {}
    runner = make_runner(backend=backend, model=model, prune=prune, device=device, engine_dir=engine_dir,
                         batched=batched, **extra)
    # trt-transcribe's decoding defaults (Transcriber's), with only what was named changed
    transcriber = Transcriber(runner, guard=GuardOptions(enabled=not no_guard), batch_size=batch_size,
                              batched=batched_options(batched, None))
    named = (("language", language), ("beam_size", beam_size), ("vad_filter", vad_filter))
    transcriber = transcriber.with_settings(**{k: v for k, v in named if v is not None})
    progress = Progress(len(utterances), sum(u.duration_s for u in utterances))
    try:
        report = evaluate(transcriber, utterances,
                          progress=lambda done, total: progress.advance(utterances[done - 1].duration_s))
    finally:
        progress.close()
    for failed in (u for u in report.utterances if u.error):
        click.echo(f"failed: {failed.error}", err=True)
    if json_out:
        atomic_write_json(json_out, report.to_dict())
    try:
        check_scored(report)
    except EvalError as error:
        raise click.ClickException(f"{manifest}: {error}") from None
    click.echo(report.summary())
    if against:
        from whisper_eas.cli.compare_cmd import print_comparison, read_transcripts

        refs, hyps, label = read_transcripts(str(against))
        ours = {u.id: u.hyp for u in report.utterances if u.error is None and u.hyp is not None}
        print_comparison({k: v for k, v in refs.items() if k in ours}, hyps, ours, label, "this run")
