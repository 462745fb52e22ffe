"""Silence/tone/noise files and a sentence in noise: default vs vad_filter (one process, warm)."""
import sys, time
import numpy as np, soundfile as sf
from whisper_eas.audio import load_audio
from whisper_eas.transcribe import Transcriber

D = ".scratch/gate"  # run from the repository root; the generated files go here
SENT = "../shared/data/speech-dev/audio/ls-test-other-1688-142285-0003.flac"  # 5.06 s
import os
os.makedirs(D, exist_ok=True)
rng = np.random.default_rng(0)
sr = 16000
files = {
    "silence30": (rng.standard_normal(30 * sr) * 1e-5).astype(np.float32),
    "tone10": (0.1 * np.sin(2 * np.pi * 440 * np.arange(10 * sr) / sr)).astype(np.float32),
    "nearsilence30": (rng.standard_normal(30 * sr) * 1e-3).astype(np.float32),
    "short50ms": (rng.standard_normal(800) * 1e-2).astype(np.float32),
}
for i, dur in enumerate((5, 6, 7, 8, 9, 10)):
    files[f"noise{dur}"] = (rng.standard_normal(dur * sr) * 10 ** (-2 + i % 3 * 0.5)).astype(np.float32)
sent = load_audio(SENT)
for at in (5.0, 29.0, 47.5):
    a = (rng.standard_normal(60 * sr) * 3e-3).astype(np.float32)
    s = int(at * sr); a[s:s + len(sent)] += sent
    files[f"sent_at{at:g}"] = a
for name, a in files.items():
    sf.write(f"{D}/{name}.wav", a, sr, subtype="FLOAT")
t = Transcriber.from_model("tiny.en", backend="auto")
t.transcribe(f"{D}/tone10.wav")  # warm
for mode in sys.argv[1:] or ["default", "vad_filter"]:
    tt = t.with_settings(vad_filter=(mode == "vad_filter"))
    tot = 0
    for name in files:
        t0 = time.perf_counter(); r = tt.transcribe(f"{D}/{name}.wav"); dt = time.perf_counter() - t0; tot += dt
        segs = [(s.start, s.end, s.text.strip()[:50]) for s in r.segments]
        print(f"{mode:10s} {name:14s} {dt:6.2f}s {len(segs)} segs {segs}", flush=True)
    print(f"{mode} total {tot:.1f}s")
