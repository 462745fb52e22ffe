"""transcribe-dataset on a real local Ray (2 CPUs, one cluster for the module), real audio, real weights."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import AUDIO, DATA

HAVE_RAY = importlib.util.find_spec("ray") is not None
requires_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install 'whisper-eas[ray]')")
GOOD = ["cathy-arctic_a0001.flac", "ls-test-clean-1089-134686-0001.flac", "ls-test-clean-1089-134691-0000.flac",
        "ls-test-other-1688-142285-0002.flac"]
# The same backend and a sparse config on both sides (auto may pick a cached ONNX export of the default config).
BACKEND = ["--backend", "pytorch", "--prune", "coverage@4+merge L1 k0.5"]


def _good_folder(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(GOOD):
        shutil.copy(AUDIO / name, folder / ("sub" if i % 2 else "") / name)
    return folder


def _broken_files(folder: Path) -> list[str]:
    data = (AUDIO / "cathy-arctic_a0001.flac").read_bytes()
    (folder / "truncated.flac").write_bytes(data[: len(data) // 2])
    (folder / "zero.wav").touch()
    (folder / "text.wav").write_text("not audio, just text with a .wav name\n")
    return ["truncated.flac", "zero.wav", "text.wav"]


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Good and broken files in one folder, and trt-transcribe's outputs and error lines for it."""
    from whisper_eas.cli.transcribe_cmd import command

    folder = _good_folder(tmp_path_factory.mktemp("mixed") / "in")
    shutil.copy(AUDIO / GOOD[0], os.fsdecode(bytes(folder) + b"/caf\xe9.flac"))  # a name that is not UTF-8
    broken = _broken_files(folder)
    reference = folder.parent / "reference"
    result = CliRunner().invoke(command, [str(folder), "--format", "all", "--output-dir", str(reference), *BACKEND])
    assert result.exit_code == 1, result.output  # the broken files
    errors = sorted(line.removeprefix("error: ") for line in result.output.splitlines() if line.startswith("error: "))
    assert len(errors) == len(broken)
    return folder, reference, errors


def _outputs(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.relative_to(folder).parts[0].startswith(".") and p.suffix != ".parquet"}


SCORES = ("avg_logprob", "no_speech_prob", "compression_ratio")


def _same_json(ours: str, theirs: str) -> None:
    """Equal but for wall times; the segments' scores to 1e-5: they are float32 sums whose order
    depends on which windows share a batch and on the thread count (tokens and times are exact)."""
    a, b = json.loads(ours), json.loads(theirs)
    a.pop("timing"), b.pop("timing")
    for sa, sb in zip(a["segments"], b["segments"], strict=True):
        for key in SCORES:
            assert sa.pop(key) == pytest.approx(sb.pop(key), abs=1e-5)
    assert a == b


def _results(output_dir: Path) -> dict[str, dict]:
    from whisper_eas.scaleout.results_table import read_results

    return {Path(row["source"]).name: row for row in read_results(output_dir)}


@requires_ray
def test_job_matches_trt_transcribe_and_reports_broken_files(local_ray, mixed):
    from whisper_eas.cli.dataset_cmd import command

    folder, reference, errors = mixed
    out = folder.parent / "ray-out"
    args = [str(folder), "--output-dir", str(out), "--format", "all", "--files-per-call", "2", *BACKEND]
    first = CliRunner().invoke(command, args)
    assert first.exit_code == 1, first.output  # finished, with failures (as trt-transcribe)
    assert "5 file(s) ok, 3 failed" in first.output and "Traceback" not in first.output
    ours, theirs = _outputs(out), _outputs(reference)
    assert sorted(ours) == sorted(theirs) and len(ours) == 4 * (len(GOOD) + 1)  # same names, same formats
    for name, text in theirs.items():
        if name.endswith(".json"):
            _same_json(ours[name], text)
        else:
            assert ours[name] == text, name
    rows = _results(out)
    assert sorted(r["error"] for r in rows.values() if r["status"] == "error") == errors  # trt-transcribe's lines
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert len(ok) == len(GOOD) + 1 and all(r["duration_s"] > 1 and r["transcribe_s"] > 0 for r in ok)
    assert {r["config"] for r in rows.values()} == {"coverage@4+merge L1 k0.5"} and ok[0]["model"] == "tiny.en"


