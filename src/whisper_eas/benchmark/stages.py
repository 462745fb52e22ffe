"""Where one of our ONNX Runtime long-form runs spends its time, stage by stage.

Times one pass over the audio with the stages wrapped (restored afterwards): features (scanning
the audio and its log-mel, `LongformFile.from_stream`, `StreamMel.frames`), encoder (`runner.encode`: head, prune, tail), cross
keys/values (`runner.decoder`: the `decoder_cross` graph, once per window), the prompt step (the
first `decoder_step` call of a window: previous text + start tokens), decoder steps (one token
each), and the rest: Python (the decoding loop, logit rules, segmenting, fallback bookkeeping).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

STAGES = ("features", "encoder", "cross_kv", "prompt_step", "decoder_steps", "python_other")


@contextmanager
def _patched(owner, name: str, timer: Callable) -> Iterator[None]:
    """`owner.name` replaced by `timer(owner.name)` for the block; the original put back after."""
    own = name in vars(owner)
    saved = vars(owner).get(name)
    setattr(owner, name, timer(getattr(owner, name)))
    try:
        yield
    finally:
        if own:
            setattr(owner, name, saved)
        else:
            delattr(owner, name)


def stage_profile(runner, transcribe: Callable[[np.ndarray], str], audios: list[np.ndarray]) -> dict[str, float]:
    """Seconds per stage (plus `total`, `steps`: decoder steps taken) of one pass over `audios`."""
    from whisper_eas.features import StreamMel
    from whisper_eas.longform import LongformFile
    from whisper_eas.runners.ort_runner import OrtDecoderSession

    spent = dict.fromkeys(STAGES, 0.0)
    steps = [0]

    def timed(stage: str):
        def wrap(function):
            def inner(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    spent[stage] += time.perf_counter() - start
            return inner
        return wrap

    def step_timer(function):
        def inner(self, tokens, positions=None):
            start = time.perf_counter()
            try:
                return function(self, tokens, positions)
            finally:
                single = tokens.shape[1] == 1
                spent["decoder_steps" if single else "prompt_step"] += time.perf_counter() - start
                steps[0] += int(single)
        return inner

    with _patched(runner, "encode", timed("encoder")), _patched(runner, "decoder", timed("cross_kv")), \
            _patched(OrtDecoderSession, "step", step_timer), \
            _patched(LongformFile, "from_stream", lambda bound: staticmethod(timed("features")(bound))), \
            _patched(StreamMel, "frames", timed("features")):
        start = time.perf_counter()
        for audio in audios:
            transcribe(audio)
        total = time.perf_counter() - start
    spent["python_other"] = total - sum(v for k, v in spent.items() if k != "python_other")
    return {**{k: round(v, 3) for k, v in spent.items()}, "total": round(total, 3), "steps": steps[0]}
