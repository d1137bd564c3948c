"""The batched engine: lanes, batching across files, fallback, silence, language detection."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import mlxwx.engine as engine
from mlxwx.audio import SAMPLE_RATE, load_audio
from mlxwx.decoding import DecodingOptions, DecodingResult
from mlxwx.engine import TranscribeOptions, transcribe_arrays
from mlxwx.guards import collapse_words
from mlxwx.lanes import MIN_PIECE, Region, plan_lanes
from mlxwx.load import load_model

from .speech import JFK_TEXT, corpus, wer

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
GREEDY = TranscribeOptions(DecodingOptions(beam_size=1))


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def test_lanes_cut_long_files_in_silence_and_cover_everything():
    rng = np.random.default_rng(0)
    speech = lambda s: rng.normal(0, 0.3, int(s * SAMPLE_RATE)).astype(np.float32)  # noqa: E731
    gap = np.zeros(SAMPLE_RATE // 2, np.float32)
    long = mx.array(np.concatenate([np.concatenate([speech(9.7), gap]) for _ in range(24)]))
    short = mx.array(speech(5))
    plan = plan_lanes([long, short, short], lanes=4)
    regions = sorted((r for lane in plan for r in lane), key=lambda r: (r.source, r.start))
    by_source = {s: [r for r in regions if r.source == s] for s in range(3)}
    assert [(r.start, r.end) for r in by_source[1]] == [(0, short.shape[0])]  # short: never cut
    pieces = by_source[0]
    assert len(pieces) > 1 and all(r.length >= MIN_PIECE * 0.9 for r in pieces)
    assert pieces[0].start == 0 and pieces[-1].end == long.shape[0]
    assert all(a.end == b.start for a, b in itertools.pairwise(pieces))
    for cut in (r.start for r in pieces[1:]):  # every cut lies in a silent gap
        assert float(mx.abs(long[cut - 80 : cut + 80]).max()) == 0.0
    loads = [sum(r.length for r in lane) for lane in plan]
    assert max(loads) < 2 * min(loads)


def test_batch_1_and_16_give_identical_greedy_output(wm, clips):
    one = transcribe_arrays(wm, clips, replace(GREEDY, batch_size=1))
    many = transcribe_arrays(wm, clips, replace(GREEDY, batch_size=16))
    assert [r.to_dict() for r in one] == [r.to_dict() for r in many]
    assert words(one[0].text) == words(
        "And so my fellow Americans, ask not what your country can do for you, "
        "ask what you can do for your country."
    )


def test_long_input_in_lanes_matches_clip_by_clip_quality(wm):
    """90 s of distinct speech in one input: lanes (batch 4) lose nothing against batch 1 or
    against transcribing each clip alone. Where windows fall changes what tiny.en hears on the
    telephone clip (measured: alone 0.075, batch 1 0.103, batch 4 0.140, the differences being
    words like "I needed to die" / "I need to design", not lost audio), so each bound allows 5
    points over the other; a lane that dropped a sentence (10+ of the 107 words) fails it."""
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


def test_silence_noise_and_empty_give_no_text(wm):
    rng = np.random.default_rng(1)
    silent = mx.zeros(20 * SAMPLE_RATE)
    noise = mx.array(rng.normal(0, 0.05, 20 * SAMPLE_RATE).astype(np.float32))
    hum = mx.array(
        0.1 * np.sin(2 * np.pi * 50 * np.arange(20 * SAMPLE_RATE) / SAMPLE_RATE, dtype=np.float32)
    )
    results = transcribe_arrays(wm, [silent, noise, hum, mx.zeros(0)], TranscribeOptions())
    assert [r.text for r in results] == ["", "", "", ""]


def test_only_failing_rows_fall_back(wm, monkeypatch):
    calls = []

    def fake_decode(wm_, audio, options, languages, contexts):
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


def test_language_detected_on_first_speech_not_leading_silence(base_dir, jfk_path):
    wm = load_model(str(base_dir), dtype=mx.float32)
    speech = load_audio(jfk_path)
    late = mx.concatenate([mx.zeros(35 * SAMPLE_RATE), speech])
    opts = TranscribeOptions(DecodingOptions(beam_size=1))
    assert engine.file_languages(wm, [speech, late], opts) == ["en", "en"]
    (result,) = transcribe_arrays(wm, [late], opts)
    # The silent first window yields nothing; speech (at 35 s) is found in the second window.
    # Its first timestamp is forced within 1 s of the window start (Whisper's max initial
    # timestamp), so the segment starts near 30 s: VAD, not decoding, places it at 35 s.
    assert result.language == "en" and result.segments[0].start >= 30.0
    assert words(result.text) == words(JFK_TEXT)


def test_repetition_guard_keeps_two_repeats():
    text = "thank you thank you thank you thank you so much , no no no no . a b c a b c a b c d"
    assert " ".join(collapse_words(text.split())) == (
        "thank you thank you so much , no no . a b c a b c d"
    )
    assert collapse_words("ask not ask what".split()) == "ask not ask what".split()


def test_lane_always_moves_and_finishes_regions_with_less_than_a_frame_left():
    from mlxwx.audio import HOP_LENGTH
    from mlxwx.lanes import Region

    lane = engine.Lane([Region(0, 0, 1000), Region(1, 0, 5000)])
    lane.advance(0)
    assert lane.pos == HOP_LENGTH  # a zero step (a window too short for a frame) still moves
    lane.advance(700)  # 140 samples left: less than one mel frame, the region is done
    assert (lane.index, lane.pos) == (1, 0)
    lane.advance(5000)
    assert not lane.active


@pytest.mark.parametrize("beam_size", [1, 3])
def test_rows_with_different_prompts_decode_as_alone(wm, clips, beam_size):
    """Left-padded prompts of different lengths: masks and per-row positions keep rows apart."""
    from mlxwx.decoding import decode_features, encode
    from mlxwx.engine import window_mel

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
    lanes = [engine.Lane([Region(0, 0, 10)]), engine.Lane([Region(0, 0, 10)])]
    lanes[1].context = [7, 8]
    opts = TranscribeOptions(initial_prompt="Kennedy.", hotwords="Dashwood")
    hot, initial = wm.tokenizer.encode(" Dashwood"), wm.tokenizer.encode(" Kennedy.")
    assert engine._contexts(wm, lanes, opts) == [hot + initial, [*hot, 7, 8]]


def test_progress_reports_every_sample_once(wm, clips):
    seen = []
    transcribe_arrays(
        wm,
        clips[:3],
        replace(GREEDY, batch_size=2),
        progress=lambda stage, completed, total: seen.append((stage, completed, total)),
    )
    total = sum(c.shape[0] for c in clips[:3])
    assert seen and all(t == total for _, _, t in seen)
    done = [c for _, c, _ in seen]
    assert done == sorted(done) and done[-1] == total


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
    options = replace(GREEDY, vad_options=VadOptions.silero(merge=merge, chunk_size=10.0))
    plain = transcribe_arrays(wm, [clips[0], clips[1]], GREEDY)
    with_vad = transcribe_arrays(wm, [mx.array(a), mx.zeros(0)], options, vad=SileroVad())
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


@pytest.mark.parametrize("method", ["silero", "pyannote", "energy"])
def test_vad_keeps_noise_and_silence_out_of_transcripts(wm, clips, method):
    """With each VAD: 20 s of pink noise, hum and brown noise around jfk and a LibriVox clip
    give no segment outside the speech and the same words as the clips alone; noise-only,
    silent and empty inputs give no text."""
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
    inputs += [mx.zeros(30 * SAMPLE_RATE), mx.zeros(0)]
    results = transcribe_arrays(wm, inputs, GREEDY, vad=load_vad(method))  # its run defaults
    assert [r.text for r in results[1:]] == ["", "", "", ""]
    segments = results[0].segments
    assert segments and all(
        any(a - 0.5 <= s.start and s.end <= b + 0.5 for a, b in speech) for s in segments
    ), [(s.start, s.end, s.text) for s in segments]
    plain = transcribe_arrays(wm, [clips[0], clips[1]], GREEDY)
    truth = " ".join(words(plain[0].text + " " + plain[1].text))
    assert wer([truth], [" ".join(words(results[0].text))]) <= 0.1


def test_chunk_lanes_keep_each_files_chunks_in_order():
    from mlxwx.lanes import plan_chunk_lanes

    lengths, files = [10, 20, 30, 5, 25, 30, 10], [0, 0, 0, 1, 1, 2, 2]
    plan = plan_chunk_lanes(lengths, files, 3)
    assert [r.source for lane in plan for r in lane] == list(range(7))
    assert len(plan) == 3
    for lane in plan:
        for prev, r in itertools.pairwise(lane):
            assert r.follows == (files[prev.source] == files[r.source])
        assert not lane[0].follows


def test_vad_options_default_to_the_methods_transcription_options(wm, monkeypatch):
    """No vad_options: each VAD's chunks follow `transcribe_options(vad.method)` (Silero padded
    100 ms, not silero's 30 ms), as `mlxwx run` does; given options win."""
    from mlxwx.cli import run_vad_options
    from mlxwx.vad.energy import EnergyVad
    from mlxwx.vad.methods import default_options, transcribe_options
    from mlxwx.vad.regions import VadOptions
    from mlxwx.vad.silero import SileroVad

    seen = []
    monkeypatch.setattr(engine, "speech_chunks", lambda audio, vad, o: seen.append(o) or [])
    for vad in (SileroVad(), EnergyVad()):
        transcribe_arrays(wm, [mx.zeros(SAMPLE_RATE)], GREEDY, vad=vad)
    given = VadOptions(onset=0.7)
    transcribe_arrays(wm, [mx.zeros(SAMPLE_RATE)], replace(GREEDY, vad_options=given), vad=vad)
    assert seen == [transcribe_options("silero"), transcribe_options("energy"), given]
    assert seen[0].pad == 0.1 and default_options("silero").pad == 0.03
    assert run_vad_options("silero", None, None, 30.0) == transcribe_options("silero")


