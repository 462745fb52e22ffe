"""Shared fixtures: real embedded weights (converted once per session) and real dev audio."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
AUDIO = DATA / "audio"


def pytest_configure(config):
    # One model cache per test session unless the caller pinned one (CI reuses it across steps).
    os.environ.setdefault("WHISPER_EAS_HOME", str(Path(__file__).parent.parent / ".cache" / "whisper-eas"))
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    have_trt = importlib.util.find_spec("tensorrt") is not None
    have_cuda = False
    try:
        import torch

        have_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        pass
    for item in items:
        if "requires_tensorrt" in item.keywords and not (have_trt and have_cuda):
            item.add_marker(pytest.mark.skip(reason="TensorRT and an NVIDIA GPU are not available here"))
        if "requires_cuda" in item.keywords and not have_cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU here"))


@pytest.fixture(scope="session")
def tiny_runner():
    from whisper_eas.runners.torch_runner import TorchRunner

    return TorchRunner("tiny.en")


@pytest.fixture(scope="session")
def base_runner():
    """Multilingual base on PyTorch, dense: loaded once for the language tests of several modules."""
    from whisper_eas.runners.torch_runner import TorchRunner

    return TorchRunner("base")


@pytest.fixture(scope="session")
def tiny_model(tiny_runner):
    return tiny_runner.model


@pytest.fixture(scope="session")
def dev_mels():
    """Log-mel windows [4, 80, 3000] of four real utterances, and their reference texts."""
    import torch

    from whisper_eas.audio import load_audio
    from whisper_eas.evaluation.manifest import read_manifest
    from whisper_eas.features import window_features

    utts = read_manifest(DATA / "manifest.tsv")[:4]
    return torch.from_numpy(np.stack([window_features(load_audio(u.path)) for u in utts])), [u.text for u in utts]


@pytest.fixture(scope="session")
def sparse_dir(tmp_path_factory, tiny_model):
    """tiny.en exported at layer 1 keep 0.5, shared by the ONNX tests."""
    from onnx_exports import SPARSE, exported

    return exported(tmp_path_factory, tiny_model, SPARSE)


@pytest.fixture(scope="session")
def dense_dir(tmp_path_factory, tiny_model):
    """tiny.en exported dense."""
    from onnx_exports import exported

    return exported(tmp_path_factory, tiny_model, None)


@pytest.fixture(scope="session")
def jfk_cli_default():
    """`trt-transcribe jfk-inaugural-1961.flac` with every default (click's result), run once for the
    tests that read its output (the transcript, the backend line, the cached graphs' banner)."""
    from click.testing import CliRunner

    from whisper_eas.cli.transcribe_cmd import command

    return CliRunner().invoke(command, [str(AUDIO / "jfk-inaugural-1961.flac")])
