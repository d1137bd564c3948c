"""Logit filters, segment splitting and the decode loop's bookkeeping, on the real tiny.en vocab."""

from __future__ import annotations

from dataclasses import fields

import mlx.core as mx
import numpy as np
import pytest

from mlxwx.asr.decoding import DecodingOptions, DecodingResult, take_kv
from mlxwx.asr.logits import DecodeState, LogitFilters
from mlxwx.asr.segments import Thresholds, build_window
from mlxwx.types import AudioChunk, SpanSamples


def state_after(tokens_per_row: list[list[int]], ts_begin: int, eot: int) -> DecodeState:
    state = DecodeState.start(len(tokens_per_row))
    for step in range(max(len(r) for r in tokens_per_row)):
        token = mx.array([r[step] for r in tokens_per_row])
        state.advance(token, mx.zeros((len(tokens_per_row),)), ts_begin, eot)
    return state


def text_favoured(vocab: int, ts_begin: int) -> mx.array:
    """(1, vocab) logits where text clearly outweighs all timestamps together."""
    logits = np.zeros((1, vocab), np.float32)
    logits[:, ts_begin:] = -20.0
    return mx.array(logits)


def allowed(logits: mx.array) -> list[np.ndarray]:
    return [np.flatnonzero(np.isfinite(row)) for row in np.array(logits)]


def test_first_token_is_an_early_timestamp(wm):
    f = LogitFilters(wm, DecodingOptions(max_initial_timestamp=1.0))
    ok = allowed(f(mx.zeros((1, wm.dims.n_vocab)), 0, DecodeState.start(1)))[0]
    ts = wm.tokenizer.timestamp_begin
    assert ok.min() == ts and ok.max() == ts + 50


def test_timestamp_pairing_and_monotonic(wm):
    tok, vocab = wm.tokenizer, wm.dims.n_vocab
    ts, eot, word = tok.timestamp_begin, tok.eot, tok.encode(" hello")[0]
    f = LogitFilters(wm, DecodingOptions())
    rows = [
        [ts + 10, word],  # text after <|0.20|>: text, or a timestamp after 0.20 (nonzero length)
        [ts + 10, word, ts + 30],  # a lone closing timestamp: another timestamp (>= 0.60) or eot
        [ts + 10, word, ts + 30, ts + 30],  # a closed pair: text or eot, no timestamp
    ]
    state = state_after([rows[0]], ts, eot)
    ok = allowed(f.timestamp_rules(text_favoured(vocab, ts), state))[0]
    assert word in ok and ts + 10 not in ok and ts + 11 in ok
    state = state_after([rows[1]], ts, eot)
    ok = allowed(f.timestamp_rules(text_favoured(vocab, ts), state))[0]
    assert word not in ok and eot in ok and ts + 29 not in ok and ts + 30 in ok
    state = state_after([rows[2]], ts, eot)
    ok = allowed(f.timestamp_rules(text_favoured(vocab, ts), state))[0]
    assert word in ok and not any(t >= ts for t in ok)


