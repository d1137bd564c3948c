"""Writers against golden files (every format), `Result.to_dict`, atomic writes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mlxwx.types import Result, Segment, Word
from mlxwx.writers import FORMATS, WRITERS, write_atomic, write_result

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
