"""The Python API prints no third-party progress bars or logs, even on a first run that converts
the embedded weights and loads them (transformers' "Writing model shards" and "Loading weights")."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import AUDIO

THIRD_PARTY = ("Loading weights", "Writing model shards", "it/s]", "s/it]", "[W:onnxruntime", "[E:onnxruntime",
               "UserWarning", "FutureWarning")

FIRST_RUN = f"""
from whisper_eas import Transcriber
from whisper_eas.batched_longform import BatchedOptions
clip = {str(AUDIO / 'jfk-inaugural-1961.flac')!r}
print(Transcriber.from_model("tiny.en", backend="pytorch", dense=True).transcribe(clip).text)
print(Transcriber.from_model("tiny.en", backend="pytorch", dense=True, batched=BatchedOptions()).transcribe(clip).text)
"""


def test_a_first_run_through_the_api_prints_no_library_progress(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFORMERS_", "TQDM_"))}
    env["WHISPER_EAS_HOME"] = str(tmp_path / "home")  # nothing converted yet: the first-run path
    run = subprocess.run([sys.executable, "-c", FIRST_RUN], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ask not what your country" in run.stdout.lower()
    assert (tmp_path / "home" / "models" / "tiny.en").is_dir()  # it did convert
    printed = [marker for marker in THIRD_PARTY if marker in run.stderr]
    assert not printed, f"library output on stderr ({printed}):\n{run.stderr[-2000:]}"


def test_the_api_leaves_transformers_settings_as_it_found_them():
    from transformers.utils import logging as hf_logging

    from whisper_eas.checkpoints.loading import load_whisper_config

    before = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    load_whisper_config("tiny.en")
    assert (hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()) == before