def test_a_vad_without_a_method_name_gets_generic_options(wm, monkeypatch):
    """Any object that scores frames is a VAD; one that does not name an mlxwx method gets
    `VadOptions()` when no vad_options are given (not an unknown-method error)."""
    from mlxwx.vad.base import SpeechProbs
    from mlxwx.vad.regions import VadOptions

    seen = []
    monkeypatch.setattr(engine, "speech_chunks", lambda audio, vad, o: seen.append(o) or [])
    custom = lambda audio: SpeechProbs(probs=mx.zeros(10), hop=0.1)  # noqa: E731
    (result,) = transcribe_arrays(wm, [mx.zeros(SAMPLE_RATE)], GREEDY, vad=custom)
    assert seen == [VadOptions()] and result.text == ""


def test_loops_of_three_words_or_more_are_cut_in_every_window():
    """In a window that passed the quality checks only loops of LOOP_WORDS words or more are
    cut, within and across segments; short repeats and untouched segments stay as they are."""
    from mlxwx.guards import LOOP_WORDS, collapse_segments
    from mlxwx.types import Segment

    texts = [" No, no, no.", " I don't hear that.", " I'm Sheila."] + [" I don't hear that."] * 4
    texts += [
        " Thank you, thank you, thank you.",
        " I'm going to get a call. I'm going to get a call. I'm going to get a call.",
    ]
    segments = [Segment(float(i), i + 1.0, t) for i, t in enumerate(texts)]
    kept = collapse_segments(segments, shortest=LOOP_WORDS)
    assert (
        [s.text for s in kept]
        == [  # two of the four repeats go
            *texts[:5],
            " Thank you, thank you, thank you.",
            " I'm going to get a call. I'm going to get a call.",
        ]
    )
    assert kept[0] is segments[0] and kept[-1].start == 8.0 and len(kept) == 7
    assert [s.text for s in collapse_segments(segments)][-2] == " Thank you, thank you,"
