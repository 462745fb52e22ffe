"""Reliability: a broken and odd corpus generated here from real recordings, run through
`trt-transcribe`, the Python API and the model/manifest loaders.

Each case asserts what a careful user needs: one line naming the input, the right exit code, no
traceback, the good files' outputs complete, nothing overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from whisper_eas.audio import AudioError, load_audio, open_audio, probe_duration
from whisper_eas.cli.inputs import discover
from whisper_eas.cli.transcribe_cmd import command
from whisper_eas.features import N_SAMPLES, StreamMel, log_mel

from conftest import AUDIO

GOOD = AUDIO / "ls-test-clean-1089-134691-0000.flac"  # 2.1 s, "... wait no longer ..."
SHORT = AUDIO / "cathy-arctic_a0001.flac"  # 3.3 s
LONG = AUDIO / "long-cathy-a0001-a0019.flac"  # 60 s
DEV_LONG = sorted((AUDIO.parent.parent.parent.parent / "shared" / "data" / "speech-dev" / "audio").glob("long-*.flac"))
HAVE_FFMPEG = shutil.which("ffmpeg") is not None
POSIX = sys.platform != "win32"


def _run(args: list[str]):
    result = CliRunner().invoke(command, [*map(str, args), "--dense"])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _error_line(output: str, name: str) -> str:
    lines = [line for line in output.splitlines() if name in line and ("error" in line.lower())]
    assert len(lines) == 1, output
    return lines[0]


def _pcm(path: Path = SHORT) -> tuple[np.ndarray, int]:
    return sf.read(path, dtype="float32")


# ---- the corpus --------------------------------------------------------------------------


def _broken(folder: Path) -> dict[str, str]:
    """Broken inputs and a word their error must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    flac = SHORT.read_bytes()
    audio, rate = _pcm()
    cases = {}

    (folder / "cut.flac").write_bytes(flac[: len(flac) // 3])
    cases["cut.flac"] = "truncated"
    sf.write(folder / "full.wav", audio, rate, subtype="PCM_16")
    wav = (folder / "full.wav").read_bytes()
    (folder / "full.wav").unlink()
    (folder / "cut.wav").write_bytes(wav[: len(wav) // 2])
    cases["cut.wav"] = "truncated"
    (folder / "header-only.wav").write_bytes(wav[:44])
    cases["header-only.wav"] = "truncated"
    sf.write(folder / "m.mp3", audio, rate, format="MP3")
    mp3 = (folder / "m.mp3").read_bytes()
    (folder / "m.mp3").unlink()
    (folder / "cut.mp3").write_bytes(mp3[: len(mp3) // 3])
    cases["cut.mp3"] = "truncated"
    (folder / "zero.flac").touch()
    cases["zero.flac"] = "empty"
    (folder / "text.wav").write_text("not audio\n")
    cases["text.wav"] = "not a recognised"
    garbage = bytearray(flac)
    garbage[200:] = np.random.default_rng(0).integers(0, 256, len(flac) - 200, dtype=np.uint8).tobytes()
    (folder / "garbage-body.flac").write_bytes(bytes(garbage))
    cases["garbage-body.flac"] = "flac"
    nan = audio.copy()
    nan[1000] = np.nan
    sf.write(folder / "nan.wav", nan, rate, subtype="FLOAT")
    cases["nan.wav"] = "NaN"
    inf = audio.copy()
    inf[-5] = np.inf
    sf.write(folder / "inf.wav", inf, rate, subtype="FLOAT")
    cases["inf.wav"] = "infinite"
    sf.write(folder / "silence.wav", np.zeros(rate, np.float32), rate)
    cases["silence.wav"] = "silence"
    sf.write(folder / "huge.wav", audio * 1e30, rate, subtype="FLOAT")
    cases["huge.wav"] = "peak"
    (folder / "dir.flac").mkdir()  # a folder named like audio, inside a walked folder: not an input
    return cases


def test_broken_corpus_one_line_each_and_good_files_complete(tmp_path):
    cases = _broken(tmp_path / "in")
    shutil.copy(GOOD, tmp_path / "in" / "good.flac")
    out = tmp_path / "out"
    result = _run([tmp_path / "in", "--format", "all", "--output-dir", out, "--batch-size", "4"])
    assert result.exit_code == 1
    for name, word in cases.items():
        line = _error_line(result.output, name)
        assert word.lower() in line.lower(), (name, line)
    assert "dir.flac" not in result.output
    text = json.loads((out / "good.json").read_text())["text"].lower()
    assert "wait no longer" in text
    assert {p.name for p in out.iterdir()} == {f"good.{x}" for x in ("txt", "json", "srt", "vtt")}
    assert f"1 file(s) ok, {len(cases)} failed" in result.output


def test_truncated_reads_never_return_uninitialised_samples(tmp_path):
    """libsndfile keeps the header's frame count for a cut MP3: only decoded frames may be used."""
    audio, rate = _pcm(LONG)
    sf.write(tmp_path / "a.mp3", audio[: rate * 20], rate, format="MP3")
    data = (tmp_path / "a.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: len(data) // 3])
    load_audio(LONG)  # leave another file's samples in freed memory
    with pytest.raises(AudioError, match="truncated"):
        load_audio(tmp_path / "cut.mp3")
    partial = load_audio(tmp_path / "cut.mp3", allow_partial=True)
    assert 4 * rate < len(partial) < 10 * rate and float(np.abs(partial).max()) <= 1.5
    from whisper_eas.audio import resample  # a cut file at another rate

    sf.write(tmp_path / "b44.wav", resample(audio[: rate * 6], rate, 44100), 44100, subtype="PCM_16")
    (tmp_path / "cut44.wav").write_bytes((tmp_path / "b44.wav").read_bytes()[:300_000])
    with pytest.raises(AudioError, match="truncated"):
        load_audio(tmp_path / "cut44.wav")


def test_partial_decode_is_an_error_unless_allowed_then_a_warning(tmp_path):
    audio, rate = _pcm(LONG)
    sf.write(tmp_path / "a.mp3", audio[: rate * 20], rate, format="MP3")
    data = (tmp_path / "a.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: len(data) // 2])
    strict = _run([tmp_path / "cut.mp3", "--output-dir", tmp_path / "o1"])
    assert strict.exit_code == 1 and "--allow-partial" in _error_line(strict.output, "cut.mp3")
    allowed = _run([tmp_path / "cut.mp3", "--output-dir", tmp_path / "o2", "--format", "json", "--allow-partial"])
    assert allowed.exit_code == 0, allowed.output
    assert "warning" in allowed.output and "PARTIAL" in allowed.output
    data = json.loads((tmp_path / "o2" / "cut.json").read_text())
    assert data["warnings"] and "partial decode" in data["warnings"][0]


def test_odd_rates_and_channels_match_the_16k_mono_original(tmp_path, monkeypatch):
    monkeypatch.setattr("whisper_eas.audio.BLOCK_FRAMES", 4093)  # many blocks, odd boundaries
    audio, rate = _pcm(GOOD)
    stereo = np.stack([audio, audio], axis=1)
    sf.write(tmp_path / "st.flac", stereo, rate)
    np.testing.assert_array_equal(load_audio(tmp_path / "st.flac"), load_audio(GOOD))
    from whisper_eas.audio import resample

    for odd in (8000, 22050, 44100):
        sf.write(tmp_path / f"r{odd}.wav", resample(audio, rate, odd), odd, subtype="FLOAT")
        back = load_audio(tmp_path / f"r{odd}.wav")
        whole = resample(sf.read(tmp_path / f"r{odd}.wav", dtype="float32")[0], odd)
        np.testing.assert_array_equal(back, whole)  # block-wise resampling == whole-file resampling


@pytest.mark.skipif(not POSIX, reason="FIFOs and /dev need POSIX")
def test_fifo_and_device_are_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    started = time.perf_counter()
    assert probe_duration(fifo) is None
    result = _run([fifo, "/dev/null", GOOD, "--output-dir", tmp_path / "out"])
    assert time.perf_counter() - started < 120
    assert result.exit_code == 1
    assert "not a regular file" in _error_line(result.output, "pipe.wav")
    assert "not a regular file" in _error_line(result.output, "/dev/null")
    assert (tmp_path / "out" / f"{GOOD.stem}.txt").is_file()


@pytest.mark.skipif(not POSIX, reason="non-UTF-8 names need a POSIX filesystem")
def test_non_utf8_name_does_not_abort_the_batch(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    odd = os.fsdecode(b"caf\xe9 \xff.flac")
    shutil.copy(GOOD, folder / odd)
    shutil.copy(SHORT, folder / "plain.flac")
    out = tmp_path / "out"
    result = _run([folder, "--format", "all", "--output-dir", out])
    assert result.exit_code == 0, result.output
    data = json.loads((out / (odd[:-5] + ".json")).read_bytes().decode("utf-8"))
    assert data["source"].endswith("caf\\xe9 \\xff.flac") and "wait no longer" in data["text"].lower()
    assert (out / "plain.json").is_file()


def test_output_name_collisions_are_numbered_and_reported(tmp_path):
    for sub in ("d1", "d2"):
        (tmp_path / sub).mkdir()
    shutil.copy(GOOD, tmp_path / "d1" / "x.flac")
    shutil.copy(SHORT, tmp_path / "d2" / "x.flac")
    shutil.copy(LONG.with_name("jfk-inaugural-1961.flac"), tmp_path / "x.flac-2.wav")
    inputs = [tmp_path / "d1" / "x.flac", tmp_path / "d2" / "x.flac", tmp_path / "x.flac-2.wav"]
    names = [f.name for f in discover(inputs)]
    assert len(set(names)) == 3 and names == [f.name for f in discover(inputs)]  # unique, deterministic
    out = tmp_path / "out"
    result = _run([*inputs, "--output-dir", out])
    assert result.exit_code == 0, result.output
    assert "3 file(s) ok" in result.output and "renamed" in result.output
    texts = {p.read_text().lower() for p in out.glob("*.txt")}
    assert len(texts) == 3 and any("ask not" in t for t in texts) and any("wait no longer" in t for t in texts)


def test_unwritable_output_dir_is_one_line_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = _run([GOOD, "--output-dir", blocker / "out"])
    assert result.exit_code != 0
    assert "not writable" in result.output and len(result.output.strip().splitlines()) == 1


def test_orphan_temporaries_are_cleaned_and_finished_outputs_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    orphan = out / f".{GOOD.stem}.txt.abcd1234.tmp"
    orphan.write_text("half")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    fresh = out / ".other.txt.zzzz9999.tmp"  # a concurrent run's write in progress: left alone
    fresh.write_text("x")
    result = _run([GOOD, "--output-dir", out])
    assert result.exit_code == 0 and "removed 1 temporary" in result.output
    assert not orphan.exists() and fresh.exists() and (out / f"{GOOD.stem}.txt").is_file()
    before = (out / f"{GOOD.stem}.txt").stat().st_mtime_ns
    rerun = _run([GOOD, "--output-dir", out])
    assert "1 skipped" in rerun.output and (out / f"{GOOD.stem}.txt").stat().st_mtime_ns == before


def test_progress_lines_in_a_log(tmp_path):
    result = _run([LONG, "--output-dir", tmp_path, "--progress-interval", "0"])
    assert result.exit_code == 0
    lines = [line for line in result.output.splitlines() if line.startswith("progress:")]
    assert len(lines) >= 2 and "min of audio" in lines[0]


@pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg is not installed (the MP3/M4A fallback cases need it)")
def test_ffmpeg_reads_odd_names_as_files(tmp_path):
    shutil.copy(GOOD, tmp_path / "a.flac")
    tricky = tmp_path / "concat:a.flac|a.flac.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", f"file:{tmp_path / 'a.flac'}",
                    f"file:{tricky}"], check=True)
    single = load_audio(tmp_path / "a.flac")
    assert abs(len(load_audio(tricky)) - len(single)) < 0.1 * len(single)


@pytest.mark.skipif(not POSIX, reason="shell script stand-in for ffmpeg")
def test_ffmpeg_fallback_gets_file_paths_and_its_decode_errors_mean_partial(tmp_path, monkeypatch):
    """A stand-in `ffmpeg` (decodes GOOD with soundfile, then reports a decode error, exit 0, as
    ffmpeg does for a damaged file) shows what the fallback passes and how its output is judged."""
    tool = tmp_path / "bin" / "ffmpeg"
    tool.parent.mkdir()
    tool.write_text(
        f"#!{sys.executable}\n"
        "import sys, json, soundfile as sf, numpy as np\n"
        f"open({str(tmp_path / 'args.json')!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        f"data, _ = sf.read({str(GOOD)!r}, dtype='float32')\n"
        "sys.stdout.buffer.write(np.asarray(data, np.float32).tobytes())\n"
        "sys.stderr.write('[aac @ 0x1] Invalid data found when processing input\\n')\n"
    )
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")
    odd = tmp_path / "concat:a.flac|a.flac.m4a"
    odd.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(200))  # soundfile cannot read it
    with pytest.raises(AudioError, match="corrupt or truncated: ffmpeg decoded 2.0"):
        load_audio(odd)
    args = json.loads((tmp_path / "args.json").read_text())
    assert "-nostdin" in args and args[args.index("-i") + 1] == f"file:{odd}"
    np.testing.assert_array_equal(load_audio(odd, allow_partial=True), load_audio(GOOD))


# ---- the Python API ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transcriber():
    from whisper_eas.transcribe import Transcriber

    return Transcriber.from_model("tiny.en", None)


def test_api_arrays_are_checked_scaled_and_resampled(transcriber):
    from whisper_eas.audio import resample

    audio = load_audio(GOOD)
    as_int16 = np.round(audio * 32767).astype(np.int16)
    assert "wait no longer" in transcriber.transcribe(as_int16).text.lower()
    at_44k = resample(audio, 16000, 44100)
    assert "wait no longer" in transcriber.transcribe(at_44k, sample_rate=44100).text.lower()
    for bad, word in [(audio > 0, "bool"), (b"RIFF....", "bytes"), (None, "NoneType"),
                      (audio * 32768, "peak"), (audio * 1e30, "peak"), (np.stack([audio, audio]), "mono")]:
        with pytest.raises(AudioError) as info:
            transcriber.transcribe(bad)
        assert word in str(info.value) and "\n" not in str(info.value), (word, str(info.value))


def test_stream_features_equal_whole_file_features():
    """Window-by-window log-mel == openai/whisper's whole-file log-mel, so transcripts do not change."""
    for path in DEV_LONG[:2] or [LONG]:
        audio = load_audio(path)
        whole = log_mel(audio, 80, padding=N_SAMPLES)
        stream = open_audio(path)
        mel = StreamMel(stream.blocks, 80)
        assert mel.content_frames == whole.shape[-1] - 3000 and stream.n_samples == len(audio)
        for seek in (0, 1, 2999, 3000, 4567, mel.content_frames - 10):
            stop = min(seek + 3000, mel.content_frames)
            assert np.array_equal(mel.frames(seek, stop), whole[:, seek:stop]), (path.name, seek)


# ---- bad options, model folders and manifests ---------------------------------------------


def _cli(cmd, args: list) -> tuple[int, str]:
    result = CliRunner().invoke(cmd, [str(a) for a in args])
    assert "Traceback" not in result.output and "unexpected" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_cuda_device_without_cuda_is_one_line():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    code, output = _cli(command, [GOOD, "--device", "cuda"])
    assert code == 2 and "no CUDA GPU" in output and "--device" in output


def _hf_copy(tmp_path: Path) -> Path:
    """A copy of the converted tiny.en checkpoint (links for the big file)."""
    from whisper_eas.checkpoints.registry import resolve_model

    src, folder = resolve_model("tiny.en"), tmp_path / "model"
    folder.mkdir()
    for f in src.iterdir():
        (folder / f.name).symlink_to(f)
    return folder


@pytest.mark.parametrize("damage", ["corrupt-weights", "pickle-weights", "config-not-json", "config-list"])
def test_broken_model_folder_is_one_line_naming_it(tmp_path, damage):
    folder = _hf_copy(tmp_path)
    if damage == "corrupt-weights":
        (folder / "model.safetensors").unlink()
        (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage" + bytes(100))
    elif damage == "pickle-weights":
        (folder / "model.safetensors").unlink()
        torch.save({"x": torch.zeros(2)}, folder / "model.safetensors")  # a pickle under a safetensors name
    else:
        (folder / "config.json").unlink()
        (folder / "config.json").write_text("[]" if damage == "config-list" else "not json {")
    code, output = _cli(command, [GOOD, "--model", folder, "--dense", "--backend", "pytorch"])
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert code == 1 and len(errors) == 1 and str(folder) in errors[0], output


def test_pickle_only_model_folder_is_refused(tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    torch.save({"x": torch.zeros(2)}, folder / "pytorch_model.bin")
    code, output = _cli(command, [GOOD, "--model", folder, "--dense", "--backend", "pytorch"])
    assert code == 1 and str(folder) in output and "safetensors" in output


@pytest.mark.parametrize("file,content", [("tokenizer.json", "{}"), ("config.json", "[]"),
                                          ("tokenizer.json", "not json"), ("config.json", "[" * 100_000)])
def test_convert_with_bad_json_names_the_file(tmp_path, file, content):
    from whisper_eas.checkpoints.registry import embedded_ct2_dir
    from whisper_eas.cli.convert_cmd import command as convert

    ct2 = embedded_ct2_dir("tiny.en", tmp_path)
    (ct2 / file).unlink()
    (ct2 / file).write_text(content)
    code, output = _cli(convert, ["--ct2", ct2, "--out", tmp_path / "hf"])
    assert code == 1 and str(ct2 / file) in output, output
    assert not (tmp_path / "hf").exists()


def test_manifests_bad_encoding_and_nesting_name_the_file(tmp_path):
    from whisper_eas.evaluation.manifest import ManifestError, read_manifest
    from whisper_eas.exporter.manifest import ExportError, ExportManifest

    tsv = tmp_path / "m.tsv"
    tsv.write_bytes(b"id\tpath\tduration_s\ttext\nu1\ta.flac\t1.0\tcaf\xe9\n")
    with pytest.raises(ManifestError, match=f"{tsv}:2: not UTF-8"):
        read_manifest(tsv)
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ExportError, match="manifest.json: not valid JSON"):
        ExportManifest.load(export)


def test_corrupt_export_manifest_under_auto_is_an_error_not_a_fallback(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_text("{ truncated")
    (export / "encoder.onnx").write_bytes(b"")
    code, output = _cli(command, [GOOD, "--engine-dir", export])
    assert code == 1 and "manifest.json: not valid JSON" in output


def test_manifest_file_entries_outside_the_folder_are_refused(tmp_path):
    from whisper_eas.exporter.manifest import ExportError, file_inside

    folder = tmp_path / "export"
    folder.mkdir()
    (tmp_path / "secret").write_text("x")
    (folder / "link.onnx").symlink_to(tmp_path / "secret")
    for entry in ("../secret", str(tmp_path / "secret"), "link.onnx", "", 3):
        with pytest.raises(ExportError, match="manifest file entry"):
            file_inside(folder, entry, ExportError)
    assert file_inside(folder, "sub/a.onnx", ExportError) == folder / "sub" / "a.onnx"


# ---- several processes ---------------------------------------------------------------------


def _python(code: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    src = Path(__file__).parent.parent / "src"
    full = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env or {})}
    return subprocess.Popen([sys.executable, "-c", code], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


@pytest.mark.skipif(not POSIX, reason="the cache lock is POSIX flock")
def test_four_processes_share_an_empty_model_cache(tmp_path):
    code = ("from safetensors import safe_open; from whisper_eas.checkpoints.registry import materialize_embedded; "
            "f = safe_open(str(materialize_embedded('tiny.en') / 'model.safetensors'), 'pt'); print(len(f.keys()))")
    procs = [_python(code, {"WHISPER_EAS_HOME": str(tmp_path / "home")}) for _ in range(4)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and int(out.strip()) > 100, err[-2000:]
    models = tmp_path / "home" / "models"
    assert [p.name for p in models.iterdir() if not p.name.startswith(".")] == ["tiny.en"]
    assert not [p for p in models.iterdir() if p.is_dir() and p.name.startswith(".")]  # no leftover temp folders


@pytest.mark.skipif(not POSIX, reason="SIGKILL")
def test_kill_mid_run_then_rerun_completes_without_overwriting(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for i, src in enumerate([GOOD, SHORT, GOOD, SHORT, LONG]):
        shutil.copy(src, folder / f"f{i}.flac")
    args = [str(folder), "--output-dir", str(out), "--batch-size", "1", "--dense", "--format", "all"]
    proc = _python(f"import sys; from whisper_eas.cli.transcribe_cmd import main; sys.argv[1:] = {args!r}; main()")
    deadline = time.time() + 300
    line = ""
    while time.time() < deadline and "done" not in line:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    proc.communicate()
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert finished, "the run was killed before finishing any file"
    result = _run([folder, "--output-dir", out, "--batch-size", "1", "--format", "all"])
    assert result.exit_code == 0 and f"{len(finished)} skipped" in result.output
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json") if p.name in finished} == finished
    assert len(list(out.glob("*.json"))) == 5 and len(list(out.glob("*.srt"))) == 5