@requires_ray
def test_killed_actor_is_restarted_and_nothing_is_lost(local_ray, mixed, tmp_path):
    from whisper_eas.cli.dataset_cmd import dataset_items
    from whisper_eas.scaleout import ClusterSpec, TranscribeSpec, run_job
    from prune_configs import COVERAGE

    folder = _good_folder(tmp_path / "in")
    out, killed = tmp_path / "out", []

    def kill_first_worker(record: dict) -> None:
        pid = int(record["worker_pid"])
        if not killed and Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):  # never anything else
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    spec = TranscribeSpec(prune=COVERAGE, backend="pytorch")
    cluster = ClusterSpec(files_per_call=1)
    report = run_job(dataset_items(str(folder)), out, ("txt",), spec, cluster, on_row=kill_first_worker)
    assert killed and report.ok == len(GOOD) and report.failed == 0
    pids = {r["worker_pid"] for r in _results(out).values()}
    assert killed[0] in pids and len(pids) == 2  # files after the kill ran on the restarted actor
    ours, theirs = _outputs(out), _outputs(mixed[1])  # the same files, transcribed by trt-transcribe
    assert len(ours) == len(GOOD) and ours == {name: theirs[name] for name in ours}

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.txt")}
    rerun = run_job(dataset_items(str(folder)), out, ("txt",), spec, cluster)  # the same command again
    assert (rerun.ok, rerun.failed, rerun.skipped) == (0, 0, len(GOOD))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.txt")} == stamps  # nothing redone
    rows = _results(out).values()  # each file's row from the run that did it
    assert {r["status"] for r in rows} == {"ok"} and {r["run_id"] for r in rows} == {report.run_id}


@requires_ray
def test_an_actor_that_cannot_load_the_model_stops_the_job_with_one_line(local_ray, tmp_path):
    from whisper_eas.scaleout import ClusterSpec, DatasetItem, JobError, TranscribeSpec, run_job

    empty = tmp_path / "not-an-export"
    empty.mkdir()
    items = [DatasetItem(str(AUDIO / GOOD[0]), "a")]
    spec = TranscribeSpec(backend="onnxruntime", engine_dir=str(empty))
    with pytest.raises(JobError) as caught:
        run_job(items, tmp_path / "out", ("txt",), spec, ClusterSpec(actor_start_failures=0))
    message = str(caught.value)
    assert "an actor could not start" in message and f"{empty}/manifest.json" in message
    assert "\n" not in message and "rerun the same command" in message


@requires_ray
def test_tables_and_manifests_get_trt_transcribe_names(tmp_path):
    import pyarrow as pa
    from pyarrow import csv, parquet

    from whisper_eas.cli.dataset_cmd import dataset_items
    from whisper_eas.cli.inputs import discover

    folder = _good_folder(tmp_path / "in")
    shutil.copy(AUDIO / GOOD[0], folder / "sub" / GOOD[0])  # the same stem twice: trt-transcribe numbers it
    paths = sorted(str(p.relative_to(tmp_path)) for p in folder.rglob("*.flac"))
    parquet.write_table(pa.table({"path": paths}), tmp_path / "files.parquet")
    csv.write_csv(pa.table({"path": paths, "speaker": ["x"] * len(paths)}), tmp_path / "files.csv")
    (tmp_path / "files.jsonl").write_text("".join(json.dumps({"path": p}) + "\n" for p in paths))
    expected = [(str(f.path), f.name) for f in discover([tmp_path / p for p in paths])]
    for table in ("files.parquet", "files.csv", "files.jsonl"):
        assert [(i.source, i.name) for i in dataset_items(str(tmp_path / table))] == expected, table
    named = [(str(f.path), f.name) for f in discover([folder])]
    assert [(i.source, i.name) for i in dataset_items(str(folder))] == named
    manifest = dataset_items(str(DATA / "manifest.tsv"))
    assert manifest[0].source == str(DATA / "audio" / "ls-test-other-1688-142285-0002.flac")
    assert manifest[0].name == "ls-test-other-1688-142285-0002"


@requires_ray
def test_bad_inputs_are_one_line(tmp_path):
    from whisper_eas.cli.dataset_cmd import command

    (tmp_path / "files.csv").write_text("file\nx.flac\n")
    for target, expected in ((tmp_path / "missing", "no such file or folder"),
                             (tmp_path / "files.csv", "no 'path' column"),
                             (AUDIO / GOOD[0], "not a folder or a table of paths")):
        result = CliRunner().invoke(command, [str(target), "--output-dir", str(tmp_path / "out")])
        assert result.exit_code == 1 and expected in result.output and "Traceback" not in result.output, result.output


def test_without_ray_the_command_says_what_to_install(monkeypatch, tmp_path):
    from whisper_eas.cli.dataset_cmd import command

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: `import ray` raises ImportError
    result = CliRunner().invoke(command, [str(AUDIO), "--output-dir", str(tmp_path)])
    assert result.exit_code == 1 and "pip install 'whisper-eas[ray]'" in result.output, result.output
