"""The guard's repeated-span rule, on token sequences built with base's real tokenizer."""

from __future__ import annotations

import pytest

from whisper_eas.decoding import DecodingResult
from whisper_eas.guard import GuardOptions, degenerate_reason, repeated_span, unfinished_ending
from whisper_eas.repetition import compression_ratio

SENTENCE = "He said that healthy eating was high on the council agenda."  # speech-val vctk-p225_224


@pytest.fixture(scope="module")
def tokenizer():
    from whisper_eas.checkpoints.registry import resolve_model
    from whisper_eas.tokenizer import WhisperTokenizer

    return WhisperTokenizer.from_file(resolve_model("base") / "tokenizer.json", multilingual=True)


def timestamped(tokenizer, segments: list[tuple[float, float, str]]) -> DecodingResult:
    """A window decoded with timestamps, as the product path decodes it: <|t0|> text <|t1|> per segment."""
    stamp = lambda seconds: tokenizer.timestamp_begin + round(seconds / 0.02)  # noqa: E731
    tokens: list[int] = []
    for start, end, text in segments:
        tokens += [stamp(start), *tokenizer.encode(" " + text), stamp(end)]
    text = tokenizer.decode(tokens)
    return DecodingResult(tokens, text, avg_logprob=-0.2, no_speech_prob=0.0,
                          compression_ratio=compression_ratio(text), temperature=0.0)


def test_a_sentence_said_twice_is_a_repeat(tokenizer):
    """The pruned product-path failure: the sentence decoded, then decoded again as a second
    segment. It compresses too little (and is no back-to-back n-gram loop of 4) for the older rules."""
    result = timestamped(tokenizer, [(0.0, 3.2, SENTENCE), (3.2, 5.8, SENTENCE)])
    assert result.compression_ratio < 2.4
    assert degenerate_reason(result, GuardOptions(repeat_span_words=None)) is None
    assert degenerate_reason(result, GuardOptions()) == "repeat"


def test_a_run_on_that_repeats_a_clause_apart_is_a_repeat(tokenizer):
    """vctk-p363_023's run-on: the clause comes back after a different opening, not back to back."""
    clause = "the result is to give a bow with an abnormally wide yellow band"
    first = f"If the red of the second bow falls upon the green of the first, {clause}."
    again = f"The red of the third bow falls upon the red of the third bow, {clause}."
    result = timestamped(tokenizer, [(0.0, 4.0, first), (4.0, 8.0, again)])
    assert degenerate_reason(result, GuardOptions()) == "repeat"


def test_a_window_that_says_its_prompt_again_is_a_repeat(tokenizer):
    """vctk-p225_224 through the product path: the first window says the sentence, the seek leaves
    a second window over the last seconds, and the pruned encoder decodes the whole sentence again.
    The copy starts in the window's own text; text that only the prompt holds does not count."""
    result = timestamped(tokenizer, [(0.0, 2.6, SENTENCE)])
    assert degenerate_reason(result, GuardOptions()) is None
    assert degenerate_reason(result, GuardOptions(), previous=" " + SENTENCE) == "repeat"
    assert not repeated_span("agenda.", 8, previous=SENTENCE + " " + SENTENCE)


def test_the_prompt_is_decoded_only_when_the_repeat_check_reads_it(tokenizer):
    """`previous` may be how to get the prompt's text: a window caught by an earlier check, or with
    the repeat check off, never decodes it."""
    asked = []

    def prompt() -> str:
        asked.append(1)
        return " " + SENTENCE

    result = timestamped(tokenizer, [(0.0, 2.6, SENTENCE)])
    assert degenerate_reason(result, GuardOptions(repeat_span_words=None), previous=prompt) is None and not asked
    assert degenerate_reason(result, GuardOptions(logprob_threshold=0.5), previous=prompt) == "logprob" and not asked
    assert degenerate_reason(result, GuardOptions(), previous=prompt) == "repeat" and asked == [1]


def test_normal_speech_with_common_phrases_is_left_alone(tokenizer):
    text = ("At the same time, the committee said that the plan was sound. At the same time, it asked "
            "for more money, and the council said that the plan was late.")  # 5 words repeated at most
    result = timestamped(tokenizer, [(0.0, 4.0, SENTENCE), (4.0, 12.0, text)])
    assert degenerate_reason(result, GuardOptions()) is None
    assert degenerate_reason(result, GuardOptions(), previous="The plan was sound, and the money was late.") is None
    assert not repeated_span(text, 8) and repeated_span(text, 4)


def test_an_unfinished_last_segment_where_the_audio_ends_is_re_run(tokenizer):
    """A window holding the file's end whose text does not end in a lone timestamp would send
    long-form decoding back for a tail window (where the sentence gets said again)."""
    begin = tokenizer.timestamp_begin
    paired = timestamped(tokenizer, [(0.0, 3.2, SENTENCE)])
    paired.tokens.append(begin + 160)  # "<|0.00|> text <|3.20|><|3.20|>": a complete segment...
    assert unfinished_ending(paired.tokens, begin)  # ...then the window's last timestamp pair: unfinished
    closed = timestamped(tokenizer, [(0.0, 3.2, SENTENCE)])  # "<|0.00|> text <|3.20|>": lone timestamp
    assert not unfinished_ending(closed.tokens, begin)
    assert not unfinished_ending(tokenizer.encode(SENTENCE), begin)  # no timestamps: nothing to say
    assert degenerate_reason(paired, GuardOptions(), timestamp_begin=begin, audio_ends=True) == "unfinished"
    assert degenerate_reason(paired, GuardOptions(), timestamp_begin=begin, audio_ends=False) is None
    assert degenerate_reason(paired, GuardOptions(unfinished_end=False), timestamp_begin=begin, audio_ends=True) is None
    assert degenerate_reason(closed, GuardOptions(), timestamp_begin=begin, audio_ends=True) is None


def test_overlapping_occurrences_do_not_count():
    assert not repeated_span("one two one two one two one two one", 8)  # the span at 0 and 2 overlap
    assert repeated_span("one two " * 8, 8)


def test_repeat_option_is_validated():
    with pytest.raises(ValueError, match="repeat_span_words"):
        GuardOptions(repeat_span_words=1)
    assert GuardOptions(repeat_span_words=None).repeat_span_words is None
