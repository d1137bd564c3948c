"""The loop guard: rows whose text loops end while decoding (greedy, beam search, sampling),
samples end at their window's token limit, a looping window fails and goes down the ladder,
and its lane moves past it. Loops are forced on real decoding (tiny.en on jfk.flac) by adding a
large bonus to a cycle of three text tokens after the timestamp rules."""

from __future__ import annotations

from dataclasses import replace

import mlx.core as mx
import numpy as np
import pytest

from mlxwx.asr import engine
from mlxwx.asr.decoding import DecodingOptions, decode_features, encode
from mlxwx.asr.engine import Rows, TranscribeOptions, decode_with_fallback
from mlxwx.asr.guards import LOOP_HISTORY, LOOP_SPAN, fresh_history, loop_at_end, looping_rows
from mlxwx.asr.logits import LogitFilters
from mlxwx.asr.segments import Thresholds, build_window
from mlxwx.audio import N_SAMPLES, load_audio, window_mel
from mlxwx.types import AudioChunk, SpanSamples

CYCLE = (1028, 1467, 1115)  # three ordinary text tokens of the English vocabulary
LIMIT = 224  # tokens a window may decode after its prompt


@pytest.fixture(scope="module")
def features(wm, jfk_path):
    speech = load_audio(jfk_path)
    return encode(wm, window_mel(speech, 0, speech.shape[0], 80)[None])


@pytest.fixture
def looping(monkeypatch):
    """Every row, after its first text token, is pushed to say CYCLE over and over."""
    rules = LogitFilters.timestamp_rules

    cycle = mx.array(CYCLE)

    def forced(self, logits, state):
        out = rules(self, logits, state)
        last = state.history[:, -1:]  # the last text token: its successor in CYCLE comes next
        at = mx.argmax((last == cycle[None]).astype(mx.int32), axis=1)
        nxt = cycle[(at + 1) % len(CYCLE)]
        bonus = mx.where(mx.arange(out.shape[-1])[None] == nxt[:, None], 1e4, 0.0)
        return out + mx.where((state.length > 1)[:, None], bonus, 0.0)

    monkeypatch.setattr(LogitFilters, "timestamp_rules", forced)


def test_the_device_and_host_rules_agree():
    rng = np.random.default_rng(0)
    for period in (1, 3, 7, 16, 17):
        for length in (LOOP_SPAN + period - 1, LOOP_SPAN + period, 80):
            phrase = rng.integers(0, 50000, period).tolist()
            tokens = (phrase * 100)[:length]
            history = np.concatenate([np.asarray(fresh_history(1))[0], tokens])[-LOOP_HISTORY:]
            row = bool(looping_rows(mx.array(history[None].astype(np.int32)))[0])
            assert (
                row == loop_at_end(tokens, 50257) == (period <= 16 and length >= LOOP_SPAN + period)
            )
    assert not loop_at_end(list(range(200)), 50257)
    assert not loop_at_end([50363, 50364] * 60, 50257)  # timestamps are not text


@pytest.mark.parametrize(
    "options",
    [
        DecodingOptions(beam_size=1),
        pytest.param(DecodingOptions(beam_size=5), marks=pytest.mark.slow),
        pytest.param(DecodingOptions(temperature=0.6, best_of=3), marks=pytest.mark.slow),
    ],
    ids=["greedy", "beam5", "sampling"],
)
def test_a_looping_row_ends_early(wm, features, looping, options):
    (guarded,) = decode_features(wm, features, options)
    assert guarded.looped and loop_at_end(guarded.tokens, wm.tokenizer.eot)
    text = [t for t in guarded.tokens if t < wm.tokenizer.eot]
    assert len(text) <= LOOP_SPAN + 3 + 2 * 8  # stopped within a check or two
    (free,) = decode_features(wm, features, replace(options, stop_loops=False))
    assert not free.looped and len(free.tokens) >= LIMIT - 10  # ran to the limit


def test_a_sample_ends_at_its_window_limit(wm, features):
    options = DecodingOptions(temperature=1.0, best_of=2)
    mx.random.seed(0)
    (capped,) = decode_features(wm, features, options, limits=[12])
    assert capped.looped and len(capped.tokens) <= 12 + 8
    (plain,) = decode_features(wm, features, options)
    assert not plain.looped and len(plain.tokens) > 20  # no limit given


@pytest.mark.slow
def test_the_ladder_stops_every_rung_and_keeps_the_likeliest(wm, features, looping, monkeypatch):
    seen = []

    def spy(*args, **kwargs):
        found = decode_features(*args, **kwargs)
        seen.append([(r.temperature, len(r.tokens), r.avg_logprob, r.looped) for r in found])
        return found

    monkeypatch.setattr(engine, "decode_features", spy)
    options = TranscribeOptions(DecodingOptions(beam_size=1, best_of=2))
    (kept,) = decode_with_fallback(wm, features, options, ["en"], [[]], Rows([11.0], [0], None))
    rungs = [r for rows in seen for r in rows]
    assert [t for t, *_ in rungs] == list(options.temperatures)  # every rung failed
    assert all(looped and n < 120 for _, n, _, looped in rungs)  # not run to 224 tokens
    assert kept.avg_logprob == max(lp for _, _, lp, _ in rungs)


def test_a_looped_window_is_not_decoded_again(wm, features, looping):
    (result,) = decode_features(wm, features, DecodingOptions(beam_size=1))
    audio = mx.zeros(2 * N_SAMPLES)
    chunk = AudioChunk(0, audio, (SpanSamples(0, audio.shape[0]),))
    window, step = build_window(result, chunk, 0, wm.tokenizer.timestamp_begin, Thresholds())
    assert step == N_SAMPLES
    text = " ".join(s.text for s in window.segments)
    phrase = wm.tokenizer.decode(list(CYCLE))
    assert text.count(phrase.strip()) <= 2  # the loop cut back (its text and tokens)