def test_a_row_held_to_its_end_cannot_end_after_a_pair_before_it(wm):
    """`hold_until` (finish_chunks): after a pair of timestamps earlier than a row's hold,
    <|endoftext|> is banned (text must follow), also when it is the likeliest token; at or
    after the hold, after a lone closing timestamp and after the first timestamp alone, the row
    may end as before."""
    tok, vocab = wm.tokenizer, wm.dims.n_vocab
    ts, eot, word = tok.timestamp_begin, tok.eot, tok.encode(" hello")[0]
    f = LogitFilters(wm, DecodingOptions())
    rows = [
        [ts, word, ts + 30, ts + 30],  # pair at 0.60, held to 1.00: no end
        [ts, word, ts + 50, ts + 50],  # pair at 1.00, held to 1.00: may end
        [ts, word, word, ts + 30],  # lone closing timestamp at 0.60: may end
        [ts, word, ts + 30, ts + 30],  # no hold (-1): may end
        [ts + 30],  # the first timestamp alone (an empty window): may end
    ]
    state = state_after(rows[:4], ts, eot)
    first = state_after([rows[4]], ts, eot)
    for name in DecodeState.FIELDS:  # row 4: after its first token only
        setattr(state, name, mx.concatenate([getattr(state, name), getattr(first, name)]))
    state.hold_until = mx.array([ts + 50, ts + 50, ts + 50, -1, ts + 50], dtype=mx.int32)
    logits = text_favoured(vocab, ts) + mx.zeros((5, 1))
    logits[:, eot] = 5.0  # the end is the likeliest token of every row
    ok = allowed(f.timestamp_rules(logits, state))
    assert eot not in ok[0] and word in ok[0]
    assert eot in ok[1] and eot in ok[2] and eot in ok[3] and eot in ok[4]
    picked = mx.argmax(f.timestamp_rules(logits, state), axis=-1).tolist()
    assert picked[0] != eot and picked[1:] == [eot, eot, eot, eot]


def test_timestamp_mass_beats_best_text_token(wm):
    tok, vocab = wm.tokenizer, wm.dims.n_vocab
    ts, word = tok.timestamp_begin, tok.encode(" hello")[0]
    f = LogitFilters(wm, DecodingOptions())
    logits = np.full((2, vocab), -30.0, np.float32)
    logits[:, word] = 2.0
    logits[0, ts + 100 : ts + 200] = 0.0  # 100 timestamps at e^0 outweigh one text token at e^2
    state = state_after([[ts + 10, word], [ts + 10, word]], ts, tok.eot)
    ok = allowed(f.timestamp_rules(mx.array(logits), state))
    assert word not in ok[0] and word in ok[1]


def reference_rules(logits: np.ndarray, seq: list[int], ts: int, eot: int) -> np.ndarray:
    """openai-whisper's ApplyTimestampRules for one row, in float64 (logits already masked)."""
    out = logits.astype(np.float64)
    last = len(seq) >= 1 and seq[-1] >= ts
    penult = len(seq) < 2 or seq[-2] >= ts
    if last:
        out[ts:] = -np.inf if penult else out[ts:]
        out[:eot] = out[:eot] if penult else -np.inf
    stamps = [t for t in seq if t >= ts]
    if stamps:
        out[ts : stamps[-1] + (0 if last and not penult else 1)] = -np.inf
    finite = out[ts:][np.isfinite(out[ts:])]
    mass = np.log(np.exp(finite - finite.max()).sum()) + finite.max() if finite.size else -np.inf
    if mass > out[:ts].max():
        out[:ts] = -np.inf
    return out


def test_timestamp_rules_match_openai_whisper_on_random_rows(wm):
    """Random histories (text, lone and paired timestamps, eot) and logits whose timestamp mass
    sometimes wins and sometimes loses: the banned columns are openai-whisper's, row by row."""
    tok, vocab = wm.tokenizer, wm.dims.n_vocab
    ts, eot = tok.timestamp_begin, tok.eot
    f = LogitFilters(wm, DecodingOptions())
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(64):
        seq, t = [], ts + int(rng.integers(0, 50))
        for _ in range(int(rng.integers(1, 9))):
            if rng.random() < 0.5:
                t += int(rng.integers(0, 40))
                seq.append(t)
            else:
                seq.append(int(rng.integers(0, eot)))
        seqs.append(seq)
    rows = [state_after([s], ts, eot) for s in seqs]
    state = DecodeState(
        *(mx.concatenate([getattr(r, f.name) for r in rows]) for f in fields(DecodeState))
    )
    logits = rng.normal(0, 2, (len(seqs), vocab)).astype(np.float32)
    logits[:, ts:] += rng.uniform(-12, 2, (len(seqs), 1)).astype(np.float32)
    got = np.array(f.timestamp_rules(mx.array(logits), state))
    masked = np.array(mx.array(logits) + f.static)
    forced = 0
    for row, seq in enumerate(seqs):
        want = reference_rules(masked[row], seq, ts, eot)
        assert (np.isfinite(got[row]) == np.isfinite(want)).all(), (row, seq)
        forced += bool(np.isinf(want[:ts]).all())
    assert 5 < forced < 59  # both outcomes of the mass rule are exercised


