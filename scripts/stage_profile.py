"""Where a long recording's time and memory go: whisper-eas's default CPU path against faster-whisper
int8, stage by stage, each side in its own fresh process (issue 26's profile).

Per side: importing the library, opening the model (sessions / CTranslate2 model), the encoder on a
full 30 s window (median of the recording's first windows, warm), greedy decoding with timestamps
split into the first token (cross keys/values and the prompt's step) and each
further token (no previous text), and the process's resident
memory after opening and at its peak. Whole-process times are `process_compare.py`'s job.

    PYTHONPATH=src python scripts/stage_profile.py --out docs/data/bench/stage-profile-2026-12-08.json \
        ../shared/data/speech-dev/audio/long-ls-test-other-3080-5032.flac ...
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

WINDOW = 480_000  # samples in 30 s
WINDOWS = 3  # full windows measured per recording


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median(values: list[float]) -> float:
    """The upper median: the middle of three windows; of two processes, the larger figure."""
    values = sorted(values)
    return values[len(values) // 2]


def ours(path: str) -> dict:
    started = time.perf_counter()
    from whisper_eas.audio import load_audio
    from whisper_eas.decoding import DecodingOptions
    from whisper_eas.features import window_features
    from whisper_eas.longform import WindowRequest
    from whisper_eas.runners.base import DenseView
    from whisper_eas.runners.factory import make_runner
    from whisper_eas.window_decode import decode_windows

    imported = time.perf_counter()
    runner = make_runner()  # the default: cached int8-dec graphs; a long recording's windows run dense
    opened = time.perf_counter()
    rss_open = _rss_mb()
    audio = load_audio(path)
    mels = [window_features(audio[i * WINDOW:(i + 1) * WINDOW])[None] for i in range(WINDOWS)]
    dense = DenseView(runner)
    encode_s, tokens, decode_s, first_s = [], 0, 0.0, []
    options = DecodingOptions(language="en")
    dense.encode(mels[0])  # warm: the first call sizes the arena
    for mel in mels:
        begin = time.perf_counter()
        encoded = dense.encode(mel)
        encode_s.append(time.perf_counter() - begin)
        request = [WindowRequest(mel[0], (), "en", seed=0)]
        begin = time.perf_counter()
        decode_windows(dense, request, replace(options, sample_len=1), encoded=encoded)
        first_s.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        outcome = decode_windows(dense, request, options, encoded=encoded)[0]
        decode_s += time.perf_counter() - begin
        tokens += len(outcome.result.tokens)
    return _report(imported - started, opened - imported, rss_open, encode_s, first_s, decode_s, tokens)


def faster_whisper(path: str) -> dict:
    import tempfile

    started = time.perf_counter()
    from faster_whisper import WhisperModel
    from faster_whisper.audio import decode_audio
    from faster_whisper.tokenizer import Tokenizer

    imported = time.perf_counter()
    from whisper_eas.checkpoints.registry import embedded_ct2_dir  # the same weights, converted (not timed)

    ct2 = embedded_ct2_dir("tiny.en", Path(tempfile.mkdtemp()) / "ct2")
    opening = time.perf_counter()
    model = WhisperModel(str(ct2), device="cpu", compute_type="int8", cpu_threads=2)
    opened = time.perf_counter()
    rss_open = _rss_mb()
    audio = decode_audio(path)
    prompt = list(Tokenizer(model.hf_tokenizer, False).sot_sequence)
    encode_s, tokens, decode_s, first_s = [], 0, 0.0, []
    model.model.encode(_features(model, audio, 0), to_cpu=False)  # warm, as ours
    for i in range(WINDOWS):
        features = _features(model, audio, i)
        begin = time.perf_counter()
        encoded = model.model.encode(features, to_cpu=False)
        encode_s.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        model.model.generate(encoded, [prompt], beam_size=1, max_length=len(prompt) + 1)
        first_s.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        result = model.model.generate(encoded, [prompt], beam_size=1, max_length=224, suppress_blank=True)
        decode_s += time.perf_counter() - begin
        tokens += len(result[0].sequences_ids[0])
    return _report(imported - started, opened - opening, rss_open, encode_s, first_s, decode_s, tokens)


def _report(import_s: float, open_s: float, rss_open: float, encode_s: list[float], first_s: list[float],
            decode_s: float, tokens: int) -> dict:
    """Per window: the encoder, the decoder's first token (cross keys/values and the prompt's step),
    then each further token (the decoding time less the first token's, over the tokens after it)."""
    first = _median(first_s)
    return dict(import_s=import_s, open_s=open_s, rss_open_mb=rss_open, encode_s=_median(encode_s),
                first_token_s=first, ms_per_next_token=1000 * (decode_s - first * len(first_s)) / max(1, tokens - len(first_s)),
                tokens=tokens, peak_mb=_peak_mb())


def _features(model, audio, window: int):
    import ctranslate2
    import numpy as np

    features = model.feature_extractor(audio[window * WINDOW:(window + 1) * WINDOW])[None, :, :3000]
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(features, dtype=np.float32))


SIDES = {"whisper-eas": ours, "faster-whisper int8": faster_whisper}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", nargs="*")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per side and recording (upper median: of 2, the larger)")
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(SIDES[args.child[0]](args.child[1])))
        return
    report: dict = {"machine": "2 CPU cores", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "windows_per_recording": WINDOWS, "records": {}}
    for path in args.audio:
        record = report["records"][Path(path).stem] = {}
        for side in SIDES:
            runs = [json.loads(subprocess.run([sys.executable, __file__, "--child", side, path], check=True,
                                              capture_output=True, text=True).stdout.splitlines()[-1])
                    for _ in range(args.rounds)]
            record[side] = {key: _median([run[key] for run in runs]) for key in runs[0]}
        print(Path(path).stem, json.dumps(record, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
