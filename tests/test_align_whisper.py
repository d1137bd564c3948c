"""`--align whisper`: DTW, the median filter and the punctuation rules against openai-whisper's
code (as ported in mlx-whisper), token times against mlx-whisper's `find_alignment` on the same
weights and audio, words split and interpolated, and accuracy on exact word times."""

from __future__ import annotations

from dataclasses import replace

import mlx.core as mx
import numpy as np
import pytest

from mlxwx.align import AlignOptions, align
from mlxwx.align.pauses import find_pauses, snap_to_pauses
from mlxwx.align.whisper import align_whisper, timed_words
from mlxwx.align.words import Piece, interpolate, merge_punctuation, split_sentences, split_words
from mlxwx.asr.timing import annotate_result
from mlxwx.audio import read_audio, window_mel
from mlxwx.dtw import dtw, dtw_batch, median_filter
from mlxwx.pipeline import Pipeline, PipelineOptions
from mlxwx.types import Result, Segment, Word

from .speech import DATA, librivox, pocketsphinx_words, start_errors, synthconv_words


@pytest.fixture(scope="module")
def timing():
    """openai-whisper's alignment code, as ported in mlx-whisper (dev extra)."""
    return pytest.importorskip("mlx_whisper.timing", reason="mlx-whisper (dev extra) missing")


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (5, 40), (40, 40), (37, 12)])
def test_dtw_path_is_openai_whisper_s(shape, timing):
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        cost = rng.standard_normal(shape)
        ours = dtw(cost)
        theirs = timing.dtw_cpu(cost)
        np.testing.assert_array_equal(np.stack(ours), theirs)


@pytest.mark.parametrize("sweep_bytes", [1, 1 << 14, 1 << 26])
def test_dtw_of_matrices_swept_together_is_openai_whisper_s_of_each(
    sweep_bytes, timing, monkeypatch
):
    """Matrices of different shapes in one sweep (padded to the largest), or in several when
    they do not fit in SWEEP_BYTES: each matrix's own path."""
    from mlxwx import dtw as module

    monkeypatch.setattr(module, "SWEEP_BYTES", sweep_bytes)
    rng = np.random.default_rng(7)
    shapes = [(5, 40), (1, 1), (37, 12), (12, 37), (1, 9), (9, 1), (20, 20)]
    costs = [rng.standard_normal(s) for s in shapes] + [np.zeros((6, 10))]
    for cost, ours in zip(costs, dtw_batch(costs), strict=True):
        np.testing.assert_array_equal(np.stack(ours), timing.dtw_cpu(cost))


def test_dtw_breaks_ties_as_openai_whisper(timing):
    cost = np.zeros((6, 10))  # every path costs the same: only the tie rule decides
    np.testing.assert_array_equal(np.stack(dtw(cost)), timing.dtw_cpu(cost))


@pytest.mark.parametrize("width", [3, 5, 7])
def test_median_filter_is_openai_whisper_s(width, timing):
    x = np.random.default_rng(width).standard_normal((3, 5, 50)).astype(np.float32)
    np.testing.assert_array_equal(median_filter(x, width), timing.median_filter(x, width))
    short = x[..., :2]
    np.testing.assert_array_equal(median_filter(short, 7), short)
    np.testing.assert_array_equal(median_filter(x, 1), x)  # theirs slices [0:-0] (empty) here


def _units(words: list[str]) -> list[tuple[str, tuple[int, ...]]]:
    return [(w, (i,)) for i, w in enumerate(words)]


