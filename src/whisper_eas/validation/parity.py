"""Validate an export folder with Polygraphy: every output of every graph against PyTorch.

Real log-mel features (a manifest's audio) go through a Polygraphy data loader into ONNX Runtime
(`OnnxrtRunner(SessionFromOnnx(...))`); the PyTorch backend's outputs for the same feeds
(`exporter.reference`) are wrapped as Polygraphy `RunResults`, and `Comparator.compare_accuracy`
checks each output against its own tolerance. With `trt=True`, TensorRT (FP16) joins the
comparison (`validation.tensorrt`: the folder's engines when `engines.json` exists, else engines
built for the feeds, the prune step as the AttentivePrune plugin) with the FP16 tolerances below.
A mismatch raises `ParityError` carrying the per-output table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from whisper_eas.errors import ConfigError, InputError, WhisperEasError
from whisper_eas.exporter.manifest import ExportError, ExportManifest
from whisper_eas.exporter.reference import Case, Feed, decoder_cases, encoder_cases


@dataclass(frozen=True)
class Tolerance:
    """Polygraphy's check: with `stat="elemwise"` an element fails only if it exceeds both atol and
    rtol; with `stat="mean"` the output fails if its mean absolute and mean relative errors do."""

    atol: float
    rtol: float
    stat: str = "elemwise"


# Float32 ONNX Runtime vs float32 PyTorch. Hidden states: 1e-4 absolute, with a relative term;
# the encoder's output is allowed 1e-3: Whisper's outlier residual channel (|x| ~ 600 before the
# final norm, where one float32 ulp is 6e-5) makes two correct float32 kernels differ by a few
# 1e-4 after the norm on near-zero elements (dense tiny.en on tests/data: max 4.3e-4, mean 7e-7,
# the same with the graphs of a02c3a8), while a real bug moves the mean by orders of magnitude.
FP32: dict[str, Tolerance] = {
    "head_hidden": Tolerance(1e-4, 1e-4),
    "frame_scores": Tolerance(1e-6, 1e-4),
    "kept_hidden": Tolerance(1e-4, 1e-4),
    "kept_index": Tolerance(0.0, 0.0),
    "encoder_hidden": Tolerance(1e-3, 1e-4),
    "cross_k": Tolerance(1e-4, 1e-4),
    "cross_v": Tolerance(1e-4, 1e-4),
    "logits": Tolerance(1e-3, 1e-4),
    "new_self_k": Tolerance(1e-4, 1e-4),
    "new_self_v": Tolerance(1e-4, 1e-4),
}
# TensorRT FP16 engines vs float32 PyTorch.
FP16: dict[str, Tolerance] = {
    **{name: Tolerance(2e-2, 2e-2) for name in FP32},
    "frame_scores": Tolerance(1e-5, 5e-2),
    "kept_index": Tolerance(0.0, 0.0),
    "logits": Tolerance(1e-1, 5e-2),
}


# int8 graphs (`export --precision int8`: int8 weights per output channel, activations quantized
# per call) vs float32 PyTorch. Single elements of an int8 matmul can be off by a quantization step
# of their largest inputs, so each output is checked on its mean absolute error, at ~2.5-3x what
# tiny.en measures on real speech (encoder_hidden 0.053, cross k/v 0.012, self k/v 0.029,
# logits 0.44). Most of the logits' error is a per-row shift that softmax ignores (0.16 once
# centred; next-token agreement 98%, KL 0.011 nats on a real window); the end-to-end check is WER
# on real speech (docs/benchmarks.md). Graphs that stay float32 in an int8 folder (head, prune)
# keep the FP32 table: the kept frames are exactly float32's.
INT8: dict[str, Tolerance] = {
    **{name: Tolerance(4e-2, 0.0, "mean") for name in FP32},
    "encoder_hidden": Tolerance(0.15, 0.0, "mean"),
    "new_self_k": Tolerance(8e-2, 0.0, "mean"),
    "new_self_v": Tolerance(8e-2, 0.0, "mean"),
    "logits": Tolerance(1.2, 0.0, "mean"),
}


def tolerances(manifest: ExportManifest, graph: str) -> dict[str, Tolerance]:
    """The table one graph of a folder is checked with: INT8 for its quantized graphs, else FP32."""
    return INT8 if manifest.graph_precision(graph) == "int8" else FP32


def family(output: str) -> str:
    """Per-layer outputs (`new_self_k_3`) are checked and reported as their family (`new_self_k`)."""
    return output if output in FP32 else output.rsplit("_", 1)[0]


class ParityError(WhisperEasError, RuntimeError):
    """Some graph output differs from the PyTorch reference beyond its tolerance."""

    def __init__(self, report: "ValidationReport"):
        self.report = report
        failed = ", ".join(f"{r.graph}.{r.output} ({r.runner})" for r in report.failures)
        super().__init__(f"{report.table()}\nparity check failed for: {failed}")


@dataclass
class OutputParity:
    graph: str
    output: str
    runner: str
    max_abs: float
    max_rel: float
    tolerance: Tolerance
    passed: bool
    mean_abs: float = float("nan")


@dataclass
class ValidationReport:
    directory: Path
    rows: list[OutputParity] = field(default_factory=list)
    n_utterances: int = 0

    @property
    def failures(self) -> list[OutputParity]:
        return [r for r in self.rows if not r.passed]

    @property
    def passed(self) -> bool:
        return bool(self.rows) and not self.failures

    def table(self) -> str:
        lines = ["| graph | output | runner | max abs | max rel | mean abs | atol / rtol | ok |",
                 "|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            tol = f"{r.tolerance.atol:.0e} / {r.tolerance.rtol:.0e}"
            tol += f" ({r.tolerance.stat})" if r.tolerance.stat != "elemwise" else ""
            rel = f"{r.max_rel:.3g}" if np.isfinite(r.max_rel) else "-"
            lines.append(f"| {r.graph} | {r.output} | {r.runner} | {r.max_abs:.3g} | {rel} | {r.mean_abs:.3g} | "
                         f"{tol} | {'yes' if r.passed else 'NO'} |")
        return "\n".join(lines)


class FeedLoader:
    """A Polygraphy data loader: an iterable of feed dicts (here, the PyTorch reference's inputs)."""

    def __init__(self, feeds: Sequence[Feed]):
        self.feeds = list(feeds)

    def __iter__(self) -> Iterator[Feed]:
        return iter(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)


def mel_batches(manifest_tsv: str | Path, n_mels: int, limit: int | None = 4, batch: int = 2) -> list[torch.Tensor]:
    """Log-mel windows [B, n_mels, 3000] of a manifest's first `limit` utterances."""
    from whisper_eas.audio import load_audio
    from whisper_eas.evaluation.manifest import read_manifest
    from whisper_eas.features import window_features

    utterances = read_manifest(manifest_tsv, limit)
    if not utterances:
        raise InputError(f"{manifest_tsv}: no utterances to validate with")
    mels = [window_features(load_audio(u.path)[: 30 * 16000], n_mels) for u in utterances]
    return [torch.from_numpy(np.stack(mels[i : i + batch])) for i in range(0, len(mels), batch)]


def _reference_cases(manifest: ExportManifest, model, mels: Iterable[torch.Tensor]) -> dict[str, list[Case]]:
    from whisper_eas.decoding import DecodingOptions, initial_tokens
    from whisper_eas.tokenizer import WhisperTokenizer

    tokenizer = WhisperTokenizer.from_file(manifest.directory / "tokenizer.json", manifest.dims.multilingual)
    prompt = initial_tokens(tokenizer, DecodingOptions(), "en")
    cases: dict[str, list[Case]] = {name: [] for name in manifest.graphs}
    for mel in mels:
        encoder, hidden = encoder_cases(model, manifest.config, mel)
        for name, case in encoder.items():
            cases[name].append(case)
        for name, items in decoder_cases(model, hidden, prompt).items():
            cases[name].extend(items)
    return cases


def _trt_runner(manifest: ExportManifest, graph: str, feeds: list[Feed]):
    """TensorRT FP16 runner for one graph: the folder's engines if built, else one built now (lazy import)."""
    from whisper_eas.validation.tensorrt import validation_runner

    return validation_runner(manifest, graph, feeds)


def _simple_compare(**tolerances):
    """Polygraphy's elementwise comparison (`SimpleCompareFunc` from 0.53, `CompareFunc.simple` before)."""
    try:
        from polygraphy.comparator import SimpleCompareFunc
    except ImportError:
        from polygraphy.comparator import CompareFunc

        return CompareFunc.simple(**tolerances)
    return SimpleCompareFunc(**tolerances)


def _rows(
    results, graph: str, runner: str, index: int, reference: int, table: dict[str, Tolerance]
) -> list[OutputParity]:
    """Compare runner `index` with the PyTorch results at `reference`; one row per output family."""
    from polygraphy.comparator import Comparator

    outputs = list(results[reference][1][0].keys())
    tolerances = {name: table[family(name)] for name in outputs}
    compare = _simple_compare(atol={n: t.atol for n, t in tolerances.items()},
                              rtol={n: t.rtol for n, t in tolerances.items()},
                              check_error_stat={n: t.stat for n, t in tolerances.items()})
    with np.errstate(divide="ignore", invalid="ignore"):  # relative error of exact zeros
        accuracy = Comparator.compare_accuracy(results, comparisons=[(index, reference)], compare_func=compare)
    if not hasattr(accuracy, "keys"):  # Polygraphy >= 0.53: one AccuracyResult per compare function
        accuracy = accuracy[0]
    iterations = accuracy[(runner, "pytorch")]
    rows = []
    for group in dict.fromkeys(family(name) for name in outputs):
        found = [it[name] for it in iterations for name in outputs if family(name) == group]
        rows.append(OutputParity(graph, group, runner, max(float(r.max_absdiff) for r in found),
                                 max(float(r.max_reldiff) for r in found), table[group], all(bool(r) for r in found),
                                 max(float(r.mean_absdiff) for r in found)))
    return rows


def _compare_graph(manifest: ExportManifest, graph: str, cases: list[Case], trt: bool) -> list[OutputParity]:
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator

    path = manifest.path(graph)
    feeds = [feed for feed, _ in cases]
    runners = [(OnnxrtRunner(SessionFromOnnx(str(path), providers=["cpu"]), name="onnxruntime"),
                tolerances(manifest, graph))]
    if trt:
        runners.append((_trt_runner(manifest, graph, feeds), FP16))
    results = Comparator.run([r for r, _ in runners], data_loader=FeedLoader(feeds))
    results.add([expected for _, expected in cases], runner_name="pytorch")  # RunResults: reference last
    rows = []
    for index, (runner, table) in enumerate(runners):
        rows += _rows(results, graph, runner.name, index, len(runners), table)
    return rows


def _quiet_polygraphy() -> None:
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.ERROR


def validate_export(
    directory: str | Path,
    manifest_tsv: str | Path,
    limit: int | None = 4,
    batch: int = 2,
    trt: bool = False,
    hf_model=None,
    graphs: Sequence[str] | None = None,
) -> ValidationReport:
    """Check every graph of `directory` (or only `graphs`) against PyTorch; `ParityError` on a mismatch."""
    from whisper_eas.checkpoints.loading import load_whisper
    from whisper_eas.exporter.graph_specs import ModelDims

    if trt:  # one clear line before any reference is computed
        from whisper_eas.deps import require_cuda, require_tensorrt

        require_tensorrt("whisper-eas validate --trt")
        require_cuda("whisper-eas validate --trt")
    manifest = ExportManifest.load(directory, verify=True)
    unknown = sorted(set(graphs or ()) - set(manifest.graphs))
    if unknown:
        raise ConfigError(f"{directory}: no graph(s) {', '.join(unknown)}; it has {', '.join(manifest.graphs)}")
    model = hf_model if hf_model is not None else load_whisper(manifest.model)
    model = model.float().eval()
    if ModelDims.from_hf_config(model.config) != manifest.dims:
        path = manifest.directory / "manifest.json"
        raise ExportError(f"{path}: model {manifest.model} does not have the exported dims")
    _quiet_polygraphy()
    if manifest.config is not None and manifest.config.padding == "drop":
        batch = 1  # counts per window: the runners feed these prune graphs one window at a time
    mels = mel_batches(manifest_tsv, manifest.dims.n_mels, limit, batch)
    cases = _reference_cases(manifest, model, mels)
    report = ValidationReport(manifest.directory, n_utterances=sum(m.shape[0] for m in mels))
    for graph in graphs or manifest.graphs:
        report.rows += _compare_graph(manifest, graph, cases[graph], trt)
    if not report.passed:
        raise ParityError(report)
    return report
