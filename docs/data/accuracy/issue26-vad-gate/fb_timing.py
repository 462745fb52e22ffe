"""Batched mode, per recording: fallback_best_of=None (before: best_of 5 per temperature) vs 1 (after), interleaved."""
import glob, time
from whisper_eas.transcribe import Transcriber
from whisper_eas.batched_longform import BatchedOptions
files = sorted(glob.glob("../shared/data/speech-dev/audio/long-*.flac")) + sorted(glob.glob("../shared/data/speech-val/audio/long-*.flac"))
new = Transcriber.from_model("tiny.en", backend="auto", batched=BatchedOptions())
old = Transcriber(new.runner, options=new.options, guard=new.guard, batch_size=new.batch_size, longform=new.longform,
                  batched=BatchedOptions(fallback_best_of=None))
new.transcribe(files[0]); old.transcribe(files[0])  # warm
for rep in range(2):
    for f in files:
        row = []
        for name, t in (("before", old), ("after", new)) if rep == 0 else (("after", new), ("before", old)):
            t0 = time.perf_counter(); r = t.transcribe(f); dt = time.perf_counter() - t0
            row.append(f"{name} {dt:5.2f}s T={max(w.temperature for w in r.windows)}")
        print(f.split("/")[-1][:34].ljust(34), " | ".join(row), flush=True)
