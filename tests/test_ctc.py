"""CTC forced alignment (mlxwx.align.ctc): constructed emissions whose best path is known, a
brute-force check of optimality, words from characters, interpolation, and real phoneme CTC
emissions (hama) against exact word times."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from mlxwx.align.ctc import (
    WILDCARD,
    TokenSpan,
    encode_chars,
    forced_align,
    forced_align_batch,
    interpolate_words,
    min_frames,
    wildcard_emission,
    word_ranges,
    word_spans,
    words_from_chars,
)
from mlxwx.types import CharTime, Word

DATA = Path(__file__).parent / "data"


def peaked(frames: list[int], n_columns: int = 6, p: float = 0.9) -> np.ndarray:
    """(T, C) float32 log-probs: probability p on column frames[t], the rest shared evenly."""
    e = np.full((len(frames), n_columns), (1 - p) / (n_columns - 1))
    e[np.arange(len(frames)), frames] = p
    return np.log(e).astype(np.float32)


def bounds(spans: list[TokenSpan] | None) -> list[tuple[int, int]]:
    assert spans is not None
    return [(s.start, s.end) for s in spans]


def test_tokens_on_their_peaks_with_blanks_between() -> None:
    spans = forced_align(peaked([0, 1, 1, 0, 2, 0, 0, 3, 3]), [1, 2, 3], blank=0)
    assert bounds(spans) == [(1, 3), (4, 5), (7, 9)]
    assert spans is not None and all(s.score == pytest.approx(0.9, abs=1e-6) for s in spans)


def test_adjacent_tokens_without_blank() -> None:
    assert bounds(forced_align(peaked([1, 2, 3]), [1, 2, 3])) == [(0, 1), (1, 2), (2, 3)]


def test_repeated_token_needs_a_blank_between() -> None:
    # "l l" on frames 1-2 then 4: the blank at frame 3 separates the copies.
    assert bounds(forced_align(peaked([0, 1, 1, 0, 1, 0]), [1, 1])) == [(1, 3), (4, 5)]
    # no blank frame on offer: the path must still take one between the two copies
    assert bounds(forced_align(peaked([1, 1, 1]), [1, 1])) == [(0, 1), (2, 3)]
    # two frames cannot hold a repeat
    assert forced_align(peaked([1, 1]), [1, 1]) is None
    assert forced_align(peaked([1, 2]), [1, 2]) is not None


def test_min_frames_counts_repeats() -> None:
    assert min_frames([1, 1, 2]) == 4
    assert min_frames([1, 2, 1]) == 3
    assert min_frames([WILDCARD, WILDCARD]) == 3
    assert min_frames([]) == 0


def test_more_tokens_than_frames_fails() -> None:
    assert forced_align(peaked([1, 2, 3]), [1, 2, 3, 4]) is None
    assert forced_align(peaked([0]), [1, 2]) is None


def test_no_finite_path_fails() -> None:
    emission = peaked([0, 1, 0])
    emission[:, 2] = -np.inf
    assert forced_align(emission, [1, 2]) is None


def test_single_token() -> None:
    assert bounds(forced_align(peaked([0, 0, 2, 2, 2, 0]), [2])) == [(2, 5)]
    assert bounds(forced_align(peaked([2]), [2])) == [(0, 1)]
    assert bounds(forced_align(peaked([0]), [2])) == [(0, 1)]  # the only frame it can have


def test_no_tokens() -> None:
    assert forced_align(peaked([0, 1]), []) == []


def test_bad_token_ids_raise() -> None:
    with pytest.raises(ValueError):
        forced_align(peaked([0, 1]), [0])  # the blank
    with pytest.raises(ValueError):
        forced_align(peaked([0, 1]), [6])  # past the columns
    with pytest.raises(ValueError):
        forced_align(peaked([0, 1]), [-2])


def test_wildcard_column_is_max_non_blank() -> None:
    rng = np.random.default_rng(0)
    emission = np.log(rng.dirichlet(np.ones(5), size=7)).astype(np.float32)
    expected = np.array([max(row[c] for c in range(5) if c != 2) for row in emission])
    np.testing.assert_array_equal(wildcard_emission(emission, blank=2), expected)


def test_wildcard_takes_a_non_blank_frame() -> None:
    # column 5 is a character not in the transcript: the wildcard between 1 and 2 lands there,
    # not on the blank frames around it.
    frames = [1, 0, 0, 5, 5, 0, 2]
    spans = forced_align(peaked(frames), [1, WILDCARD, 2])
    assert bounds(spans) == [(0, 1), (3, 5), (6, 7)]
    assert spans is not None and spans[1].score == pytest.approx(0.9, abs=1e-6)


def test_wildcard_equals_an_explicit_max_column() -> None:
    rng = np.random.default_rng(1)
    emission = np.log(rng.dirichlet(np.ones(5) * 0.3, size=12)).astype(np.float32)
    extended = np.concatenate([emission, wildcard_emission(emission, 0)[:, None]], axis=1)
    assert forced_align(emission, [1, WILDCARD, 3, WILDCARD]) == forced_align(
        extended, [1, 5, 3, 5]
    )


def _collapse(labels: tuple[int, ...], blank: int) -> list[int]:
    return [k for k, _ in itertools.groupby(labels) if k != blank]


def _brute_force_best(emission: np.ndarray, tokens: list[int], blank: int) -> float:
    """Best score over every frame labelling that collapses to `tokens`."""
    alphabet = sorted({blank, *tokens})
    best = -np.inf
    for labels in itertools.product(alphabet, repeat=len(emission)):
        if _collapse(labels, blank) == tokens:
            best = max(best, float(emission[np.arange(len(emission)), labels].sum()))
    return best


@pytest.mark.parametrize(
    ("tokens", "seed"),
    [([1, 1, 2], 0), ([2, 1, 2], 1), ([3], 2), ([1, 2, 3, 1], 3), ([2, 2, 2], 4), ([1, 2], 5)],
)
def test_path_is_optimal_and_valid(tokens: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    emission = np.log(rng.dirichlet(np.ones(4) * 0.5, size=7)).astype(np.float64)
    spans = forced_align(emission, tokens, blank=0)
    assert spans is not None and len(spans) == len(tokens)
    labels = [0] * len(emission)
    for tok, s in zip(tokens, spans, strict=True):
        assert s.end > s.start
        labels[s.start : s.end] = [tok] * (s.end - s.start)
        probs = np.exp(emission[s.start : s.end, tok])
        assert s.score == pytest.approx(float(probs.mean()))
    assert _collapse(tuple(labels), 0) == tokens  # a valid CTC path
    score = float(emission[np.arange(len(emission)), labels].sum())
    assert score == pytest.approx(_brute_force_best(emission, tokens, 0))


def test_alignments_swept_together_are_each_optimal() -> None:
    """Mixed frame and token counts in one sweep (padding to the longest of both), with a
    wildcard, a transcript too long for its frames and an empty one: each path is the best of
    its own alignment, as found alone."""
    rng = np.random.default_rng(7)
    cases = [([1, 1, 2], 7), ([3], 4), ([2, WILDCARD, 1], 6), ([1, 2, 3, 1], 3), ([], 5),
             ([2, 3], 2), ([1, 2, 1], 5)]  # fmt: skip
    emissions = [np.log(rng.dirichlet(np.ones(4) * 0.5, size=n)) for _, n in cases]
    together = forced_align_batch(emissions, [t for t, _ in cases], blank=0)
    alone = [forced_align(e, t, blank=0) for e, (t, _) in zip(emissions, cases, strict=True)]
    assert together == alone
    assert together[3] is None and together[4] == []
    for emission, (tokens, _), spans in zip(emissions, cases, together, strict=True):
        if not spans or WILDCARD in tokens:
            continue
        labels = [0] * len(emission)
        for tok, span in zip(tokens, spans, strict=True):
            labels[span.start : span.end] = [tok] * (span.end - span.start)
        score = float(emission[np.arange(len(emission)), labels].sum())
        assert score == pytest.approx(_brute_force_best(emission, tokens, 0))


VOCAB = {"|": 1, "a": 2, "b": 3, "c": 4, "z": 5}


def test_encode_chars() -> None:
    tokens, positions = encode_chars(" Ab  c1!", VOCAB)
    assert tokens == [2, 3, 1, 4, WILDCARD, WILDCARD]
    assert positions == [1, 2, 3, 5, 6, 7]  # one delimiter, at the first space of the run
    no_delimiter = {k: v for k, v in VOCAB.items() if k != "|"}
    assert encode_chars("ab c", no_delimiter) == ([2, 3, 4], [0, 1, 3])
    assert encode_chars("ab c", VOCAB, by_char=True) == ([2, 3, 4], [0, 1, 3])
    assert encode_chars("   ", VOCAB) == ([], [])


def test_word_ranges() -> None:
    assert word_ranges(" hi  there, you ") == [(1, 3), (5, 11), (12, 15)]
    assert word_ranges("你好 吗", by_char=True) == [(0, 1), (1, 2), (3, 4)]


def test_words_from_chars() -> None:
    text = " Ab c1! 42"
    tokens, positions = encode_chars(text, VOCAB)
    assert tokens == [2, 3, 1, 4, WILDCARD, WILDCARD, 1, WILDCARD, WILDCARD]
    #        a  a     b  |  c  1     !  |  4     2
    frames = [0, 2, 2, 0, 3, 1, 4, 5, 0, 5, 1, 5, 0, 5, 0]
    spans = forced_align(peaked(frames), tokens)
    assert bounds(spans) == [
        (1, 3), (4, 5), (5, 6), (6, 7), (7, 8), (9, 10), (10, 11), (11, 12), (13, 14)
    ]  # fmt: skip
    words, chars = words_from_chars(text, tokens, positions, spans, 0.02, offset=10.0)
    assert [w.word for w in words] == ["Ab", "c1!", "42"]
    ab, c1, n42 = words
    assert (ab.start, ab.end) == (pytest.approx(10.02), pytest.approx(10.10))
    assert ab.score == pytest.approx(0.9, abs=1e-6)
    # the wildcards "1!" do not stretch the word: it is timed by "c" alone
    assert (c1.start, c1.end) == (pytest.approx(10.12), pytest.approx(10.14))
    # only wildcards: untimed
    assert (n42.start, n42.end, n42.score) == (None, None, None)
    assert len(chars) == len(text)
    assert chars[0] == CharTime(" ", None, None, None)
    assert chars[1].char == "A" and chars[1].start == pytest.approx(10.02)
    assert chars[3].char == " " and chars[3].end == pytest.approx(10.12)  # the delimiter
    assert chars[5].char == "1" and chars[5].start == pytest.approx(10.14)  # wildcard, timed
    alone = words_from_chars(text, tokens, positions, spans, 0.02, offset=10.0, with_chars=False)
    assert alone == (words, [])


def test_words_from_chars_failed_alignment() -> None:
    tokens, positions = encode_chars("ab c", VOCAB)
    words, chars = words_from_chars("ab c", tokens, positions, None, 0.02)
    assert [(w.word, w.start, w.end) for w in words] == [("ab", None, None), ("c", None, None)]
    assert all(c.start is None for c in chars)


def test_word_spans_ignores_negative_ids() -> None:
    spans = [TokenSpan(0, 2, 0.5), TokenSpan(3, 4, 0.7), TokenSpan(5, 6, 0.1), TokenSpan(7, 9, 1)]
    out = word_spans(spans, [0, 0, -1, 2], 3)
    assert out[0] == TokenSpan(0, 4, pytest.approx(0.6))
    assert out[1] is None
    assert out[2] == TokenSpan(7, 9, 1.0)


def _w(word: str, start: float | None = None, end: float | None = None) -> Word:
    return Word(word, start, end, None if start is None else 0.5)


def test_interpolate_nearest() -> None:
    words = [_w("a", 1, 2), _w("b"), _w("c"), _w("d", 5, 6), _w("e")]
    out = interpolate_words(words, "nearest")
    assert [(w.start, w.end) for w in out] == [(1, 2), (1, 2), (5, 6), (5, 6), (5, 6)]
    assert [w.interpolated for w in out] == [False, True, True, False, True]
    assert out[1].score is None and out[0].score == 0.5
    tie = interpolate_words([_w("a", 1, 2), _w("b"), _w("c", 3, 4)], "nearest")
    assert (tie[1].start, tie[1].end) == (1, 2)  # the earlier one, as scipy's "nearest"


def test_interpolate_linear() -> None:
    words = [_w("x"), _w("a", 1, 2), _w("b"), _w("c"), _w("d", 4, 8)]
    out = interpolate_words(words, "linear")
    assert [(w.start, w.end) for w in out] == [(1, 2), (1, 2), (2, 4), (3, 6), (4, 8)]
    assert out[0].interpolated and out[2].interpolated and not out[1].interpolated


def test_interpolate_ignore_and_nothing_timed() -> None:
    words = [_w("a", 1, 2), _w("b")]
    assert interpolate_words(words, "ignore") == words
    untimed = [_w("a"), _w("b")]
    assert interpolate_words(untimed, "nearest") == untimed
    with pytest.raises(ValueError):
        interpolate_words(words, "cubic")


@pytest.mark.slow  # ~7 s: the hama phoneme recogniser over 23 s of speech, and its G2P
def test_real_phoneme_emissions_time_words() -> None:
    """hama's phoneme CTC Conformer (20 ms frames, blank 190, word boundary 189) on synthconv,
    forced with the G2P phonemes of its words: word starts within 80 ms at the median."""
    hama = pytest.importorskip("hama", reason="hama missing: pip install hama==1.7.0")
    asr, g2p = hama.ASRModel(), hama.G2PModel()
    wav, sample_rate = hama.read_wav_mono(DATA / "synthconv.wav")
    assert sample_rate == 16000
    # The raw log-probs (ASRModel.transcribe_waveform only returns its greedy decoding);
    # these attribute names are those of hama 1.7.0.
    log_probs, out_lengths = asr.session.run(
        [asr._log_probs_output_name, asr._out_lengths_output_name],
        {
            asr._waveform_input_name: wav[None],
            asr._waveform_lengths_input_name: np.array([len(wav)], dtype=np.int64),
        },
    )
    emission = np.asarray(log_probs[0][: int(np.asarray(out_lengths).reshape(-1)[0])])
    assert emission.shape[1] == 191 and asr.blank_id == 190
    ids = {p: i for i, p in enumerate(asr.decoder_tokens)}
    reference = json.loads((DATA / "synthconv.words.json").read_text())
    tokens, word_ids = [], []
    for k, item in enumerate(reference):
        if k:
            tokens.append(ids["<wb>"])
            word_ids.append(-1)
        phonemes = [a.phoneme for a in g2p.predict(item["word"]).alignments]
        assert phonemes, item["word"]
        tokens += [ids.get(p, WILDCARD) for p in phonemes]
        word_ids += [k] * len(phonemes)
    spans = forced_align(emission, tokens, blank=asr.blank_id)
    assert spans is not None
    timed = word_spans(spans, word_ids, len(reference))
    starts = np.array([s.start * 0.02 if s else np.nan for s in timed])
    errors = np.abs(starts - np.array([w["start"] for w in reference]))
    assert not np.isnan(errors).any()
    assert np.median(errors) <= 0.080  # measured 0.079 (hama 1.7.0, x86-64)
    assert np.mean(errors <= 0.1) >= 0.7  # measured 0.8
