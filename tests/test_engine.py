"""The transcribe stage: lanes, batching across files, fallback, silence, language detection,
window records."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import mlxwx.asr.engine as engine
from mlxwx.asr.decoding import DecodingOptions, DecodingResult
from mlxwx.asr.engine import SpeechFile, TranscribeOptions, transcribe_stream
from mlxwx.asr.guards import LOOP_WORDS, collapse_segments, collapse_words, words_of
from mlxwx.asr.lanes import MIN_PIECE, Lane
from mlxwx.asr.model import load_model
from mlxwx.audio import HOP_LENGTH, SAMPLE_RATE, AudioError, load_audio
from mlxwx.pipeline import PipelineOptions, chunking
from mlxwx.types import AudioChunk, SpanSamples

from .speech import JFK_TEXT, corpus, transcribe_arrays, wer

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
GREEDY = TranscribeOptions(DecodingOptions(beam_size=1))


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def whole(audio: mx.array, file: int = 0) -> AudioChunk:
    return AudioChunk(file, audio, (SpanSamples(0, audio.shape[0]),))


def test_idle_lanes_share_long_chunks_cut_in_silence_covering_everything():
    rng = np.random.default_rng(0)
    speech = lambda s: rng.normal(0, 0.3, int(s * SAMPLE_RATE)).astype(np.float32)  # noqa: E731
    gap = np.zeros(SAMPLE_RATE // 2, np.float32)
    long = mx.array(np.concatenate([np.concatenate([speech(9.7), gap]) for _ in range(24)]))
    lanes = [Lane([whole(long)])]
    while len(lanes) < 8 and (given := max(lanes, key=lambda ln: ln.remaining).share()):
        lanes.append(Lane(given))
    pieces = sorted((ln.chunk.pieces[0] for ln in lanes), key=lambda p: p.start)
    assert len(pieces) > 4 and all(p.length >= MIN_PIECE for p in pieces)
    assert pieces[0].start == 0 and pieces[-1].end == long.shape[0]
    assert all(a.end == b.start for a, b in itertools.pairwise(pieces))
    for cut in (p.start for p in pieces[1:]):  # every cut lies in a silent gap
        assert float(mx.abs(long[cut - 80 : cut + 80]).max()) == 0.0
    for lane in lanes:  # each piece's audio is its span of the input
        p = lane.chunk.pieces[0]
        assert lane.chunk.audio.shape[0] == p.length
        assert mx.array_equal(lane.chunk.audio[:100], long[p.start : p.start + 100])
    short = Lane([whole(mx.array(speech(50)))])
    assert short.share() == []  # never pieces shorter than a window


def test_a_lane_shares_its_later_chunks_evenly():
    chunks = [AudioChunk(0, mx.zeros(n), (SpanSamples(0, n),)) for n in (10, 40, 30, 20, 10)]
    lane = Lane(list(chunks))
    lane.pos = 5  # 105 samples left: keep 5 + 40 + 30 = 75? no: 5 + 40 = 45 against 60
    given = lane.share()
    assert lane.chunks == chunks[:2] and given == chunks[2:]


@pytest.mark.slow
def test_batch_1_and_16_give_identical_greedy_output(wm, clips):
    one = transcribe_arrays(wm, clips, replace(GREEDY, batch_size=1))
    many = transcribe_arrays(wm, clips, replace(GREEDY, batch_size=16))
    assert [r.to_dict() for r in one] == [r.to_dict() for r in many]
    assert words(one[0].text) == words(JFK_TEXT)


@pytest.mark.slow
def test_long_input_in_lanes_matches_clip_by_clip_quality(wm):
    """90 s of distinct speech in one input: lanes (batch 4) lose nothing against batch 1 or
    against transcribing each clip alone. Where windows fall changes what tiny.en hears on the
    telephone clip (the differences are words like "I needed to die" / "I need to design", not
    lost audio), so each bound allows 5 points over the other; a lane that dropped a sentence
    (10+ of the 107 words) fails it."""
    clips = corpus()
    audios = [load_audio(c.path) for c in clips]
    truth = " ".join(c.text for c in clips)
    alone = wer([truth], [" ".join(r.text for r in transcribe_arrays(wm, audios, GREEDY))])
    long = mx.concatenate(audios)
    bound = alone + 0.05
    for batch in (1, 4):
        (result,) = transcribe_arrays(wm, [long], replace(GREEDY, batch_size=batch))
        found = wer([truth], [result.text])
        assert found <= bound, batch
        bound = max(bound, found + 0.05)  # batch 4 against batch 1 too
        starts = [s.start for s in result.segments]
        assert starts == sorted(starts) and result.segments[-1].end <= long.shape[0] / SAMPLE_RATE


def test_silence_and_noise_give_no_text_and_empty_input_is_an_error(wm):
    rng = np.random.default_rng(1)
    silent = mx.zeros(20 * SAMPLE_RATE)
    noise = mx.array(rng.normal(0, 0.05, 20 * SAMPLE_RATE).astype(np.float32))
    hum = mx.array(
        0.1 * np.sin(2 * np.pi * 50 * np.arange(20 * SAMPLE_RATE) / SAMPLE_RATE, dtype=np.float32)
    )
    results = transcribe_arrays(wm, [silent, noise, hum], GREEDY)
    assert [r.text for r in results] == ["", "", ""]
    with pytest.raises(AudioError, match="audio array is empty"):
        transcribe_arrays(wm, [silent, mx.zeros(0)])


def test_only_failing_rows_fall_back(wm, monkeypatch):
    calls = []

    def fake_decode(
        wm_, audio, options, languages, contexts, limits=None, seeds=None, cross_kv=None, ends=None
    ):
        calls.append((options.temperature, audio.shape[0]))
        bad = options.temperature < 0.4
        return [
            DecodingResult(
                [1], "x", "en", -2.0 if (bad and i == 0) else -0.1, 0.0, options.temperature, 1.0
            )
            for i in range(audio.shape[0])
        ]

    monkeypatch.setattr(engine, "decode_features", fake_decode)
    out = engine.decode_with_fallback(
        wm, mx.zeros((3, 1500, 384)), TranscribeOptions(), ["en"] * 3, [[]] * 3
    )
    assert calls == [(0.0, 3), (0.2, 1), (0.4, 1)]
    assert [r.temperature for r in out] == [0.4, 0.0, 0.0]


def test_a_window_failing_every_rung_keeps_its_likeliest_attempt(wm, monkeypatch):
    """The loop guard's ladder: samples get a length limit from the window's seconds; a window
    that fails at every temperature keeps the attempt with the best average log-prob (here the
    temperature-0 one), where openai-whisper's ladder keeps the last."""
    calls = []
    scores = {0.0: -1.5, 0.2: -3.0, 0.4: -2.5, 0.6: -2.0, 0.8: -4.0, 1.0: -2.4}

    def fake_decode(
        wm_, audio, options, languages, contexts, limits=None, seeds=None, cross_kv=None, ends=None
    ):
        calls.append((options.temperature, options.stop_loops, limits))
        t = options.temperature
        return [
            DecodingResult([1], "x", "en", scores[t], 0.0, t, 1.0) for _ in range(audio.shape[0])
        ]

    monkeypatch.setattr(engine, "decode_features", fake_decode)
    args = (wm, mx.zeros((1, 1500, 384)))
    out = engine.decode_with_fallback(
        *args, TranscribeOptions(), ["en"], [[]], engine.Rows([10.0], [0], None)
    )
    assert out[0].temperature == 0.0 and out[0].avg_logprob == -1.5
    assert calls[0] == (0.0, True, None)
    assert calls[1] == (0.2, True, [engine.sample_limit(10.0)]) and len(calls) == 6
    calls.clear()
    plain = TranscribeOptions(loop_guard=False)
    out = engine.decode_with_fallback(*args, plain, ["en"], [[]], engine.Rows([10.0], [0], None))
    assert out[0].temperature == 1.0  # openai-whisper: the last rung's
    assert all(not stop and limits is None for _, stop, limits in calls)


