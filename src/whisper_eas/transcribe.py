"""File-level transcription API: `Transcriber(...).transcribe(path_or_array)`."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from whisper_eas.audio import SAMPLE_RATE, check_samples, load_audio
from whisper_eas.config import PruneConfig
from whisper_eas.decoding import DecodingOptions
from whisper_eas.features import N_FRAMES, log_mel, pad_or_trim
from whisper_eas.guard import GuardOptions
from whisper_eas.runners.base import Runner
from whisper_eas.windows import decode_windows


@dataclass
class Segment:
    """A stretch of text with its time span in seconds."""

    start: float
    end: float
    text: str
    tokens: list[int] = field(default_factory=list)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0
    kept_frames: int = 1500
    fallback: str | None = None


@dataclass
class TranscriptionResult:
    """Everything known about one transcribed input."""

    source: str
    text: str
    segments: list[Segment]
    language: str | None
    duration_s: float
    model: str
    backend: str
    device: str
    prune: dict | None
    timing: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class Transcriber:
    """Transcribes audio files or arrays with one runner (model + backend + prune config)."""

    def __init__(
        self,
        runner: Runner,
        options: DecodingOptions | None = None,
        guard: GuardOptions | None = None,
        batch_size: int = 8,
    ):
        self.runner = runner
        self.options = options or DecodingOptions()
        self.guard = guard or GuardOptions()
        self.batch_size = batch_size

    @classmethod
    def from_model(
        cls,
        model: str = "tiny.en",
        prune: PruneConfig | None = None,
        backend: str = "pytorch",
        device: str = "cpu",
        **kwargs,
    ) -> "Transcriber":
        from whisper_eas.runners.factory import make_runner

        return cls(make_runner(backend=backend, model=model, prune=prune, device=device), **kwargs)

    def transcribe(self, audio: str | Path | np.ndarray) -> TranscriptionResult:
        """Transcribe one input in consecutive 30 s windows."""
        start = time.perf_counter()
        if isinstance(audio, (str, Path)):
            source, samples = str(audio), load_audio(audio)
        else:
            source, samples = "<array>", check_samples("<array>", audio)
        mel = log_mel(samples, self.runner.n_mels, padding=0)
        content_frames = mel.shape[-1]
        windows = [pad_or_trim(mel[:, s : s + N_FRAMES]) for s in range(0, max(content_frames, 1), N_FRAMES)]
        segments: list[Segment] = []
        language = self.options.language
        for first in range(0, len(windows), self.batch_size):
            batch = torch.stack(windows[first : first + self.batch_size])
            for offset, window in enumerate(decode_windows(self.runner, batch, self.options, self.guard)):
                index = first + offset
                t0 = index * N_FRAMES / 100
                t1 = min((index + 1) * N_FRAMES / 100, len(samples) / SAMPLE_RATE)
                r = window.result
                language = language or r.language
                segments.append(
                    Segment(t0, t1, r.text, r.tokens, r.avg_logprob, r.no_speech_prob, r.compression_ratio,
                            r.temperature, window.kept_frames, window.fallback)
                )
        text = " ".join(s.text for s in segments if s.text).strip()
        info = self.runner.describe()
        return TranscriptionResult(
            source=source,
            text=text,
            segments=segments,
            language=language,
            duration_s=len(samples) / SAMPLE_RATE,
            model=info["model"],
            backend=info["backend"],
            device=info["device"],
            prune=info["prune"],
            timing={"wall_s": time.perf_counter() - start},
        )