def test_suppressed_tokens_never_allowed(wm):
    f = LogitFilters(wm, DecodingOptions(without_timestamps=True))
    ok = set(allowed(f(mx.zeros((1, wm.dims.n_vocab)), 3, DecodeState.start(1)))[0].tolist())
    assert not ok & set(wm.suppress_tokens)
    assert max(ok) == wm.tokenizer.eot  # no timestamps, no special tokens after eot
    blank = set(allowed(f(mx.zeros((1, wm.dims.n_vocab)), 0, DecodeState.start(1)))[0].tolist())
    assert not blank & set(wm.begin_suppress_tokens)


def test_state_tracks_finished_rows_and_logprobs(wm):
    tok = wm.tokenizer
    state = DecodeState.start(2)
    state.advance(mx.array([5, tok.eot]), mx.array([-1.0, -2.0]), tok.timestamp_begin, tok.eot)
    state.advance(mx.array([6, tok.eot]), mx.array([-1.0, -5.0]), tok.timestamp_begin, tok.eot)
    assert np.array(state.finished).tolist() == [False, True]
    assert np.array(state.sum_logprob).tolist() == [-2.0, -2.0]
    assert np.array(state.length).tolist() == [2, 1]


def result(wm, tokens: list[int]) -> DecodingResult:
    units = tuple(wm.tokenizer.units(tokens))
    return DecodingResult(tokens, "", "en", -0.1, 0.01, 0.0, units=units)


def window(wm, tokens: list[int], offset: float, window: float):
    """`build_window` of `tokens` decoded at the start of a chunk of `window` seconds lying
    `offset` seconds into its input."""
    start, n = round(offset * 16000), round(window * 16000)
    chunk = AudioChunk(0, mx.zeros(n), (SpanSamples(start, start + n),))
    return build_window(result(wm, tokens), chunk, 0, wm.tokenizer.timestamp_begin, Thresholds())


def test_window_segments_pairs_and_seek(wm):
    tok = wm.tokenizer
    ts, a, b = tok.timestamp_begin, tok.encode(" one")[0], tok.encode(" two")[0]
    # two closed segments, the last closed by a lone final timestamp: the window is done
    record, advance = window(wm, [ts, a, ts + 50, ts + 60, b, ts + 100], 30.0, 30.0)
    segs = record.segments
    assert [(s.start, s.end, s.text) for s in segs] == [(30.0, 31.0, " one"), (31.2, 32.0, " two")]
    assert [s.tokens for s in segs] == [(ts, a, ts + 50), (ts + 60, b, ts + 100)]
    assert advance == 3000 * 160 and record.spans == (SpanSamples(480000, 960000),)
    # ending on a pair: resume at that pair's timestamp (2.00 s = 200 frames)
    record, advance = window(wm, [ts, a, ts + 50, ts + 60, b, ts + 100, ts + 100], 0.0, 30.0)
    assert len(record.segments) == 2 and advance == 200 * 160
    # the last segment is cut by the window edge: resume at the last closed timestamp
    record, advance = window(wm, [ts, a, ts + 50, ts + 60, b], 0.0, 30.0)
    assert [s.text for s in record.segments] == [" one"] and advance == 100 * 160
    # no timestamps at all: one segment over the window
    record, advance = window(wm, [a, b], 0.0, 12.5)
    assert [(s.start, s.end) for s in record.segments] == [(0.0, 12.5)] and advance == 1250 * 160


