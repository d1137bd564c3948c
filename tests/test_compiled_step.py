"""The compiled decoder step (`DecodingOptions.compiled_step`) against the eager one, tiny.en
float32 on real speech: same tokens, greedy and beam search, with left-padded prompts of
different lengths and rows that end at different steps (dropped from the batch), and a bounded
number of traces over a whole decode."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlxwx.asr.decoding import (
    DecodingOptions,
    _eager_step,
    attention_mask,
    decode_features,
    encode,
    left_pad,
)
from mlxwx.asr.step import compiled_step
from mlxwx.audio import load_audio, window_mel
from mlxwx.models.whisper import TextDecoder

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
SHORT_CLIP = "sense_and_sensibility_01_austen_64kb-0880.wav"  # "he was not an ill disposed..."


@pytest.fixture(scope="module")
def features(wm, jfk_path):
    """Encoded windows of jfk.flac (11 s) and a 3 s LibriVox clip: their texts end ~20 tokens
    apart, so the greedy loop drops the short row from the batch."""
    clips = [load_audio(jfk_path), load_audio(LIBRIVOX / SHORT_CLIP)]
    mels = mx.stack([window_mel(c, 0, c.shape[0], 80) for c in clips])
    return encode(wm, mels)


@pytest.fixture
def traces(wm, monkeypatch):
    """Row count of every trace of the compiled step, from a fresh compiled function."""
    if hasattr(wm.model.decoder, "_compiled_step"):
        del wm.model.decoder._compiled_step
    seen: list[int] = []
    eager = TextDecoder.step_static

    def counted(self, token, *args):
        seen.append(token.shape[0])  # runs only while mx.compile traces
        return eager(self, token, *args)

    monkeypatch.setattr(TextDecoder, "step_static", counted)
    return seen


def both_ways(wm, features, opts: DecodingOptions, contexts) -> tuple[list, list]:
    results = [
        decode_features(wm, features, replace(opts, compiled_step=c), contexts=contexts)
        for c in (False, True)
    ]
    return [[r.tokens for r in rs] for rs in results]


@pytest.mark.parametrize("beam_size", [1, pytest.param(5, marks=pytest.mark.slow)])
def test_compiled_step_decodes_the_same_tokens(wm, features, traces, beam_size):
    context = wm.tokenizer.encode(" President Kennedy speaking in Washington.")
    opts = DecodingOptions(beam_size=beam_size)
    eager, compiled = both_ways(wm, features, opts, [context, []])
    assert compiled == eager
    assert "country" in wm.tokenizer.decode(eager[0]) and len(eager[1]) < len(eager[0]) - 8
    if beam_size == 1:  # 2 rows, then 1 once the short one ended: one trace each
        assert traces == [2, 1]
    else:  # 10 rows (2 windows x 5 beams), then 5 once the short window's beams ended
        assert traces == [10, 5]


def test_compiled_step_unpadded_single_row(wm, features, traces):
    eager, compiled = both_ways(wm, features[:1], DecodingOptions(beam_size=1), None)
    assert compiled == eager and traces == [1]


def test_static_step_matches_the_eager_step(wm, features):
    """One step after left-padded prompts: logits close, the cache written at the same slot."""
    decoder, tok = wm.model.decoder, wm.tokenizer
    sot = tok.sot_sequence("en", "transcribe", False)
    prompts = [[tok.sot_prev, *tok.encode(" Kennedy."), *sot], sot]
    prompt, pad = left_pad(prompts, tok.eot)
    width = prompt.shape[1]
    cross_kv = decoder.cross_kv(features)
    caches = [decoder.new_cache(2, mx.float32) for _ in range(2)]
    positions = mx.maximum(mx.arange(width)[None] - pad[:, None], 0)
    for cache in caches:
        decoder(prompt, cross_kv, cache, 0, positions, attention_mask(pad, 0, width))
    token = mx.array(tok.encode(" And")[:1] * 2)
    eager = _eager_step(decoder, token, (width, 0), pad, caches[0], cross_kv, True)
    for c in caches[1]:
        c.reserve(c.max_len)
    kv = [(c.keys, c.values) for c in caches[1]]
    static, new_kv = compiled_step(decoder)(token[:, None], mx.array(width), pad, kv, cross_kv)
    np.testing.assert_allclose(np.array(static), np.array(eager), atol=1e-4, rtol=1e-4)
    for c, (k, _) in zip(caches[0], new_kv, strict=True):
        written = width + 1
        np.testing.assert_allclose(
            np.array(k[:, :, :written]), np.array(c.keys[:, :, :written]), atol=1e-5
        )


def test_sampling_draws_the_same_with_the_compiled_step(wm, features):
    """The random state stays outside the compiled step: same seed, same samples."""
    opts = DecodingOptions(temperature=0.8, best_of=2)
    runs = []
    for compiled in (False, True):
        mx.random.seed(3)
        results = decode_features(wm, features, replace(opts, compiled_step=compiled))
        runs.append([r.tokens for r in results])
    assert runs[0] == runs[1]