def test_punctuation_merges_as_openai_whisper(timing):
    texts = [' "', "Hello", ",", " world", ".", " (", "it", "'s", ")", " ¿", "Qué", "?", " -", "x"]
    ours = [p.text for p in split_words(_units(texts), "en")]
    alignment = [
        timing.WordTiming(t, [i], 0.0, 0.0, 1.0) for i, t in enumerate(_merged_words(texts))
    ]
    timing.merge_punctuations(alignment, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
    assert ours == [w.word for w in alignment if w.word]
    assert ours == [' "Hello,', " world.", " (it's)", " ¿Qué?", " -x"]


def _merged_words(texts: list[str]) -> list[str]:
    """openai-whisper's `split_tokens_on_spaces` for one token per unit: a new word at a space
    or punctuation."""
    out: list[str] = []
    for t in texts:
        punct = t.strip() in "\"'“¿([{-.,!?:)]}"
        if not out or t.startswith(" ") or punct or out[-1].strip() in "\"'“¿([{-.,!?:)]}":
            out.append(t)
        else:
            out[-1] += t
    return out


def test_a_word_keeps_its_own_tokens_times_not_its_marks():
    pieces = merge_punctuation([Piece(" (", 0, 1), Piece("ok", 1, 2), Piece(")", 2, 3)])
    assert [(p.text, p.first, p.last) for p in pieces] == [(" (ok)", 1, 2)]


def test_languages_without_spaces_split_per_character():
    units = [("你", (0,)), ("好", (1, 2)), ("。", (3,))]
    pieces = split_words(units, "zh")
    assert [(p.text, p.first, p.last) for p in pieces] == [("你", 0, 1), ("好。", 1, 3)]
    assert [p.text for p in split_words(units, "en")] == ["你好。"]


def test_untimed_words_share_the_gap_by_characters_and_are_flagged():
    seg = Segment(10.0, 20.0, " a bbb c")
    words = [
        Word("a", 10.0, 11.0),
        Word("bbb", None, None),
        Word("cc", None, None),
        Word("d", 14.0, 15.0),
    ]
    out = interpolate(words, seg)
    assert [(w.start, w.end, w.interpolated) for w in out] == [
        (10.0, 11.0, False),
        (11.0, 12.8, True),
        (12.8, 14.0, True),
        (14.0, 15.0, False),
    ]
    edge = interpolate([Word("x", None, None)], seg)[0]
    assert (edge.start, edge.end, edge.to_dict()["interpolated"]) == (10.0, 20.0, True)


def test_a_result_without_windows_gets_every_word_timed_and_flagged():
    result = Result((Segment(1.0, 3.0, " Pay $25 to bob@example.com"),), "en", 4.0)
    aligned = align(result, np.zeros(64000, np.float32), AlignOptions("whisper"))
    words = aligned.to_dict()["word_segments"]
    assert [w["word"] for w in words] == ["Pay", "$25", "to", "bob@example.com"]
    assert all(w["interpolated"] and w["start"] < w["end"] for w in words)
    assert words[0]["start"] == 1.0 and words[-1]["end"] == 3.0


@pytest.fixture(scope="module")
def jfk(wm, jfk_path):
    audio = read_audio(jfk_path)
    result = Pipeline(wm, PipelineOptions(vad=None)).transcribe(audio)
    assert isinstance(result, Result)
    return audio, result


def test_token_times_are_mlx_whisper_s_find_alignment(wm, jfk, timing):
    """Same weights, tokens and log-mel: the words' times and probabilities of mlx-whisper's
    port of openai-whisper's `find_alignment` (punctuation merged as its `add_word_timestamps`)."""
    load_models = pytest.importorskip("mlx_whisper.load_models")
    tokenizer = pytest.importorskip("mlx_whisper.tokenizer").get_tokenizer(multilingual=False)
    audio, result = jfk
    (window,) = result.windows
    assert window.token_times is not None and window.token_times.lag == wm.timing_lag
    window = replace(window, token_times=replace(window.token_times, lag=0.0))  # theirs: no lag
    text = [t for s in window.segments for t in s.tokens if t < wm.tokenizer.eot]
    mel = window_mel(mx.array(audio), 0, audio.size, 80)
    theirs = timing.find_alignment(
        load_models.load_model(str(wm.path), mx.float32), tokenizer, text, mel, audio.size // 160
    )
    timing.merge_punctuations(theirs, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
    theirs = [w for w in theirs if w.word]
    ours = [w for ws in timed_words(window) for w in ws]
    assert [w.word for w in ours] == [w.word.strip() for w in theirs]
    np.testing.assert_allclose([w.start for w in ours], [w.start for w in theirs], atol=1e-6)
    ends = [min(w.end, 10.0) for w in theirs]  # ours are shortened at sentence ends, as openai's
    np.testing.assert_allclose([min(w.end, 10.0) for w in ours], ends, atol=1e-6)
    np.testing.assert_allclose([w.score for w in ours], [w.probability for w in theirs], atol=0.01)


def test_token_times_from_the_audio_equal_those_of_the_decoder(wm, jfk):
    audio, result = jfk
    bare = Result(
        result.segments,
        result.language,
        result.duration,
        windows=tuple(w.__class__(**{**w.__dict__, "token_times": None}) for w in result.windows),
    )
    again = annotate_result(wm, bare, audio)
    assert again.windows[0].token_times == result.windows[0].token_times


def test_every_word_has_times_from_the_pipeline(wm, jfk):
    _, result = jfk
    words = result.to_dict()["word_segments"]
    assert len(words) == len(result.text.split()) == 22
    assert all(w["start"] <= w["end"] for w in words)
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)
    segments = result.to_dict()["segments"]
    assert all(s["start"] == s["words"][0]["start"] for s in segments)


def test_no_align_leaves_segments_without_words(wm, jfk):
    audio, _ = jfk
    plain = Pipeline(wm, PipelineOptions(vad=None, align=None)).transcribe(audio)
    assert isinstance(plain, Result)
    assert plain.windows[0].token_times is None
    assert not any(s.words for s in plain.segments) and not plain.word_segments


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, exact, real",
    [("tiny_en_dir", (40, 0.9), (60, 0.7)), ("base_dir", (40, 0.9), (60, 0.75))],
)
def test_word_starts_on_exact_and_on_real_speech(request, model, exact, real):
    """Median |start error| (ms) and share within 100 ms, bounded a little above the figures
    measured (bench/RESULTS.md) so that a regression fails: synthconv's flite words have exact
    times; the LibriVox clips are timed by pocketsphinx's forced alignment."""
    from mlxwx.asr.model import load_model

    pipeline = Pipeline(load_model(str(request.getfixturevalue(model))))
    cases = [(DATA / "synthconv.wav", synthconv_words(), exact)]
    cases += [(c.path, pocketsphinx_words(c), real) for c in librivox()]
    results = pipeline.transcribe([str(path) for path, _, _ in cases])
    assert isinstance(results, list)
    errors: dict[tuple[float, float], list[np.ndarray]] = {exact: [], real: []}
    for (_, truth, bound), result in zip(cases, results, strict=True):
        hyp = [(w.word, w.start) for w in result.word_segments]
        errors[bound].append(start_errors(hyp, truth))  # type: ignore[arg-type]
        assert all(w.start is not None and w.end is not None for w in result.word_segments)
    for (median_ms, within), found in errors.items():
        e = np.concatenate(found)
        assert np.median(np.abs(e)) * 1000 <= median_ms
        assert np.mean(np.abs(e) <= 0.1) >= within


