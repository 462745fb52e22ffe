"""Inference on ONNX Runtime from a cached export imports neither PyTorch nor transformers.

Features, decoding, word alignment, the VAD and the tokenizer run on NumPy, ONNX Runtime and
`tokenizers`; only exporting (the first run), the PyTorch and CUDA runners, and the batched mode's
region pruning by attention import torch (its default, the padding trim, is a NumPy slice). Each check runs in a fresh interpreter (this one has torch loaded),
after the cached export it needs has been made here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from whisper_eas.config import DEFAULT_PRUNE
from whisper_eas.defaults import shipped_config
from whisper_eas.runners.factory import make_runner

from conftest import AUDIO

CLIP = AUDIO / "jfk-inaugural-1961.flac"  # 11 s

_REPORT = """
print(json.dumps({"text": text, "backend": backend, "torch": "torch" in sys.modules,
                  "transformers": "transformers" in sys.modules, "onnx": "onnx" in sys.modules}))
"""

API = """
import json, sys
from whisper_eas import Transcriber
transcriber = Transcriber.from_model("tiny.en", backend="auto")
result = transcriber.transcribe(sys.argv[1], word_timestamps=True)
assert result.segments[0].words, "no word timings"
text, backend = result.text, transcriber.runner.backend
""" + _REPORT

CLI = """
import contextlib, io, json, sys
from whisper_eas.cli.transcribe_cmd import main
sys.argv = ["trt-transcribe", sys.argv[1]]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main()  # the console script's entry point
    except SystemExit as exit:
        assert exit.code in (0, None), exit.code
text, backend = out.getvalue().strip(), "onnxruntime"
""" + _REPORT

CLI_BATCHED = CLI.replace('sys.argv[1]]', 'sys.argv[1], "--batched"]')

SERVE = """
import json, sys
from starlette.testclient import TestClient
from whisper_eas.defaults import shipped_config
from whisper_eas.serve.app import ServeConfig, create_app
from whisper_eas.transcribe import Transcriber
transcriber = Transcriber.from_model("tiny.en", shipped_config("tiny.en", serve=True), backend="auto")
with TestClient(create_app(transcriber, ServeConfig("tiny.en"))) as client, open(sys.argv[1], "rb") as audio:
    response = client.post("/v1/audio/transcriptions", data={"model": "whisper-1"},
                           files={"file": ("clip.flac", audio, "audio/flac")})
    assert response.status_code == 200, response.text
text, backend = response.json()["text"], transcriber.runner.backend
""" + _REPORT


def _run(driver: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", driver, str(CLIP)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cached_exports():
    """The default and the serve default tiny.en exports in the model cache (exported here once)."""
    from whisper_eas.vad import SileroVad, vad_available

    if vad_available():
        SileroVad()  # cuts the VAD graph once into the model cache
    for prune in (DEFAULT_PRUNE, shipped_config("tiny.en", serve=True)):
        runner = make_runner("auto", "tiny.en", prune, "cpu", load=False)
        assert runner.backend == "onnxruntime", runner.reason
    assert make_runner("auto", "tiny.en", DEFAULT_PRUNE, "cpu", load=False, batched=True).backend == "onnxruntime"


@pytest.mark.parametrize("driver", [API, CLI, CLI_BATCHED], ids=["api", "trt-transcribe", "batched"])
def test_ort_transcription_imports_no_torch(cached_exports, driver):
    report = _run(driver)
    assert report["backend"] == "onnxruntime"
    assert "ask not what your country can do for you" in report["text"].lower()
    assert not report["torch"] and not report["transformers"], report
    # the VAD's graph parts come from the model cache: the onnx package (0.7 s to import) stays out
    assert not report["onnx"], report


def test_serve_transcription_imports_no_torch(cached_exports):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    report = _run(SERVE)
    assert report["backend"] == "onnxruntime" and "country" in report["text"].lower()
    assert not report["torch"] and not report["transformers"], report


def test_our_commands_give_numpy_blas_one_thread_unless_the_user_chose():
    """numpy's OpenBLAS threads spin after the log-mel's product and take a core from ONNX Runtime:
    the entry points set one thread before numpy loads, and keep a user's own setting."""
    import glob
    import os
    import subprocess
    import sys

    import numpy

    if not glob.glob(os.path.join(os.path.dirname(numpy.__file__), "..", "numpy.libs", "libscipy_openblas*")):
        pytest.skip("numpy without its bundled OpenBLAS")
    script = """
import glob, os, ctypes
import whisper_eas.cli.transcribe_cmd
import numpy
lib = glob.glob(os.path.join(os.path.dirname(numpy.__file__), "..", "numpy.libs", "libscipy_openblas*"))[0]
print(ctypes.CDLL(lib).scipy_openblas_get_num_threads64_())
"""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    ours = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    chosen = subprocess.run([sys.executable, "-c", script], env={**env, "OPENBLAS_NUM_THREADS": "2"},
                            capture_output=True, text=True, check=True)
    assert ours.stdout.split()[-1] == "1"
    assert chosen.stdout.split()[-1] == "2"
