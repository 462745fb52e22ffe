"""CTranslate2 as the reference for checking a conversion (optional dependency `ctranslate2`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from whisper_eas.errors import MissingDependencyError


def _ctranslate2():
    try:
        import ctranslate2
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("comparing against CTranslate2 needs it: pip install 'whisper-eas[compare]'") from error
    return ctranslate2


class CT2Reference:
    """A CTranslate2 Whisper model in float32 on the CPU, fed our own log-mel features."""

    def __init__(self, ct2_dir: str | Path, model_bin: Path | None = None):
        ct2 = _ctranslate2()
        self.model = ct2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32", **self._files(ct2_dir, model_bin))

    @staticmethod
    def _files(ct2_dir, model_bin):
        if model_bin is None:
            return {}
        files = {name: open(Path(ct2_dir) / name, "rb").read() for name in ("config.json", "vocabulary.txt")}
        files["model.bin"] = open(model_bin, "rb").read()
        return {"files": files}

    def _features(self, mel: torch.Tensor):
        return _ctranslate2().StorageView.from_array(np.ascontiguousarray(mel.numpy(), dtype=np.float32))

    def encode(self, mel: torch.Tensor) -> np.ndarray:
        """Encoder output [B, 1500, D] as float32."""
        return np.array(self.model.encode(self._features(mel), to_cpu=True))

    def greedy_tokens(self, mel: torch.Tensor, prompt: list[int]) -> list[list[int]]:
        """Greedy text tokens (beam 1, no timestamps) for each window of mel [B, n_mels, 3000]."""
        results = self.model.generate(self._features(mel), [prompt] * mel.shape[0], beam_size=1, max_length=448)
        return [r.sequences_ids[0] for r in results]