def test_segments_are_cut_at_sentence_ends_not_at_abbreviations():
    text = "Hello, Mr. Smith. How are you? I met J. Doe (at 3.5 p.m.) today! Neither did I. Bye"
    words = tuple(Word(w, float(i), i + 0.5) for i, w in enumerate(text.split()))
    segment = Segment(0.0, 20.0, " " + text, words=words, avg_logprob=-0.2)
    parts = split_sentences(segment)
    assert [p.text for p in parts] == [
        " Hello, Mr. Smith.",
        " How are you?",
        " I met J. Doe (at 3.5 p.m.) today!",
        " Neither did I.",
        " Bye",
    ]
    assert [(p.start, p.end) for p in parts] == [
        (0.0, 2.5), (3.0, 5.5), (6.0, 13.5), (14.0, 16.5), (17.0, 17.5)
    ]  # fmt: skip
    assert all(p.avg_logprob == -0.2 for p in parts)
    assert split_sentences(replace(segment, words=words[:3])) == [replace(segment, words=words[:3])]


def test_a_folder_without_heads_loaded_by_name_gets_openai_whisper_s_published_heads(wm):
    from mlxwx.asr.model import published_alignment_heads
    from mlxwx.models.whisper import Whisper

    model = Whisper(wm.dims)  # a new network holds the default: every upper-half head
    assert model.alignment_heads.shape[0] == wm.dims.n_text_head * (wm.dims.n_text_layer // 2)
    published_alignment_heads(model, "my-folder")
    assert model.alignment_heads.shape[0] == 12  # no published table for that name
    published_alignment_heads(model, "tiny.en")
    assert model.alignment_heads.tolist() == wm.model.alignment_heads.tolist()  # the pack's
    assert wm.model.alignment_heads.tolist() == [
        [1, 0],
        [2, 0],
        [2, 5],
        [3, 0],
        [3, 1],
        [3, 2],
        [3, 3],
        [3, 4],
    ]
    published_alignment_heads(model, "base")  # base's table does not fit tiny's decoder
    assert model.alignment_heads.tolist() == wm.model.alignment_heads.tolist()


def test_tiny_en_words_are_timed_its_heads_lag_earlier_than_openai_whisper_s(wm):
    """tiny.en's published heads trail speech by 0.1 s (bench/RESULTS.md): its token times keep
    openai-whisper's values and its words are timed that much earlier, never before the window;
    other heads (base's, a folder's own) have no lag."""
    from mlxwx.models.whisper import Whisper
    from mlxwx.types import SpanSamples, TokenTimes, Window
    from mlxwx.weights.heads import heads_lag, published_heads

    assert wm.timing_lag == 0.1
    assert heads_lag(wm.model.alignment_heads.tolist(), wm.dims) == 0.1
    assert heads_lag(Whisper(wm.dims).alignment_heads.tolist(), wm.dims) == 0.0  # upper half
    base = replace(wm.dims, n_text_state=512, n_text_head=8, n_text_layer=6, n_vocab=51865)
    assert heads_lag(published_heads("base", base) or [], base) == 0.0
    span = (SpanSamples(16000, 16000 + 5 * 16000),)
    times = TokenTimes((1, 2), (2,), (" one", " two"), (0.05, 1.0, 2.0), (0.9, 0.9), lag=0.1)
    segments = (Segment(1.0, 6.0, " one two", (1, 2)),)
    window = Window(0, span, "en", segments, token_times=times)
    (words,) = timed_words(window)
    assert [t for w in words for t in (w.start, w.end)] == pytest.approx([1.0, 1.9, 1.9, 2.9])
    (raw,) = timed_words(replace(window, token_times=replace(times, lag=0.0)))
    assert [t for w in raw for t in (w.start, w.end)] == pytest.approx([1.05, 2.0, 2.0, 3.0])


def _tones(spans: list[tuple[float, float]], seconds: float) -> np.ndarray:
    """Noise floor at -60 dB with 200 Hz tones over `spans` (seconds)."""
    t = np.arange(int(seconds * 16000)) / 16000
    audio = 0.001 * np.random.default_rng(0).standard_normal(t.size)
    for a, b in spans:
        on = (t >= a) & (t < b)
        audio[on] += 0.3 * np.sin(2 * np.pi * 200 * t[on])
    return audio.astype(np.float32)


def test_pauses_are_the_quiet_stretches_and_word_starts_snap_to_their_ends():
    audio = _tones([(0.5, 1.0), (1.3, 1.35), (1.36, 2.0), (2.05, 3.0)], 3.5)
    pauses = find_pauses(audio)
    # the 10 ms gap inside the second word is bridged, the 50 ms one is too short for a pause,
    # and the trailing quiet is no pause: no onset ends it (20 ms frames: ends 10 ms early)
    assert [(round(a, 2), round(b, 2)) for a, b in pauses] == [(0.0, 0.49), (1.0, 1.29)]
    words = [Word("a", 0.62, 1.2), Word("b", 1.2, 2.1), Word("c", 2.1, 3.2), Word("d", 3.2, 3.4)]
    snapped = snap_to_pauses(words, pauses)
    assert [(round(w.start, 2), round(w.end, 2)) for w in snapped] == [
        (0.49, 1.0),  # the onset after the leading silence; it ends where the next pause starts
        (1.29, 2.1),  # moved back onto the pause's end
        (2.1, 3.2),  # no pause near its start: kept
        (3.2, 3.4),
    ]
    far = [Word("x", 1.8, 2.0)]
    assert snap_to_pauses(far, pauses) == far  # a pause more than 200 ms away is not used


def test_aligned_segments_keep_the_decoded_order():
    """A repeated segment whose words the attention places earlier stays where it was decoded
    (sorting by aligned starts reordered the text, and the WER test caught it)."""
    from mlxwx.types import SpanSamples, TokenTimes, Window

    times = TokenTimes((1, 2), (1, 1), (" one", " two"), (5.0, 1.0, 6.0), (0.9, 0.9))
    segments = (Segment(0.0, 4.0, " one", (1,)), Segment(4.0, 8.0, " two", (2,)))
    window = Window(0, (SpanSamples(0, 160000),), "en", segments, token_times=times)
    result = Result(segments, "en", 10.0, windows=(window,))
    aligned = align_whisper(result, sentences=False)
    assert [s.text for s in aligned.segments] == [" one", " two"]
    assert [w.word for w in aligned.word_segments] == ["one", "two"]


def test_dialogue_dashes_french_marks_and_no_split_as_written():
    units = [(" -", (0,)), (" Yes", (1,)), (".", (2,)), (" -", (3,)), (" No", (4,)), (".", (5,))]
    units += [(" Bye", (6,))]
    pieces = split_words(units, "en")
    assert [(p.text, p.first, p.last) for p in pieces] == [
        (" - Yes.", 1, 2),
        (" - No.", 4, 5),
        (" Bye", 6, 7),
    ]
    words = tuple(Word(p.text.strip(), float(p.first), p.last + 0.5) for p in pieces)
    segment = Segment(0.0, 8.0, "".join(u for u, _ in units), words=words)
    assert [p.text for p in split_sentences(segment)] == [" - Yes.", " - No.", " Bye"]
    french = split_words([(" Quoi", (0,)), (" ?", (1,))], "fr")
    assert [(p.text, p.first, p.last) for p in french] == [(" Quoi ?", 0, 1)]


def test_a_translation_is_split_into_english_words():
    """A Japanese input translated: its text is English, split at spaces, not per token."""
    from mlxwx.types import SpanSamples, TokenTimes, Window

    times = TokenTimes((1, 2, 3), (3,), (" Hel", "lo", " world"), (1.0, 1.2, 1.6, 2.0), (1.0,) * 3)
    segments = (Segment(0.0, 3.0, " Hello world", (1, 2, 3)),)
    window = Window(0, (SpanSamples(0, 48000),), "ja", segments, token_times=times)
    result = Result(segments, "ja", 3.0, windows=(window,))
    per_char = align(result, np.zeros(48000, np.float32), AlignOptions("whisper"))
    assert [w.word for w in per_char.word_segments] == ["Hel", "lo", "world"]
    english = align(result, np.zeros(48000, np.float32), AlignOptions("whisper"), None, "en")
    assert [w.word for w in english.word_segments] == ["Hello", "world"]
    assert english.language == "ja"


@pytest.mark.slow
def test_windows_timed_in_small_groups_get_the_times_of_one_batch(wm, clips, monkeypatch):
    """The teacher-forced pass runs over as many windows at a time as fit in SCORES_BYTES (a
    CPU process's peak memory): windows timed one at a time get the same token times."""
    from mlxwx.asr import timing
    from mlxwx.asr.engine import TranscribeOptions

    calls = []
    forced = timing.forced_scores
    monkeypatch.setattr(timing, "forced_scores", lambda *a: calls.append(1) or forced(*a))
    options = PipelineOptions(vad=None, transcribe=TranscribeOptions(workers=1, batch_size=8))
    audio = [np.asarray(c) for c in clips[:6]]
    batched = Pipeline(wm, options).transcribe(audio)
    together = len(calls)
    monkeypatch.setattr(timing, "SCORES_BYTES", {"cpu": 1, "gpu": 1})
    alone = Pipeline(wm, options).transcribe(audio)
    assert len(calls) - together > together  # one window a pass, against several
    for a, b in zip(batched, alone, strict=True):
        for wa, wb in zip(a.windows, b.windows, strict=True):
            assert wa.token_times is not None and wb.token_times is not None
            assert wa.token_times.starts == wb.token_times.starts
            np.testing.assert_allclose(wa.token_times.probs, wb.token_times.probs, atol=1e-4)
