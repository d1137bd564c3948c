"""Writers against golden files (every format), `Result.to_dict`, atomic writes."""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mlxwx import writers
from mlxwx.types import Result, Segment, Word
from mlxwx.writers import (
    ALL_FORMATS,
    FORMATS,
    WRITERS,
    SubtitleOptions,
    atomic_folder,
    to_aud,
    to_json,
    to_srt,
    to_tsv,
    to_vtt,
    write_atomic,
    write_result,
)
from mlxwx.writers import cues as subtitle_cues

GOLDEN = Path(__file__).parent / "data" / "writers"


def sample_result() -> Result:
    """Speakers, non-ASCII text, a tab and an arrow in the text, a segment past 99 minutes,
    words with and without times."""
    hello = Segment(
        0.0,
        2.5,
        " Hello there.",
        words=(
            Word("Hello", 0.0, 0.8, 0.91, "SPEAKER_00"),
            Word("there.", 1.0, 2.5, 0.5, "SPEAKER_00"),
        ),
        avg_logprob=-0.25,
        no_speech_prob=0.01,
        compression_ratio=1.1,
        speaker="SPEAKER_00",
    )
    odd = Segment(61.002, 63.9996, " a\tb --> c", avg_logprob=-0.5, temperature=0.2)
    late = Segment(
        5999.5,
        6001.25,
        " Ça va ? 日本語です «très» bien",
        words=(Word("Ça", 5999.5, 5999.9, 0.8, "SPEAKER_01"), Word("日本語です", None, None)),
        speaker="SPEAKER_01",
    )
    return Result((hello, odd, late), "fr", 6002.0, "talk.flac")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_matches_its_golden_file(fmt):
    assert WRITERS[fmt](sample_result()) == (GOLDEN / f"talk.{fmt}").read_text(encoding="utf-8")


def test_to_dict_has_words_speakers_and_word_segments():
    data = sample_result().to_dict()
    assert data["language"] == "fr" and len(data["segments"]) == 3
    first, _, last = data["segments"]
    assert first["speaker"] == "SPEAKER_00"
    assert first["words"][0] == {
        "word": "Hello", "start": 0.0, "end": 0.8, "score": 0.91, "speaker": "SPEAKER_00"
    }  # fmt: skip
    assert last["words"][1] == {"word": "日本語です"}  # no time: no start/end keys
    assert [w["word"] for w in data["word_segments"]] == ["Hello", "there.", "Ça", "日本語です"]
    assert last["start"] == 5999.5 and data["segments"][1]["end"] == 64.0
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data


def test_write_result_writes_json_last_and_readable(tmp_path):
    written = write_result(sample_result(), tmp_path / "out" / "talk", ["json", "srt", "txt"])
    assert [p.suffix for p in written] == [".srt", ".txt", ".json"]
    umask = os.umask(0)
    os.umask(umask)
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "talk.json", "talk.srt", "talk.txt"
    ]  # fmt: skip


def test_write_atomic_replaces_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "a.txt"
    write_atomic(path, "one")
    write_atomic(path, "two")
    assert path.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def _worded(texts: list[str], starts: list[float]) -> Result:
    segments = []
    for text, start in zip(texts, starts, strict=True):
        words = tuple(
            Word(w, start + 0.5 * i, start + 0.5 * i + 0.4) for i, w in enumerate(text.split())
        )
        segments.append(
            Segment(words[0].start or 0.0, words[-1].end or 0.0, " " + text, words=words)
        )
    return Result(tuple(segments), "en", 60.0)


LONG = "And so my fellow Americans ask not what your country can do for you"


def test_cues_wrap_lines_and_start_new_cues_from_word_times():
    result = _worded([LONG, "ask what you can do for your country."], [0.0, 10.0])
    cues = subtitle_cues(result, SubtitleOptions(max_line_width=20, max_line_count=2))
    for cue in cues:
        lines = cue.text.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 20 for line in lines)
    assert " ".join(c.text.replace("\n", " ") for c in cues).split() == [
        w.word for s in result.segments for w in s.words
    ]
    assert cues[-1].start == 10.0  # the 3 s pause before it starts a new cue
    assert [c.start for c in cues] == sorted(c.start for c in cues)
    starts = {w.start for s in result.segments for w in s.words}
    assert all(c.start in starts for c in cues)


def test_without_a_line_count_each_segment_is_a_cue_wrapped_at_the_width():
    result = _worded([LONG, "ask what you can do"], [0.0, 7.0])
    cues = subtitle_cues(result, SubtitleOptions(max_line_width=30))
    assert len(cues) == 2 and cues[0].text.count("\n") == 2
    assert cues[0].text.split("\n")[0] == "And so my fellow Americans ask"


def test_highlighted_words_are_underlined_one_cue_each():
    result = _worded(["ask not what"], [1.0])
    cues = [
        c for c in subtitle_cues(result, SubtitleOptions(highlight_words=True)) if "<u>" in c.text
    ]
    assert [(c.start, c.end, c.text) for c in cues] == [
        (1.0, 1.4, "<u>ask</u> not what"),
        (1.5, 1.9, "ask <u>not</u> what"),
        (2.0, 2.4, "ask not <u>what</u>"),
    ]
    assert "<u>" not in to_srt(result) and "<u>not</u>" in to_vtt(
        result, SubtitleOptions(highlight_words=True)
    )


