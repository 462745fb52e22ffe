"""A transcription job on Ray Data: files -> decode (CPU tasks) -> transcribe (one actor per GPU) -> outputs.

The driver skips files whose outputs exist, streams the pipeline's rows back, writes each file's
outputs with `trt-transcribe`'s writer (same names, same formats, atomic) and keeps the results
table. Writing on the driver means workers need no access to the output folder, and a file counts
as finished only once its outputs are on disk, so a killed job restarted with the same command
redoes nothing that was finished. Per-file failures are rows with the error text; actor and worker
deaths are retried by Ray (`max_restarts`, `max_task_retries`, task `max_retries`).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from whisper_eas.audio import display_path
from whisper_eas.errors import ConfigError, WhisperEasError
from whisper_eas.outputs import outputs_exist, write_outputs
from whisper_eas.scaleout.results_table import ResultsLog, new_run_id
from whisper_eas.scaleout.stages import TranscribeSpec, bound, decode_row, one_line

RAY_MISSING = "Ray is not installed: pip install 'whisper-eas[ray]' (or pip install 'ray[data]')"


class JobError(WhisperEasError, RuntimeError):
    """The job could not run (no Ray, no cluster, actors that cannot load the model); one line."""


@dataclass(frozen=True)
class DatasetItem:
    source: str  # local path or URI
    name: str  # output name without extension, as trt-transcribe names it


@dataclass(frozen=True)
class ClusterSpec:
    """Where and how wide the job runs."""

    address: str | None = None  # None: this process's Ray if it joined one, else a local Ray
    actors: int = 1  # transcription actors (the pool's size: one per GPU on a GPU cluster)
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    files_per_call: int = 8  # files per actor call; their windows are batched together
    decode_cpus: float = 0.25  # per decoding task (decoding is light next to the model)
    max_decoded_s: float = 1800.0  # longer files are read (streamed) by the actor, not decoded into the object store
    local_cpus: int | None = None  # CPUs of a local Ray (default: all)
    actor_start_failures: int = 1  # actor starts that may fail in a row before the job stops (a bad folder: fast)
    retries: int = 3  # per decoding task and per actor call, on worker or actor death

    def __post_init__(self):
        if self.actors < 1 or self.files_per_call < 1:
            raise ConfigError("actors and files_per_call must be >= 1")
        if self.cpus_per_actor <= 0 or self.gpus_per_actor < 0 or self.decode_cpus <= 0:
            raise ConfigError("cpus_per_actor and decode_cpus must be > 0, gpus_per_actor >= 0")
        if self.max_decoded_s < 0:
            raise ConfigError("max_decoded_s must be >= 0 (0: every file is read by the actor)")


@dataclass
class JobReport:
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    connect_s: float = 0.0  # starting or joining Ray (part of wall_s)
    results: Path | None = None
    run_id: str = ""
    errors: list[str] = field(default_factory=list)


def require_ray():
    """The ray module, or one clear error saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise JobError(RAY_MISSING) from None
    return ray


def run_job(items: list[DatasetItem], output_dir: str | Path, formats: tuple[str, ...], spec: TranscribeSpec,
            cluster: ClusterSpec = ClusterSpec(), overwrite: bool = False,
            on_row: Callable[[dict[str, Any]], None] | None = None) -> JobReport:
    """Transcribe `items` into `output_dir`; returns counts and the results table's path."""
    output_dir = Path(output_dir)
    started, report = time.perf_counter(), JobReport(run_id=new_run_id())
    todo = items if overwrite else [i for i in items if not outputs_exist(i.name, output_dir, formats)]
    skipped = {i.source for i in items} - {i.source for i in todo}
    report.skipped = len(skipped)
    log = ResultsLog(output_dir, report.run_id, {"model": spec.model, "config": spec.config_text(),
                                                 "formats": ",".join(formats)})
    try:
        if todo:
            _execute(todo, output_dir, formats, spec, cluster, log, report, on_row)
    finally:
        log.flush()
    report.results = log.finish([(display_path(i.source), display_path(i.name)) for i in items],
                                {display_path(source) for source in skipped})
    report.wall_s = time.perf_counter() - started
    return report


