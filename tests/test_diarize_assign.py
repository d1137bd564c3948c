"""Speaker assignment on constructed turns and words, checked exactly: overlaps, gaps, ties,
words without times, a turn change inside a segment; and against a per-word scan on random
turns. Speaker-aware writers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mlxwx.diarize import DiarizeOptions, assign_speakers
from mlxwx.types import Result, Segment, Turn, Word
from mlxwx.writers import SubtitleOptions, cues, to_tsv, to_txt

A, B = "SPEAKER_00", "SPEAKER_01"


def segment(*words: tuple[str, float | None, float | None], interpolated: int = -1) -> Segment:
    ws = tuple(Word(w, s, e, interpolated=(i == interpolated)) for i, (w, s, e) in enumerate(words))
    starts = [s for _, s, _ in words if s is not None]
    ends = [e for _, _, e in words if e is not None]
    text = "".join(" " + w for w, _, _ in words)
    return Segment(min(starts), max(ends), text, words=ws)


def result(*segments: Segment) -> Result:
    words = tuple(w for s in segments for w in s.words)
    return Result(segments, "en", 60.0, "x.wav", word_segments=words)


def speakers(r: Result) -> list[str | None]:
    return [w.speaker for w in r.word_segments]


def test_largest_overlap_wins_and_a_segment_is_cut_where_the_speaker_changes():
    turns = [Turn(0, 2, A), Turn(2, 4, B)]
    r = result(segment(("one", 0.1, 0.5), ("two", 1.8, 2.4), ("three", 3.0, 3.5)))
    out = assign_speakers(r, turns)
    assert speakers(out) == [A, B, B]  # "two": 0.2 s of A, 0.4 s of B
    assert [(s.text, s.speaker, s.start, s.end) for s in out.segments] == [
        (" one", A, 0.1, 0.5),
        (" two three", B, 1.8, 3.5),
    ]
    assert out.segments[0].to_dict()["speaker"] == A
    assert [w.speaker for s in out.segments for w in s.words] == [A, B, B]


def test_a_lone_word_at_a_segment_edge_near_the_rest_s_turn_joins_it():
    """The first word of a turn that starts a little before its turn, the last word of one
    that ends a little after it (within 0.5 s): they join the rest of their segment."""
    turns = [Turn(0, 2.0, A), Turn(2.1, 4, B), Turn(4.1, 6, A)]
    r = result(segment(("And", 1.7, 2.0), ("I'm", 2.2, 2.5), ("here", 2.6, 3.9), ("now", 4.0, 4.4)))
    out = assign_speakers(r, turns)
    assert speakers(out) == [B, B, B, B]
    assert [s.text for s in out.segments] == [" And I'm here now"]
    far = result(segment(("And", 1.0, 1.5), ("I'm", 2.2, 2.5), ("here", 2.6, 3.0)))
    assert speakers(assign_speakers(far, turns)) == [A, B, B]  # 0.6 s from B's turn: a real change
    two = result(segment(("Oh", 1.5, 1.7), ("no", 1.8, 2.0), ("I'm", 2.2, 2.5), ("here", 2.6, 3)))
    assert speakers(assign_speakers(two, turns)) == [A, A, B, B]  # two words: a real change
    pair = result(segment(("Oh", 1.8, 2.0), ("hi", 2.2, 2.4)))
    assert speakers(assign_speakers(pair, turns)) == [B, B]  # one edge moved, not both swapped


def test_a_tie_goes_to_the_speaker_who_talks_first():
    word = segment(("tie", 1.5, 2.5))
    assert speakers(assign_speakers(result(word), [Turn(0, 2, A), Turn(2, 4, B)])) == [A]
    assert speakers(assign_speakers(result(word), [Turn(2, 4, A), Turn(0, 2, B)])) == [B]


def test_gaps_give_no_speaker_unless_filled_from_the_nearest_turn():
    turns = [Turn(0, 2, A), Turn(7, 8, B)]
    r = result(segment(("gap", 3.0, 3.5)), segment(("late", 6.0, 6.4)), segment(("end", 9, 9.1)))
    assert speakers(assign_speakers(r, turns)) == [None, None, None]
    assert "speaker" not in assign_speakers(r, turns).to_dict()["segments"][0]
    filled = assign_speakers(r, turns, fill_nearest=True)
    assert speakers(filled) == [A, B, B]  # 1.0 s from A; 0.6 s from B; after the last turn
    assert [s.speaker for s in filled.segments] == [A, B, B]


def test_words_without_times_take_their_neighbours_speaker():
    turns = [Turn(0, 2, A), Turn(2, 4, B)]
    first = segment(("x", None, None), ("one", 0.2, 0.6), ("y", None, None))
    second = segment(("two", 2.5, 3.0), ("z", None, None))
    out = assign_speakers(result(first, second), turns)
    assert speakers(out) == [A, A, A, B, B]  # leading: the word after; others: the word before
    assert "start" not in out.to_dict()["word_segments"][0]


def test_overlapped_speech_keeps_the_dominant_speaker_and_is_marked():
    turns = [Turn(0, 3, A), Turn(2, 4, B)]
    r = result(segment(("a", 2.2, 2.8)), segment(("b", 2.5, 3.5)), segment(("c", 2.9, 3.5)))
    out = assign_speakers(r, turns)
    assert speakers(out) == [A, B, B]  # a: a tie inside the overlap; b: 0.5 of A, 1.0 of B
    assert [w.overlap for w in out.word_segments] == [True, True, False]  # c: 0.1 of 0.6 s
    assert out.word_segments[0].to_dict()["overlap"] is True
    assert "overlap" not in out.word_segments[2].to_dict()
    assert [s.overlap for s in out.segments] == [True, True, False]


def test_touching_turns_are_not_overlapped_speech():
    out = assign_speakers(result(segment(("w", 1.9, 2.1))), [Turn(0, 2, A), Turn(2, 4, B)])
    assert not out.word_segments[0].overlap


def test_no_cut_before_an_interpolated_word():
    turns = [Turn(0, 2, A), Turn(2, 4, B)]
    r = result(segment(("one", 0.2, 0.6), ("guess", 2.2, 2.5), ("two", 2.6, 3.0), interpolated=1))
    out = assign_speakers(r, turns)
    assert speakers(out) == [A, B, B]
    assert [(s.text, s.speaker) for s in out.segments] == [(" one guess", A), (" two", B)]


def test_segments_without_words_take_the_speaker_of_their_stretch():
    turns = [Turn(0, 2, A), Turn(2, 10, B)]
    r = Result((Segment(0.5, 1.5, " hi"), Segment(1.0, 5.0, " there")), "en", 10.0)
    out = assign_speakers(r, turns)
    assert [s.speaker for s in out.segments] == [A, B]
    assert out.word_segments == ()


def test_a_word_of_no_duration_is_placed_by_its_time():
    out = assign_speakers(result(segment(("t", 2.5, 2.5))), [Turn(0, 2, A), Turn(2, 4, B)])
    assert speakers(out) == [B]


def test_embeddings_are_kept_in_the_json():
    out = assign_speakers(result(segment(("w", 0, 1))), [Turn(0, 1, A)], embeddings={A: (0.5, 1.0)})
    assert out.to_dict()["speaker_embeddings"] == {A: [0.5, 1.0]}
    plain = assign_speakers(result(segment(("w", 0, 1))), [Turn(0, 1, A)])
    assert "speaker_embeddings" not in plain.to_dict()


def _scan(turns: list[Turn], start: float, end: float) -> str | None:
    """The plain rule, word by word: total overlap per speaker, the first to talk on a tie."""
    order = list(dict.fromkeys(t.speaker for t in sorted(turns, key=lambda t: (t.start, t.end))))
    total = dict.fromkeys(order, 0.0)
    for s in order:  # union per speaker first (a speaker's own turns may overlap)
        spans = sorted((t.start, t.end) for t in turns if t.speaker == s)
        merged: list[list[float]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        total[s] = sum(max(0.0, min(b, end) - max(a, start)) for a, b in merged)
    best = max(order, key=lambda s: (total[s], -order.index(s)))
    return best if total[best] > 0 else None


def test_matches_a_per_word_scan_on_random_turns():
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = [f"S{k}" for k in range(rng.integers(1, 5))]
        starts = np.sort(rng.uniform(0, 100, 40))
        turns = [
            Turn(float(s), float(s + rng.uniform(0.1, 8)), str(rng.choice(labels))) for s in starts
        ]
        words = []
        t = 0.0
        for i in range(200):
            t += float(rng.uniform(0.0, 0.8))
            d = float(rng.uniform(0.05, 0.6))
            words.append((f"w{i}", round(t, 3), round(t + d, 3)))
            t += d
        r = result(*[segment(w) for w in words])
        out = assign_speakers(r, turns)
        assert speakers(out) == [_scan(turns, s, e) for _, s, e in words]


def test_options_are_checked():
    with pytest.raises(ValueError, match="choose from"):
        DiarizeOptions("magic")
    with pytest.raises(ValueError, match="RTTM"):
        DiarizeOptions("rttm")
    with pytest.raises(ValueError, match="more than"):
        DiarizeOptions("pyannote", min_speakers=3, max_speakers=2)
    with pytest.raises(ValueError, match="outside"):
        DiarizeOptions("pyannote", num_speakers=5, max_speakers=2)
    assert "secret" not in repr(DiarizeOptions("pyannote", token="secret"))


def test_writers_carry_the_speakers():
    turns = [Turn(0, 2, A), Turn(2, 4, B)]
    r = result(
        segment(("Hello", 0.1, 0.5), ("there.", 0.6, 1.0), ("Hi", 2.2, 2.5), ("you.", 2.6, 3.0))
    )
    out = assign_speakers(r, turns)
    assert to_txt(out) == f"[{A}]: Hello there.\n[{B}]: Hi you.\n"
    assert (
        to_tsv(out)
        == f"start\tend\tspeaker\ttext\n100\t1000\t{A}\tHello there.\n2200\t3000\t{B}\tHi you.\n"
    )
    one = replace(r, segments=(r.segments[0].with_words(out.word_segments),))  # uncut segment
    wide = cues(one, SubtitleOptions(max_line_width=40, max_line_count=2))
    assert [(c.start, c.end, c.text) for c in wide] == [
        (0.1, 1.0, f"[{A}]: Hello there."),
        (2.2, 3.0, f"[{B}]: Hi you."),
    ]  # a new cue at the speaker change, the label in each


def test_the_stage_packages_are_callable_and_stay_packages():
    import mlxwx
    import mlxwx.align as align_package
    import mlxwx.diarize as diarize_package
    from mlxwx.diarize import diarize

    r = result(segment(("w", 0.1, 0.5)))
    assert mlxwx.diarize(r, None, None) is r and mlxwx.align(r, None, None) is r
    assert align_package.AlignOptions is mlxwx.AlignOptions
    assert diarize_package.diarize is diarize and mlxwx.assign_speakers is assign_speakers