def test_options_reject_bad_values():
    with pytest.raises(ValueError, match="cross_kv_bits"):
        DecodingOptions(cross_kv_bits=3)
    with pytest.raises(ValueError, match="task"):
        DecodingOptions(task="summarize")
    with pytest.raises(ValueError, match="temperature"):
        DecodingOptions(temperature=-1)


@pytest.mark.parametrize(
    "options",
    [
        DecodingOptions(beam_size=5),
        pytest.param(DecodingOptions(temperature=0.6, best_of=3), marks=pytest.mark.slow),
    ],
    ids=["beam5", "sampling-best-of-3"],
)
def test_rows_share_their_windows_cross_attention(wm, jfk_path, options):
    """A window's beams (or samples) attend its keys as one grouped query; the tokens are those
    of giving every row its own copy of the keys. Two windows, speech and silence, so that
    sampled rows end at different steps and the batch drops ended rows (row -> window map)."""
    from mlxwx.asr.decoding import _decode_rows, encode
    from mlxwx.audio import load_audio, window_mel

    speech = load_audio(jfk_path)
    mels = [window_mel(speech, 0, speech.shape[0], 80), window_mel(mx.zeros(16000), 0, 16000, 80)]
    audio = encode(wm, mx.stack(mels))
    tok, repeat = wm.tokenizer, max(options.beam_size, options.best_of)
    prompt = tok.sot_sequence("en", "transcribe", True)
    prompts = [prompt] * (2 * repeat)
    runs = []
    rows = (mx.full((2 * repeat,), 1 << 30, mx.int32), mx.arange(2 * repeat).astype(mx.uint32))
    for keys in (audio, mx.repeat(audio, repeat, axis=0)):
        kv = wm.model.decoder.cross_kv(keys)
        runs.append(_decode_rows(wm, kv, prompts, len(prompt), options, 2, rows))
    (shared_tokens, *_), (own_tokens, *_) = runs[0][0], runs[1][0]
    assert shared_tokens == own_tokens and len(shared_tokens) > 10
    assert [r[0] for r in runs[0]] == [r[0] for r in runs[1]]
    assert [r[1] for r in runs[0]] == pytest.approx([r[1] for r in runs[1]], abs=1e-3)


@pytest.mark.slow
def test_beam_windows_leave_the_batch_when_their_candidates_are_complete(wm, jfk_path, monkeypatch):
    """Beam search drops the rows of windows whose candidates are complete (silence ends at
    once, speech much later). Each window's tokens and score are those of decoding it alone."""
    from mlxwx.asr import beam
    from mlxwx.asr.decoding import decode_features, encode
    from mlxwx.audio import load_audio, window_mel
    from mlxwx.models.whisper import MultiHeadAttention

    speech = load_audio(jfk_path)
    mels = [
        window_mel(speech, 0, speech.shape[0], 80),
        window_mel(mx.zeros(16000), 0, 16000, 80),
        window_mel(speech, 0, 3 * 16000, 80),
    ]
    audio = encode(wm, mx.stack(mels))
    kept: list[int] = []
    compact = beam.BeamSearch.compact

    def counted(self, state):
        rows = compact(self, state)
        kept.append(-1 if rows is None else rows.shape[0])
        return rows

    cross_calls: set[tuple[int, int]] = set()
    attend = MultiHeadAttention.attend

    def seen(self, x, k, v, mask):
        if k.shape[2] == audio.shape[1]:  # cross-attention: (rows, windows) of the call
            cross_calls.add((x.shape[0], k.shape[0]))
        return attend(self, x, k, v, mask)

    monkeypatch.setattr(beam.BeamSearch, "compact", counted)
    monkeypatch.setattr(MultiHeadAttention, "attend", seen)
    options = DecodingOptions(beam_size=5)
    together = decode_features(wm, audio, options)
    assert any(0 < n < 15 for n in kept), kept  # some window's rows left the batch
    assert {rows // windows for rows, windows in cross_calls} == {5}, cross_calls  # still grouped
    assert len(cross_calls) > 1
    alone = [decode_features(wm, audio[i : i + 1], options)[0] for i in range(3)]
    assert [r.tokens for r in together] == [r.tokens for r in alone]
    assert len(together[0].tokens) > 20
    got, want = [r.avg_logprob for r in together], [r.avg_logprob for r in alone]
    assert got == pytest.approx(want, abs=1e-4)


@pytest.mark.slow
def test_cpu_encodes_window_by_window_as_one_batch(wm):
    """On the CPU `encode` runs one window at a time: the same features, in order, as the
    encoder given the whole batch."""
    from mlxwx.asr.decoding import encode

    mel = mx.random.normal((3, 2 * wm.dims.n_audio_ctx, wm.dims.n_mels), key=mx.random.key(1))
    assert mx.default_device() == mx.cpu
    got = np.array(encode(wm, mel))
    whole = np.array(wm.model.encoder(mel))
    assert got.shape == whole.shape and not np.allclose(got[0], got[1], atol=1e-3)
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-4)