def test_no_speech_threshold_none_never_marks_silence(wm, monkeypatch):
    """A window with a failing log-prob and a no-speech probability of 0.99 is silence with the
    default threshold (no fallback, no text), and decoded like any other with None."""
    calls = []

    def fake_decode(
        wm_, audio, options, languages, contexts, limits=None, seeds=None, cross_kv=None, ends=None
    ):
        calls.append(options.temperature)
        return [DecodingResult([1], "x", "en", -2.0, 0.99, options.temperature, 1.0)]

    monkeypatch.setattr(engine, "decode_features", fake_decode)
    engine.decode_with_fallback(wm, mx.zeros((1, 1500, 384)), TranscribeOptions(), ["en"], [[]])
    assert calls == [0.0]
    calls.clear()
    options = TranscribeOptions(no_speech_threshold=None)
    engine.decode_with_fallback(wm, mx.zeros((1, 1500, 384)), options, ["en"], [[]])
    assert calls == list(options.temperatures)
    assert options.thresholds.is_silence(DecodingResult([], "", "en", -5.0, 1.0, 0.0)) is False


@pytest.mark.slow
def test_language_detected_once_per_file_on_its_first_decoded_window(
    base_dir, jfk_path, monkeypatch
):
    """One detection per input, on the features of the input's first window that is decoded
    (leading digital silence is skipped), never by encoding a window twice."""
    wm = load_model(str(base_dir), dtype=mx.float32)
    speech = load_audio(jfk_path)
    late = mx.concatenate([mx.zeros(35 * SAMPLE_RATE), speech])
    detected, encoded = [], []
    detect, encode = engine.detect_language, engine.encode
    monkeypatch.setattr(
        engine,
        "detect_language",
        lambda wm_, f, kv=None: detected.append(f.shape[0]) or detect(wm_, f, kv),
    )
    monkeypatch.setattr(
        engine, "encode", lambda wm_, m: encoded.append(m.shape[0]) or encode(wm_, m)
    )
    results = transcribe_arrays(wm, [speech, late], GREEDY)
    assert [r.language for r in results] == ["en", "en"]
    # one detection per input: `speech` in the first batch; `late` in the second, whose first
    # window (silent: skipped) was not decoded
    assert detected == [1, 1]
    assert sum(encoded) == sum(len(r.windows) for r in results)
    # The silent first window of `late` is skipped; speech (at 35 s) is found in the second
    # window. Its first timestamp is forced within 1 s of the window start (Whisper's max
    # initial timestamp), so the segment starts near 30 s: VAD, not decoding, places it at 35 s.
    assert results[1].segments[0].start >= 30.0
    assert words(results[1].text) == words(JFK_TEXT)


