"""Log-mel features in NumPy equal the PyTorch/transformers formulation Whisper's reference uses
(torch.stft on a periodic Hann window, transformers' Slaney filterbank) within float32 noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from whisper_eas.audio import load_audio, open_audio
from whisper_eas.features import (HOP_LENGTH, N_FFT, N_SAMPLES, StreamMel, content_frames, log_mel, mel_filters,
                                  speech_bounds, window_features)

from conftest import DATA

CLIPS = [DATA / "audio" / "cathy-arctic_a0001.flac", DATA / "audio" / "long-cathy-a0001-a0019.flac"]


def _reference_log_mel(audio: np.ndarray, n_mels: int, padding: int = 0) -> np.ndarray:
    """openai/whisper's log_mel_spectrogram with transformers' filterbank, in torch."""
    from transformers.audio_utils import mel_filter_bank

    samples = torch.nn.functional.pad(torch.from_numpy(audio), (0, padding))
    stft = torch.stft(samples, N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT), return_complex=True)
    bank = mel_filter_bank(num_frequency_bins=201, num_mel_filters=n_mels, min_frequency=0.0, max_frequency=8000.0,
                           sampling_rate=16000, norm="slaney", mel_scale="slaney")
    mel = torch.from_numpy(bank.T.astype(np.float32)) @ (stft[..., :-1].abs() ** 2)
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).numpy()


@pytest.mark.parametrize("n_mels", [80, 128])
def test_filterbank_equals_transformers(n_mels):
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(num_frequency_bins=201, num_mel_filters=n_mels, min_frequency=0.0, max_frequency=8000.0,
                           sampling_rate=16000, norm="slaney", mel_scale="slaney")
    ours = mel_filters(n_mels)
    assert ours.shape == (n_mels, 201) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, bank.T, rtol=0, atol=1e-7)


def test_log_mel_equals_the_torch_formulation_on_real_audio():
    for path in CLIPS:
        audio = load_audio(path)[: 40 * 16000]
        for padding in (0, N_SAMPLES):
            ours, reference = log_mel(audio, 80, padding), _reference_log_mel(audio, 80, padding)
            assert ours.shape == reference.shape and ours.dtype == np.float32
            assert np.abs(ours - reference).max() < 1e-4, (path.name, padding)
    assert window_features(load_audio(CLIPS[0])).shape == (80, 3000)


def test_stream_features_equal_the_torch_formulation():
    audio = load_audio(CLIPS[1])
    reference = _reference_log_mel(audio, 80, N_SAMPLES)
    mel = StreamMel(open_audio(CLIPS[1]).blocks, 80)
    for seek in (0, 2999, 4567):
        assert np.abs(mel.frames(seek, seek + 3000) - reference[:, seek : seek + 3000]).max() < 1e-4


def test_content_and_speech_bounds_equal_selection():
    """The NumPy extents the runners read equal `selection`'s torch ones (hooks, exported graphs)."""
    from whisper_eas import selection

    audio = load_audio(CLIPS[0])
    silence = np.zeros(16000, np.float32)
    mel = np.stack([window_features(audio), window_features(np.concatenate([silence, audio])),
                    np.zeros((80, 3000), np.float32)])
    assert content_frames(mel).tolist() == selection.content_frames(torch.from_numpy(mel)).tolist()
    assert speech_bounds(mel).tolist() == selection.speech_bounds(torch.from_numpy(mel)).tolist()
    assert speech_bounds(mel)[1, 0] > speech_bounds(mel)[0, 0]  # the leading second of silence