def _execute(todo, output_dir, formats, spec, cluster, log, report, on_row) -> None:
    ray = require_ray()
    started = time.perf_counter()
    started_here = _connect(ray, cluster)
    report.connect_s = time.perf_counter() - started
    try:
        for row in _pipeline(ray, todo, spec, cluster).iter_rows():
            record = log.add(_finish_file(row, todo[row["index"]], output_dir, formats))
            if record["status"] == "ok":
                report.ok += 1
                report.audio_s += record["duration_s"] or 0.0
            else:
                report.failed += 1
                report.errors.append(record["error"])
            if on_row is not None:
                on_row(record)
    except Exception as error:
        if isinstance(error, (JobError, KeyboardInterrupt)):
            raise
        raise JobError(f"the Ray job stopped: {root_message(error)} (finished files are kept; "
                       "rerun the same command to resume)") from None
    finally:
        if started_here:
            ray.shutdown()


def _connect(ray, cluster: ClusterSpec) -> bool:
    """Join the cluster (or start a local Ray); True when this call started it."""
    if ray.is_initialized():
        return False
    try:
        if cluster.address is None:
            ray.init(num_cpus=cluster.local_cpus, include_dashboard=False, logging_level="WARNING")
        else:
            ray.init(address=cluster.address, logging_level="WARNING")
    except Exception as error:
        where = cluster.address or "a local Ray"
        raise JobError(f"cannot start or join {where}: {root_message(error)}") from None
    return True


def _pipeline(ray, todo: list[DatasetItem], spec: TranscribeSpec, cluster: ClusterSpec):
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the CLI prints its own per-file lines
    context.max_consecutive_actor_init_deaths = cluster.actor_start_failures
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # failures reach the caller as rows or JobError
    rows = [{"index": k, "source": os.fsencode(i.source)} for k, i in enumerate(todo)]  # names need not be UTF-8
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))  # one decoding task per file
    with warnings.catch_warnings():
        # Ray 2.60 still takes retry options as remote args (deprecated for 2.64; the extra pins < 2.64).
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ds.map(decode_row, fn_kwargs={"max_decoded_s": cluster.max_decoded_s}, num_cpus=cluster.decode_cpus,
                    max_retries=cluster.retries)
        return ds.map_batches(
            bound(spec), batch_size=cluster.files_per_call, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=cluster.actors), num_cpus=cluster.cpus_per_actor,
            num_gpus=cluster.gpus_per_actor or None, max_restarts=-1, max_task_retries=cluster.retries)


def _finish_file(row: dict[str, Any], item: DatasetItem, output_dir: Path, formats: tuple[str, ...]) -> dict[str, Any]:
    """Write one file's outputs (trt-transcribe's writer); its results-table row."""
    record = {k: v for k, v in row.items() if k not in ("result", "index")} | {"name": display_path(item.name)}
    if row["status"] != "ok":
        return record
    result = pickle.loads(row["result"])
    try:
        write_outputs(result, output_dir, formats, item.name)
    except (OSError, ValueError) as error:  # a full or read-only disk fails this file, not the job
        record.update(status="error", error=f"{row['source']}: could not write outputs ({one_line(error)})")
    return record


def root_message(error: BaseException) -> str:
    """The innermost message of a Ray error in one line (Ray wraps worker exceptions in tracebacks
    and chains empty wrappers such as Ray Data's SystemException)."""
    chain, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__
    for item in reversed(chain):
        lines = [line.strip() for line in str(item).splitlines() if line.strip()]
        if lines:
            text = re.sub(r"^(?:[A-Za-z_][\w.]*\.)?\w*(?:Error|Exception): ", "", lines[-1])
            prefix = "an actor could not start: " if "creation task" in str(item) else ""
            return (prefix + text)[:500]
    return type(error).__name__
