"""Full 30 s windows planned from a long recording made of known utterances."""

from __future__ import annotations

import pytest

from whisper_eas.evaluation.full_windows import GAP_S, plan_windows

HEADER = "id\tpath\tduration_s\ttext\n"


def _manifests(tmp_path, durations, long_duration=None):
    short = tmp_path / "short.tsv"
    short.write_text(HEADER + "".join(f"ls-x-{i:04d}\ta/{i}.flac\t{d}\tWORD{i}\n" for i, d in enumerate(durations)))
    total = sum(durations) + GAP_S * (len(durations) - 1) if long_duration is None else long_duration
    long = tmp_path / "long.tsv"
    long.write_text(HEADER + f"long-ls-x\ta/long.flac\t{total:.3f}\tall\n")
    return long, short


def test_windows_pack_consecutive_utterances_up_to_30s(tmp_path):
    long, short = _manifests(tmp_path, [12.0, 9.0, 8.0, 14.0, 7.0, 3.0])
    windows = plan_windows(long, short)
    # from WORD1 only 17.3 s fit (adding WORD3 passes 30 s) and from WORD4 only 10.3 s: both left out
    assert [w.text for w in windows] == ["WORD0 WORD1 WORD2", "WORD2 WORD3 WORD4", "WORD3 WORD4 WORD5"]
    for w in windows:
        assert 20.0 <= w.end_s - w.start_s <= 30.0
    assert windows[0].start_s == 0.0 and windows[0].end_s == pytest.approx(12 + 9 + 8 + 2 * GAP_S)
    assert windows[1].start_s == pytest.approx(12 + 9 + 2 * GAP_S)


def test_durations_that_do_not_add_up_are_rejected(tmp_path):
    long, short = _manifests(tmp_path, [12.0, 9.0], long_duration=40.0)
    with pytest.raises(ValueError, match="do not add up"):
        plan_windows(long, short)