def test_windows_record_their_file_spans_and_segment_tokens(wm, clips):
    """Each window names its input and the samples it read (VAD chunks mapped back to the
    input's timeline), and holds its segments with their tokens, timestamps included; the
    result's segments are exactly the windows' segments (not aligned: Whisper's own times)."""
    from mlxwx.vad.silero import SileroVad

    gap = mx.zeros(7 * SAMPLE_RATE)
    audio = mx.concatenate([gap, clips[0], gap, clips[1]])
    (result,) = transcribe_arrays(wm, [audio], GREEDY, vad=SileroVad(), aligned=False)
    assert result.windows and all(w.file == 0 for w in result.windows)
    assert [s for w in result.windows for s in w.segments] == list(result.segments)
    ts = wm.tokenizer.timestamp_begin
    for w in result.windows:
        (span,) = w.spans  # span merge: one stretch of the input per window
        assert span.start >= 6 * SAMPLE_RATE and span.end <= audio.shape[0]
        for s in w.segments:
            assert span.start / SAMPLE_RATE <= s.start < s.end <= span.end / SAMPLE_RATE + 0.02
            assert s.tokens[0] >= ts and s.tokens[-1] >= ts
            assert wm.tokenizer.decode(list(s.tokens)) == s.text
            offset = s.start - span.start / SAMPLE_RATE
            assert offset == pytest.approx((s.tokens[0] - ts) * 0.02, abs=1e-6)


def test_repetition_guard_keeps_two_repeats():
    text = "thank you thank you thank you thank you so much , no no no no . a b c a b c a b c d"
    assert " ".join(collapse_words(text.split())) == (
        "thank you thank you so much , no no . a b c a b c d"
    )
    assert collapse_words("ask not ask what".split()) == "ask not ask what".split()


def test_lane_always_moves_and_finishes_chunks_with_less_than_a_frame_left():
    first, second = whole(mx.zeros(1000)), whole(mx.zeros(5000), file=1)
    lane = Lane([first, second])
    assert lane.advance(0) == (HOP_LENGTH, None)  # a zero step still moves one frame
    covered, done = lane.advance(700)  # 140 samples left: less than one frame, chunk done
    assert (covered, done, lane.index, lane.pos) == (1000 - HOP_LENGTH, first, 1, 0)
    assert lane.advance(5000) == (5000, second) and not lane.active


