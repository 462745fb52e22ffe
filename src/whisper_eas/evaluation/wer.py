"""Word error rate after Whisper's English text normalizer, scored with jiwer."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    return _normalizer()(text)


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference words) after normalization; an empty reference has no words."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    n_words = len(ref.split())
    if n_words == 0:
        return len(hyp.split()), 0
    import jiwer

    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, n_words


def corpus_wer(pairs: list[tuple[str, str]]) -> tuple[float, int]:
    """(WER in percent over all words, number of reference words)."""
    errors = words = 0
    for ref, hyp in pairs:
        e, n = word_errors(ref, hyp)
        errors, words = errors + e, words + n
    return (100.0 * errors / words if words else 0.0), words
