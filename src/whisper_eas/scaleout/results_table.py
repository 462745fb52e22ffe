"""The job's results table: one Parquet row per input file (status, error, durations, config, timing).

Rows are flushed during the run as small part files under `DIR/.results/` (written atomically), so
a killed job loses at most the last few seconds of rows, never the outputs themselves. At the end
`DIR/results.parquet` is rebuilt from every part: for each input of this run, its latest row from
any run; inputs skipped because their outputs already existed and that no run recorded (written by
`trt-transcribe`, say) get a `skipped` row.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from whisper_eas.io_utils import atomic_write_bytes

RESULTS_FILE = "results.parquet"
PARTS_DIR = ".results"
COLUMNS = {  # name -> pyarrow type name
    "source": "string", "name": "string", "status": "string", "error": "string", "warnings": "string",
    "duration_s": "float64",
    "decode_s": "float64", "transcribe_s": "float64", "windows": "int64", "model": "string", "config": "string",
    "formats": "string", "backend": "string", "device": "string", "worker_pid": "int64", "node": "string",
    "run_id": "string", "finished_at": "string",
}
STATUSES = ("ok", "error", "skipped")


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def _schema():
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMNS.items()])


def _encode(table) -> bytes:
    import pyarrow as pa
    from pyarrow import parquet

    sink = pa.BufferOutputStream()
    parquet.write_table(table, sink)
    return sink.getvalue().to_pybytes()


@dataclass
class ResultsLog:
    """Collects rows of one run and flushes them as part files every `flush_rows` rows or `flush_s` seconds."""

    output_dir: Path
    run_id: str
    constants: dict[str, Any]  # model, config, formats: the same on every row of the run
    flush_rows: int = 64
    flush_s: float = 10.0
    _pending: list[dict[str, Any]] = field(default_factory=list)
    _parts: int = 0
    _last_flush: float = field(default_factory=time.monotonic)

    @property
    def parts_dir(self) -> Path:
        return Path(self.output_dir) / PARTS_DIR

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        full = {name: row.get(name) for name in COLUMNS}
        full.update(self.constants, run_id=self.run_id, finished_at=datetime.now(timezone.utc).isoformat())
        self._pending.append(full)
        if len(self._pending) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()
        return full

    def flush(self) -> None:
        import pyarrow as pa

        self._last_flush = time.monotonic()
        if not self._pending:
            return
        table = pa.Table.from_pylist(self._pending, schema=_schema())
        atomic_write_bytes(self.parts_dir / f"part-{self.run_id}-{self._parts:05d}.parquet", _encode(table))
        self._parts += 1
        self._pending = []

    def finish(self, sources: list[tuple[str, str]], skipped: set[str]) -> Path:
        """Flush, then write results.parquet: one row per (source, name) of this run's inputs.

        A file skipped now whose latest row is an error got its outputs elsewhere since: `skipped`."""
        import pyarrow as pa

        self.flush()
        latest = read_parts(self.parts_dir)
        rows = []
        for source, name in sources:
            row = latest.get(source)
            if row is None or (source in skipped and row["status"] != "ok"):
                row = {k: None for k in COLUMNS} | self.constants | {
                    "source": source, "name": name, "status": "skipped", "error": "", "run_id": self.run_id}
            rows.append(row)
        path = Path(self.output_dir) / RESULTS_FILE
        return atomic_write_bytes(path, _encode(pa.Table.from_pylist(rows, schema=_schema())))


def read_parts(parts_dir: Path) -> dict[str, dict[str, Any]]:
    """source -> its latest recorded row (part files sort by run id, then sequence)."""
    from pyarrow import parquet

    latest: dict[str, dict[str, Any]] = {}
    for part in sorted(Path(parts_dir).glob("part-*.parquet")):
        for row in parquet.read_table(part).to_pylist():
            latest[row["source"]] = row
    return latest


def read_results(output_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of `DIR/results.parquet`."""
    from pyarrow import parquet

    return parquet.read_table(Path(output_dir) / RESULTS_FILE).to_pylist()