@pytest.mark.parametrize("beam_size", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_rows_with_different_prompts_decode_as_alone(wm, clips, beam_size):
    """Left-padded prompts of different lengths: masks and per-row positions keep rows apart."""
    from mlxwx.asr.decoding import decode_features, encode
    from mlxwx.audio import window_mel

    mels = mx.stack([window_mel(c, 0, c.shape[0], 80) for c in clips[:2]])
    features = encode(wm, mels)
    contexts = [wm.tokenizer.encode(" President Kennedy speaking in Washington."), []]
    opts = DecodingOptions(beam_size=beam_size)
    together = [r.tokens for r in decode_features(wm, features, opts, contexts=contexts)]
    alone = [
        decode_features(wm, features[i : i + 1], opts, contexts=[contexts[i]])[0].tokens
        for i in range(2)
    ]
    assert together == alone


def test_prompt_contexts(wm):
    lanes = [Lane([whole(mx.zeros(10))]), Lane([whole(mx.zeros(10))])]
    lanes[1].context = [7, 8]
    opts = TranscribeOptions(initial_prompt="Kennedy.", hotwords="Dashwood")
    hot, initial = wm.tokenizer.encode(" Dashwood"), wm.tokenizer.encode(" Kennedy.")
    assert engine.prompt_contexts(wm, lanes, opts) == [hot + initial, [*hot, 7, 8]]


def test_progress_reports_every_sample_once(wm, clips):
    seen = []
    transcribe_arrays(
        wm,
        clips[:3],
        replace(GREEDY, batch_size=2),
        progress=lambda stage, completed, total: seen.append((stage, completed, total)),
    )
    total = sum(c.shape[0] for c in clips[:3])
    done = [(c, t) for stage, c, t in seen if stage == "transcribe"]
    assert done == sorted(done) and done[-1] == (total, total)
    assert [c for stage, c, _ in seen if stage == "finish"] == [1, 2, 3]
    assert [c for stage, c, _ in seen if stage == "load"] == [1, 2, 3]


def test_inputs_stream_through_the_lanes_and_finish_in_turn(wm, clips):
    """The stage reads an input only when a lane has nothing left to read, and yields each
    input's transcript as soon as its last window is decoded."""
    pulled = []

    def stream():
        for i, c in enumerate(clips[:4]):
            pulled.append(i)
            yield SpeechFile(i, (whole(c, i),))

    out = transcribe_stream(wm, stream(), replace(GREEDY, batch_size=2))
    first = next(out)
    assert pulled == [0, 1] and first.file in (0, 1)  # two lanes: two inputs in flight
    rest = list(out)
    assert pulled == [0, 1, 2, 3] and sorted(t.file for t in [first, *rest]) == [0, 1, 2, 3]


@pytest.mark.slow
@pytest.mark.parametrize("merge", ["span", "concat"])
def test_vad_chunks_map_back_to_the_input_timeline(wm, clips, merge):
    """jfk placed 12 s into noise, and a LibriVox clip 8 s after it: with a VAD only speech is
    decoded (chunks of both inputs batched), and every segment lies where the speech was."""
    from mlxwx.vad.regions import VadOptions
    from mlxwx.vad.silero import SileroVad

    rng = np.random.default_rng(0)
    quiet = rng.normal(0, 0.002, 50 * SAMPLE_RATE).astype(np.float32)
    jfk, libri = np.array(clips[0]), np.array(clips[1])
    a = quiet.copy()
    a[12 * SAMPLE_RATE : 12 * SAMPLE_RATE + len(jfk)] += jfk
    b0 = 12 * SAMPLE_RATE + len(jfk) + 8 * SAMPLE_RATE
    a[b0 : b0 + len(libri)] += libri
    chunks = VadOptions.silero(merge=merge, chunk_size=10.0)
    plain = transcribe_arrays(wm, [clips[0], clips[1]], GREEDY)
    with_vad = transcribe_arrays(
        wm, [mx.array(a), mx.zeros(SAMPLE_RATE)], GREEDY, vad=SileroVad(), vad_options=chunks
    )
    assert with_vad[1].segments == ()
    segments = with_vad[0].segments
    jfk_end, libri_end = 12 + len(jfk) / SAMPLE_RATE, (b0 + len(libri)) / SAMPLE_RATE
    assert all(
        (s.start >= 11.5 and s.end <= jfk_end + 0.5) or s.start >= b0 / SAMPLE_RATE - 0.5
        for s in segments
    )
    assert segments[-1].end <= libri_end + 0.5
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    truth = words(plain[0].text + " " + plain[1].text)
    assert wer([" ".join(truth)], [" ".join(words(with_vad[0].text))]) <= 0.1
    for w in with_vad[0].windows:  # concat windows read several stretches of the input
        assert sum(s.length for s in w.spans) <= 10 * SAMPLE_RATE
        assert all(0 <= s.start < s.end <= len(a) for s in w.spans)


@pytest.mark.parametrize(
    "method",
    ["silero", *(pytest.param(m, marks=pytest.mark.slow) for m in ("pyannote", "energy"))],
)
def test_vad_keeps_noise_and_silence_out_of_transcripts(wm, clips, method):
    """With each VAD: 20 s of pink noise, hum and brown noise around jfk and a LibriVox clip
    give no segment outside the speech and the same words as the clips alone; noise-only and
    silent inputs give no text."""
    from mlxwx.vad.methods import load_vad

    from .speech import noises

    noise = noises(20, -35, seed=3)
    gap = np.zeros(5 * SAMPLE_RATE, np.float32)
    parts = [
        noise["pink"],
        np.array(clips[0]),
        gap,
        noise["hum"],
        np.array(clips[1]),
        noise["brown"],
    ]
    starts = np.cumsum([0] + [len(p) for p in parts]) / SAMPLE_RATE
    speech = [(starts[1], starts[2]), (starts[4], starts[5])]
    inputs = [mx.array(np.concatenate(parts))] + [mx.array(noise[k]) for k in ("white", "pink")]
    inputs += [mx.zeros(30 * SAMPLE_RATE)]
    results = transcribe_arrays(wm, inputs, GREEDY, vad=load_vad(method))  # its run defaults
    assert [r.text for r in results[1:]] == ["", "", ""]
    segments = results[0].segments
    assert segments and all(
        any(a - 0.5 <= s.start and s.end <= b + 0.5 for a, b in speech) for s in segments
    ), [(s.start, s.end, s.text) for s in segments]
    plain = transcribe_arrays(wm, [clips[0], clips[1]], GREEDY)
    truth = " ".join(words(plain[0].text + " " + plain[1].text))
    assert wer([truth], [" ".join(words(results[0].text))]) <= 0.1


def test_vad_options_default_to_the_methods_transcription_options():
    """No vad_options: each VAD's chunks follow `transcribe_options(vad.method)` (Silero padded
    100 ms, not silero's 30 ms), as `mlxwx run` does; given options win; a VAD that names no
    mlxwx method (any object that scores frames) gets `VadOptions()`."""
    from mlxwx.cli.run import run_vad_options
    from mlxwx.vad.base import SpeechProbs
    from mlxwx.vad.energy import EnergyVad
    from mlxwx.vad.methods import default_options, transcribe_options
    from mlxwx.vad.regions import VadOptions
    from mlxwx.vad.silero import SileroVad

    default = PipelineOptions()
    assert chunking(default, SileroVad()) == transcribe_options("silero")
    assert chunking(default, EnergyVad()) == transcribe_options("energy")
    given = VadOptions(onset=0.7)
    assert chunking(replace(default, vad_options=given), SileroVad()) == given
    custom = lambda audio: SpeechProbs(probs=mx.zeros(10), hop=0.1)  # noqa: E731
    assert chunking(default, custom) == VadOptions()
    assert transcribe_options("silero").pad == 0.1 and default_options("silero").pad == 0.03
    assert run_vad_options("silero", None, None, 30.0) == transcribe_options("silero")


def test_a_custom_vad_that_finds_nothing_gives_no_text(wm):
    from mlxwx.vad.base import SpeechProbs

    custom = lambda audio: SpeechProbs(probs=mx.zeros(10), hop=0.1)  # noqa: E731
    (result,) = transcribe_arrays(
        wm, [load_audio(Path(__file__).parent / "data/jfk.flac")], vad=custom
    )
    assert result.text == "" and result.windows == ()


def test_loops_of_three_words_or_more_are_cut_in_every_window(wm):
    """In a window that passed the quality checks only loops of LOOP_WORDS words or more are
    cut, within and across segments, words with their tokens; short repeats and untouched
    segments stay as they are."""
    tok = wm.tokenizer
    texts = [" No, no, no.", " I don't hear that.", " I'm Sheila."] + [" I don't hear that."] * 4
    texts += [
        " Thank you, thank you, thank you.",
        " I'm going to get a call. I'm going to get a call. I'm going to get a call.",
    ]
    segments = [words_of(tok.units(tok.encode(t))) for t in texts]

    def text(ws):
        return "".join(u[0] for w in ws for u in w)

    kept = collapse_segments(segments, shortest=LOOP_WORDS)
    assert (
        [text(ws) for _, ws in kept]
        == [  # two of the four repeats go
            *texts[:5],
            " Thank you, thank you, thank you.",
            " I'm going to get a call. I'm going to get a call.",
        ]
    )
    assert [i for i, _ in kept] == [0, 1, 2, 3, 4, 7, 8]
    last = kept[-1][1]
    assert [t for w in last for u in w for t in u[1]] == tok.encode(text(last))
    assert text(collapse_segments(segments)[-2][1]) == " Thank you, thank you,"


@pytest.mark.parametrize("condition", [pytest.param(False, marks=pytest.mark.slow), True])
def test_condition_on_previous_text_prompts_the_next_window(wm, clips, monkeypatch, condition):
    """With condition_on_previous_text, each window after the first of a lane is prompted with
    the previous window's tokens (after <|startofprev|>); without, with nothing."""
    seen = []
    real = engine.decode_features

    def spy(wm_, audio, options, languages=None, contexts=None, *rest, **named):
        found = real(wm_, audio, options, languages, contexts, *rest, **named)
        seen.append((list(contexts or []), [r.tokens for r in found]))
        return found

    monkeypatch.setattr(engine, "decode_features", spy)
    long = mx.concatenate([clips[0], clips[0], clips[0]])  # 33 s: two windows in one lane
    options = replace(GREEDY, condition_on_previous_text=condition, temperatures=(0.0,))
    (result,) = transcribe_arrays(wm, [long], options)
    assert len(seen) == 2 and len(result.windows) == 2
    (first_context,), (first_tokens,) = seen[0]
    (second_context,), _ = seen[1]
    assert first_context == []
    assert second_context == (first_tokens if condition else [])


def test_inputs_without_speech_are_yielded_as_they_are_pulled(wm):
    """An input with no speech is finished when it is read: its transcript comes out before the
    stage reads the next input (a run of silent files never piles up)."""
    pulled = []

    def stream():
        for i in range(4):
            pulled.append(i)
            yield SpeechFile(i, ())

    out = transcribe_stream(wm, stream(), GREEDY)
    for i in range(4):
        transcript = next(out)
        assert (transcript.file, transcript.windows, pulled) == (i, (), list(range(i + 1)))
    assert list(out) == []


@pytest.mark.slow
def test_a_window_holding_its_chunks_end_reads_it_to_the_end(wm):
    """Real speech (the corpus's clips one after another, about 45 s) in Silero's chunks: with
    `finish_chunks` (the default) every chunk is one window, where openai-whisper's seek rule
    decodes the end of some chunk again in a window of its own; the words are as right."""
    from mlxwx.pipeline import detect_speech
    from mlxwx.vad.silero import SileroVad

    audio, text = [], []
    for clip in corpus():
        audio.append(load_audio(clip.path))
        text.append(clip.text)
        if sum(a.shape[0] for a in audio) >= 45 * SAMPLE_RATE:
            break
    x, vad = mx.concatenate(audio), SileroVad()
    chunks = detect_speech(x, vad)
    assert all(c.length <= 30 * SAMPLE_RATE for c in chunks)
    runs = {
        finish: transcribe_arrays(wm, [x], replace(GREEDY, finish_chunks=finish), vad=vad)[0]
        for finish in (True, False)
    }
    assert len(runs[True].windows) == len(chunks) < len(runs[False].windows)
    truth = " ".join(text)
    assert wer([truth], [runs[True].text]) <= wer([truth], [runs[False].text]) + 0.02


def test_chunks_are_finished_only_with_a_vad(wm, clips, monkeypatch):
    """Without a VAD the audio after Whisper's last timestamp may hold no speech: the pipeline
    then follows openai-whisper's seek rule (no window is held to its end)."""
    from mlxwx.vad.silero import SileroVad

    ends = []
    real = engine.decode_features

    def spy(*args, **named):
        ends.append(args[8])
        return real(*args, **named)

    monkeypatch.setattr(engine, "decode_features", spy)
    transcribe_arrays(wm, [clips[0]], GREEDY)
    assert ends and all(e is None for e in ends)
    ends.clear()
    transcribe_arrays(wm, [clips[0]], GREEDY, vad=SileroVad())
    assert ends and all(e is not None and e[0] is not None for e in ends)
