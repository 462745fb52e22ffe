"""The two Ray Data stages: audio decoding on CPU tasks and transcription on actors.

Both run on workers, so they import only the package (never Ray itself) and return plain
columns. Decoding uses `load_audio`, the function `trt-transcribe` uses, so a file's samples
and its error text are the same as in one process. A file longer than `max_decoded_s` is not
decoded here: its samples (230 MB per hour of float32) would sit in the object store and then be
copied into the actor; the actor reads it from its path instead.
"""

from __future__ import annotations

import os
import pickle
import socket
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from whisper_eas.config import PruneConfig
from whisper_eas.scaleout.sources import local_copy

ARRAY_SOURCE = "<array>"  # what the Transcriber calls an array input; replaced by the file's path


@dataclass(frozen=True)
class TranscribeSpec:
    """Everything an actor needs to build the same Transcriber `trt-transcribe` builds."""

    model: str | None = "tiny.en"  # None: the export folder's model
    prune: PruneConfig | None = None  # None: dense
    default_prune: bool = False  # nobody named a config: the folder's own, else the model's shipped default
    backend: str = "auto"
    device: str = "cpu"
    engine_dir: str | None = None
    language: str | None = None
    task: str = "transcribe"
    beam_size: int | None = None
    batch_size: int = 8  # windows decoded together, across the files of one call
    threads: int | None = None  # torch intra-op threads in the actor (None: the actor's CPUs)
    options: tuple[tuple[str, Any], ...] = ()  # further Transcriber.from_model keywords (e.g. allow_partial)

    def prune_arg(self) -> Any:
        """What `Transcriber.from_model` takes (the default marker is rebuilt here: it does not pickle)."""
        from whisper_eas.config import DEFAULT_PRUNE

        return DEFAULT_PRUNE if self.default_prune else self.prune

    def config_text(self) -> str:
        from whisper_eas.config import format_prune

        return "default (the folder's or the shipped config)" if self.default_prune else format_prune(self.prune)


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def source_path(row: dict[str, Any]) -> str:
    """The row's path: it travels as bytes, since a file name need not be UTF-8 (Arrow strings must)."""
    return os.fsdecode(bytes(row["source"]))


def decode_row(row: dict[str, Any], max_decoded_s: float) -> dict[str, Any]:
    """source -> samples (float32 bytes), or `deferred` for long files, or the error text."""
    from whisper_eas.audio import load_audio, probe_duration

    source = source_path(row)
    started = time.perf_counter()
    out = {**row, "samples": b"", "deferred": False, "error": ""}
    if max_decoded_s == 0:  # every file read by the actor (e.g. --allow-partial: its warnings come from there)
        return {**out, "deferred": True, "decode_s": 0.0}
    try:
        with local_copy(source) as path:
            duration = probe_duration(path)
            if duration is not None and duration > max_decoded_s:
                out["deferred"] = True
            else:
                out["samples"] = load_audio(path).tobytes()
            out["error"] = ""
    except Exception as error:  # every per-file failure becomes a row; the job goes on
        out["error"] = _named(error, source)
    out["decode_s"] = time.perf_counter() - started
    return out


def _named(error: BaseException, source: str) -> str:
    """One line that starts with the file, as trt-transcribe's errors do (in printable form)."""
    from whisper_eas.audio import display_path

    text, shown = one_line(error), display_path(source)
    return text if shown in text else f"{shown}: {text}"