def test_subtitle_options_are_checked():
    with pytest.raises(ValueError, match="max-line-width"):
        SubtitleOptions(max_line_width=0)


def test_words_without_times_give_one_cue_per_segment():
    """--interpolate-method ignore leaves some words untimed: cues fall back to segments."""
    result = _worded(["ask not what"], [1.0])
    segment = result.segments[0]
    words = (segment.words[0], Word("not", None, None), segment.words[2])
    result = Result((replace(segment, words=words),), "en", 60.0)
    for options in (SubtitleOptions(highlight_words=True), SubtitleOptions(20, 2)):
        assert [(c.start, c.end) for c in subtitle_cues(result, options)] == [(1.0, 2.4)]


# --- permissions -------------------------------------------------------------------------------


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    """The process umask set for the test (restored after it)."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.fixture(params=["unnamed", "renamed"])
def write_path(request, monkeypatch):
    """Which way write_atomic goes: an O_TMPFILE file linked in (Linux) or a named temporary
    file renamed over the target; asserts the way was taken."""
    taken = []
    link = writers._link_unnamed

    def spy(path, data):
        taken.append(link(path, data) if request.param == "unnamed" else False)
        return taken[-1]

    monkeypatch.setattr(writers, "_link_unnamed", spy)
    yield request.param
    if request.param == "unnamed" and sys.platform == "linux":
        assert taken and all(taken)


def test_files_get_the_mode_open_gives(tmp_path, umask, write_path):
    path = tmp_path / "out" / "a.txt"
    write_atomic(path, "one")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    path.chmod(0o600)
    write_atomic(path, "two")  # replaced: the new file's mode, as `open` + rename gives
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(
        (tmp_path / "plain.txt").stat().st_mode
    )
    assert path.read_text() == "two" and [p.name for p in path.parent.iterdir()] == ["a.txt"]


def test_folders_get_the_mode_mkdir_gives(tmp_path, umask):
    with atomic_folder(tmp_path / "model") as tmp:
        (tmp / "config.json").write_text("{}")
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o777 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "_link_unnamed", lambda path, data: False)
    with pytest.raises(UnicodeEncodeError):
        write_atomic(tmp_path / "a.txt", "\ud800")  # a lone surrogate cannot be UTF-8
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "model"):
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


# --- aud, line breaks, times that are not finite -----------------------------------------------


def test_aud_is_whisperx_audacity_labels():
    """WhisperX's WriteAudacity: `print(start, end, sep=tab)` of the json's times, then
    `[[speaker]]` and the stripped text, tabs made spaces."""
    result = Result(
        (
            Segment(0.0, 1.2345, " Hi.\tthere ", speaker="SPEAKER_00"),
            Segment(1.5, 3.0, " Bye."),
        ),
        "en",
        3.0,
    )
    assert to_aud(result) == "0.0\t1.234\t[[SPEAKER_00]]Hi. there\n1.5\t3.0\tBye.\n"
    assert WRITERS["aud"] is to_aud and "aud" in FORMATS


def test_all_is_whisperx_all():
    """WhisperX's `get_writer("all")` writes txt, vtt, srt, tsv and json: aud only when asked."""
    assert set(ALL_FORMATS) == {"txt", "vtt", "srt", "tsv", "json"}
    assert set(FORMATS) == {*ALL_FORMATS, "aud"}


def test_line_breaks_in_text_keep_every_format_line_based():
    words = (Word("two\n\nlines", 0.0, 0.5), Word("here", 0.6, 1.0))
    result = Result((Segment(0.0, 1.0, " two\n\nlines\r\nhere", words=words),), "en", 1.0)
    assert to_tsv(result).splitlines()[1] == "0\t1000\ttwo  lines  here"
    assert to_aud(result) == "0.0\t1.0\ttwo  lines  here\n"
    for options in (None, SubtitleOptions(max_line_width=40, max_line_count=2)):
        srt = to_srt(result, options)
        assert srt.count("\n\n") == 0 and len(srt.splitlines()) == 3, srt
    vtt = to_vtt(result, SubtitleOptions(highlight_words=True))
    assert "<u>two  lines</u>" in vtt and "\n\n\n" not in vtt


def test_times_that_are_not_finite_write_nothing(tmp_path):
    result = Result((Segment(0.0, math.nan, " x"),), "en", 1.0)
    with pytest.raises(ValueError, match=r"segment 0 .* not finite"):
        write_result(result, tmp_path / "talk", FORMATS)
    word = Word("x", 0.0, math.inf)
    with pytest.raises(ValueError, match="not finite"):
        write_result(
            Result((Segment(0.0, 1.0, " x", words=(word,)),), "en", 1.0), tmp_path, FORMATS
        )
    assert list(tmp_path.iterdir()) == []


def test_json_writes_null_for_scores_that_are_not_finite():
    word = Word("x", 0.0, 1.0, score=math.nan)
    segment = Segment(0.0, 1.0, " x", words=(word,), avg_logprob=-math.inf)
    data = json.loads(to_json(Result((segment,), "en", 1.0)), parse_constant=pytest.fail)
    assert data["segments"][0]["avg_logprob"] is None
    assert data["segments"][0]["words"][0]["score"] is None