@pytest.mark.parametrize("rows", [[0, 1, 2, 3], [1, 2], [3], [2, 0], [0, 2, 3], []])
@pytest.mark.parametrize("packed", [False, True])
def test_take_kv_gives_the_rows_asked_for_as_a_list_or_an_array(rows, packed):
    """Consecutive rows are sliced (a view), others gathered: the same keys and values, plain
    or packed in 8 bits (every part of a packed array)."""
    from mlxwx.ops import pack

    kv = [(mx.random.normal((4, 2, 5, 64)), mx.random.normal((4, 2, 5, 64))) for _ in range(2)]
    if packed:
        kv = [(pack(k, 8, keys=True), pack(v, 8)) for k, v in kv]  # type: ignore[misc]
    flat = lambda x: [np.asarray(a) for a in (x[:3] if packed else (x,))]  # noqa: E731
    expect = [([a[rows] for a in flat(k)], [a[rows] for a in flat(v)]) for k, v in kv]
    for got in (take_kv(kv, rows), take_kv(kv, mx.array(rows, dtype=mx.int32))):
        for (k, v), (ek, ev) in zip(got, expect, strict=True):
            for a, b in zip([*flat(k), *flat(v)], [*ek, *ev], strict=True):
                np.testing.assert_array_equal(a, b)


def test_8_bit_cross_kv_decodes_as_its_unpacked_values(wm, jfk_path):
    """`cross_kv_bits=8`: beam search over the packed keys gives the tokens of the same search
    over the values they stand for, and on real speech the text of the float keys; token timing
    reads them too (the alignment heads' scores of the unpacked values)."""
    from mlxwx.asr.decoding import decode_features, encode, window_kv
    from mlxwx.asr.timing import forced_scores
    from mlxwx.audio import load_audio, window_mel
    from mlxwx.ops import Packed, unpack

    speech = load_audio(jfk_path)
    audio = encode(wm, window_mel(speech, 0, speech.shape[0], 80)[None])
    options = DecodingOptions(beam_size=5, cross_kv_bits=8)
    packed = window_kv(wm, audio, options)
    assert isinstance(packed[0][0], Packed)
    unpacked = [(unpack(k), unpack(v)) for k, v in packed]
    got = decode_features(wm, audio, options)[0]
    same = decode_features(wm, audio, options, cross_kv=unpacked)[0]
    plain = decode_features(wm, audio, DecodingOptions(beam_size=5))[0]
    assert got.tokens == same.tokens and len(got.tokens) > 20
    assert got.avg_logprob == pytest.approx(same.avg_logprob, abs=1e-3)
    assert got.text == plain.text
    sequences = [[*wm.tokenizer.sot_sequence("en", "transcribe", True), *got.tokens]]
    (a, _), (b, _) = forced_scores(wm, packed, sequences), forced_scores(wm, unpacked, sequences)
    np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-3)