class TranscribeActor:
    """Loads the runner once per actor (a Ray Data callable class) and transcribes batches of files.

    The runner is built by `Transcriber.from_model`, as in `trt-transcribe`: the TensorRT runner
    checks the folder's engines.json against this worker's GPU and TensorRT version and raises the
    rebuild hint; ONNX Runtime checks its export manifest. A failure here fails the actor's start,
    which the driver reports as one line.
    """

    SPEC: TranscribeSpec | None = None  # set by `bound`

    def __init__(self, spec: TranscribeSpec | None = None):
        import torch

        from whisper_eas.transcribe import Transcriber

        spec = spec or self.SPEC
        assert spec is not None, "TranscribeActor needs a TranscribeSpec (use bound(spec))"
        _quiet_progress_bars()
        threads = spec.threads or _assigned_cpus()
        if threads:
            torch.set_num_threads(threads)
        self.spec = spec
        self.transcriber = Transcriber.from_model(
            spec.model, spec.prune_arg(), spec.backend, spec.device, spec.engine_dir, language=spec.language,
            task=spec.task, beam_size=spec.beam_size, batch_size=spec.batch_size, **dict(spec.options))
        self.pid, self.node = os.getpid(), socket.gethostname()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = [{key: batch[key][i] for key in batch} for i in range(len(batch["source"]))]
        outcomes: dict[int, dict[str, Any]] = {}
        pending = [i for i, row in enumerate(rows) if not row["error"]]
        with ExitStack() as stack:
            inputs = [self._audio(rows[i], stack) for i in pending]
            try:
                for outcome in self.transcriber.transcribe_many(inputs):
                    index = pending[outcome.index]
                    outcomes[index] = self._outcome(rows[index], outcome)
            except Exception as error:  # a failure outside one file's handling: the rest of the call fails
                for index in pending:
                    outcomes.setdefault(index, {"error": _named(error, source_path(rows[index]))})
        return self._columns(rows, outcomes)

    def _audio(self, row: dict[str, Any], stack: ExitStack) -> np.ndarray | Path:
        if row["deferred"]:
            return stack.enter_context(local_copy(source_path(row)))
        return np.frombuffer(row["samples"], dtype=np.float32)

    def _outcome(self, row: dict[str, Any], outcome) -> dict[str, Any]:
        from whisper_eas.audio import display_path

        source = source_path(row)
        if outcome.error is not None:
            text = one_line(outcome.error).replace(ARRAY_SOURCE, display_path(source))
            return {"error": _named(Exception(text), source)}
        return {"result": replace(outcome.result, source=display_path(source))}  # as for a path input

    def _columns(self, rows: list[dict[str, Any]], outcomes: dict[int, dict[str, Any]]) -> dict[str, list]:
        info = self.transcriber.runner.describe()
        columns: dict[str, list] = {k: [] for k in (
            "index", "source", "status", "error", "warnings", "result", "duration_s", "decode_s", "transcribe_s",
            "windows", "backend", "device", "worker_pid", "node")}
        for index, row in enumerate(rows):
            outcome = outcomes.get(index, {})
            result = outcome.get("result")
            error = str(row["error"]) or outcome.get("error", "" if result else _named(Exception("no result"),
                                                                                        source_path(row)))
            values = {
                "index": int(row["index"]), "source": _display(row), "status": "ok" if result else "error",
                "error": "" if result else error, "warnings": "; ".join(getattr(result, "warnings", None) or ()),
                "result": pickle.dumps(result) if result else b"",
                "duration_s": result.duration_s if result else None, "decode_s": float(row["decode_s"]),
                "transcribe_s": result.timing.get("wall_s") if result else None,
                "windows": len(result.windows) if result else None, "backend": info["backend"],
                "device": info["device"], "worker_pid": self.pid, "node": self.node,
            }
            for key, value in values.items():
                columns[key].append(value)
        return columns


def _display(row: dict[str, Any]) -> str:
    from whisper_eas.audio import display_path

    return display_path(source_path(row))


def _assigned_cpus() -> int | None:
    """The CPUs Ray gave this actor (Ray sets OMP_NUM_THREADS to them), for torch's thread pool."""
    value = os.environ.get("OMP_NUM_THREADS")
    return int(value) if value and value.isdigit() and int(value) > 0 else None


def bound(spec: TranscribeSpec) -> type[TranscribeActor]:
    """The actor class with `spec` inside it. Ray Data would put constructor arguments in the object
    store, and Ray warns that a restarted actor fails if they are lost there; a class travels by value."""
    return type("BoundTranscribeActor", (TranscribeActor,), {"SPEC": spec, "__module__": __name__})


def _quiet_progress_bars() -> None:
    """No weight-loading bars from every actor in the driver's log."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
