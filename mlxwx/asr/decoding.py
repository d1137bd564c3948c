"""Decode a batch of 30 s windows with Whisper: greedy, sampled or beam search, one loop.

Every row carries its own prompt (left-padded, masked, with its own positions into Whisper's
learned positional table) and its own state as arrays, so logit filters act on (rows, vocab)
logits with no per-row Python, and the loop reads back one boolean per step, one step behind the
device (`mx.async_eval`). Audio is encoded once per window; fallback passes reuse the features.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np

from ..models.whisper import CrossKV, KVCache, TextDecoder
from ..ops import leading, logsumexp, rows_of
from .beam import BeamSearch, _rank
from .guards import loop_at_end
from .logits import TIME_PRECISION, DecodeState, LogitFilters
from .model import WhisperModel
from .noise import draw_seed, mix, sample
from .step import decoder_step

COMPACT_EVERY = 8  # steps between checks for ended rows to drop from the batch

__all__ = ["TIME_PRECISION", "DecodingOptions", "DecodingResult", "decode", "decode_features"]


@dataclass(frozen=True)
class DecodingOptions:
    """Options for one decoding pass.

    Attributes:
        task: "transcribe" or "translate".
        language: language code; None on a multilingual model means detect per window.
        temperature: 0 for greedy, > 0 to sample.
        without_timestamps: decode text only (one segment per window).
        max_initial_timestamp: latest first timestamp, seconds.
        suppress_blank: forbid a blank or end-of-text as the first sampled token.
        sample_len: most tokens sampled per window (default half the text context).
        beam_size: beams per window at temperature 0 (1 = greedy; 5, as `mlxwx run`).
        patience: beam search keeps going until beam_size * patience candidates have ended.
        length_penalty: None ranks by log-prob per token, else the Google NMT penalty alpha.
        best_of: samples drawn per window at temperature > 0; the best is kept (5).
        stop_loops: end a row as soon as its text loops (`mlxwx.asr.guards`), and a row at its
            window's token limit (`decode_features(limits=...)`); the result is `looped`.
            False: rows run to the end of text or to `sample_len` (openai-whisper).
        suppress_tokens: tokens never decoded, beside the checkpoint's own list.
        suppress_numerals: never decode a token holding a digit or "%$£" (numbers come out
            spelled out: WhisperX's option, for aligners that cannot time digits).
        compiled_step: run each one-token decoder step as one `mx.compile`d function over the
            whole 448-slot cache (traced once per batch shape) instead of building it op by op.
            Off by default: slower than the eager step for large models, which attend over
            every slot (bench/RESULTS.md).
        cross_kv_bits: store each window's cross-attention keys and values in this many bits
            (8 or 4; `mlxwx.ops.pack`: a scale and an offset per 64 values) and read them so at
            every step, instead of the model's float type. None: the model's float type.
    """

    task: str = "transcribe"
    language: str | None = None
    temperature: float = 0.0
    without_timestamps: bool = False
    max_initial_timestamp: float = 1.0
    suppress_blank: bool = True
    sample_len: int | None = None
    beam_size: int = 5
    patience: float = 1.0
    length_penalty: float | None = None
    best_of: int = 5
    stop_loops: bool = True
    suppress_tokens: tuple[int, ...] = ()
    suppress_numerals: bool = False
    compiled_step: bool = False
    cross_kv_bits: int | None = None

    def __post_init__(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {self.task!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.beam_size < 1 or self.best_of < 1 or self.patience <= 0:
            raise ValueError(
                f"beam_size and best_of must be >= 1 and patience > 0, got {self.beam_size}, "
                f"{self.best_of}, {self.patience}"
            )
        if self.cross_kv_bits not in (None, 4, 8):
            raise ValueError(f"cross_kv_bits must be 8, 4 or None, got {self.cross_kv_bits}")
        if self.max_initial_timestamp < 0:
            raise ValueError(
                f"max_initial_timestamp must be >= 0, got {self.max_initial_timestamp}"
            )


@dataclass(frozen=True)
class DecodingResult:
    """One window's decoded tokens (text and timestamps, no prompt, no end-of-text), their
    (text, tokens) units (`Tokenizer.units`: the text decoded once) and its scores."""

    tokens: list[int]
    text: str
    language: str | None
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float = field(default=0.0)
    units: tuple[tuple[str, tuple[int, ...]], ...] = ()
    looped: bool = False  # stopped in a loop or at its token limit (`stop_loops`): a failure


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def detect_language(
    wm: WhisperModel, audio: mx.array, cross_kv: CrossKV | None = None
) -> tuple[list[str], list[float]]:
    """Most likely language code and the no-speech probability per encoded window (B, T, D),
    from the logits after `<|startoftranscript|>` (cross_kv: the windows' keys and values,
    when already computed)."""
    tok = wm.tokenizer
    codes = list(tok.languages)
    ids = mx.array([tok.languages[c] for c in codes])
    batch = audio.shape[0]
    cache = wm.model.decoder.new_cache(batch, wm.model.dtype)
    cross_kv = cross_kv or wm.model.decoder.cross_kv(audio)
    logits = wm.model.decoder(mx.full((batch, 1), tok.sot), cross_kv, cache, 0)[:, 0]
    logits = logits.astype(mx.float32)
    best = mx.argmax(logits[:, ids], axis=-1)
    no_speech = mx.softmax(logits, axis=-1)[:, tok.no_speech]
    return [codes[i] for i in np.array(best).tolist()], np.array(no_speech).tolist()


def window_kv(wm: WhisperModel, features: mx.array, options: DecodingOptions) -> CrossKV:
    """The cross-attention keys and values of encoded windows, in `options.cross_kv_bits`."""
    return wm.model.decoder.cross_kv(features, options.cross_kv_bits)


def encode(wm: WhisperModel, mel: mx.array) -> mx.array:
    """(B, n_audio_ctx, n_audio_state) features of log-mel windows (B, 3000, n_mels).

    On the CPU windows are encoded one by one: a batch gains nothing there (the matmuls have
    1500 rows already), and its activations (12 MB a window for base's MLP) would outgrow what
    the C allocator recycles (32 MB), so every op would map fresh pages and fault on each.
    Each window is evaluated before the next is built (one graph for all of them ran slower;
    figures in bench/RESULTS.md)."""
    mel = mel.astype(wm.model.dtype)
    if mx.default_device() != mx.cpu or mel.shape[0] == 1:
        return wm.model.encoder(mel)
    out = []
    for i in range(mel.shape[0]):
        out.append(wm.model.encoder(mel[i : i + 1]))
        mx.eval(out[-1])
    return mx.concatenate(out)


def decode(
    wm: WhisperModel, mel: mx.array, options: DecodingOptions = DecodingOptions()
) -> list[DecodingResult]:
    """Decode log-mel windows (B, 3000, n_mels): one result per window; without a language,
    a multilingual model detects it per window."""
    audio = encode(wm, mel)
    languages: list[str | None] = [options.language] * audio.shape[0]
    if options.language is None and wm.tokenizer.multilingual:
        languages = list(detect_language(wm, audio)[0])
    return decode_features(wm, audio, options, languages)


def decode_features(
    wm: WhisperModel,
    audio: mx.array,
    options: DecodingOptions,
    languages: list[str | None] | None = None,
    contexts: list[list[int]] | None = None,
    limits: list[int] | None = None,
    seeds: list[int] | None = None,
    cross_kv: CrossKV | None = None,
    ends: Sequence[float | None] | None = None,
) -> list[DecodingResult]:
    """Decode encoded windows `audio` (B, n_audio_ctx, D).

    languages: per window (default `options.language`; None on a multilingual model means
    English: detect languages first, `detect_language`); contexts: per window, text tokens of
    the previous window or an initial prompt, placed after <|startofprev|>; limits: per window,
    the most tokens decoded with `options.stop_loops` (default: no limit but `sample_len`);
    seeds: per window, the key of its sampling noise (`mlxwx.asr.noise`; default: drawn from
    MLX's random state), so that a window samples the same tokens in any batch; cross_kv: the
    windows' cross-attention keys and values (`TextDecoder.cross_kv(audio)`), when already
    computed; ends: per window, the second before which its text may not end after a pair of
    timestamps (Whisper's sign that an utterance runs past the window; None: no such rule).
    """
    tok, batch = wm.tokenizer, audio.shape[0]
    if not tok.multilingual:
        languages = ["en"] * batch
    languages = list(languages or [options.language] * batch)
    sot_len = len(tok.sot_sequence(languages[0], options.task, True)) + options.without_timestamps
    prompts = [
        context_prompt(wm, ctx)
        + tok.sot_sequence(lang, options.task, not options.without_timestamps)
        for lang, ctx in zip(languages, contexts or [[]] * batch, strict=True)
    ]
    repeat = options.beam_size if options.temperature == 0 else options.best_of
    prompts = [p for p in prompts for _ in range(repeat)]
    limits = limits if limits is not None and options.stop_loops else [1 << 30] * batch
    row_limits = mx.array([n for n in limits for _ in range(repeat)], dtype=mx.int32)
    seeds = seeds if seeds is not None else [draw_seed() for _ in range(batch)]
    ends = ends if ends is not None else [None] * batch
    rung = round(options.temperature * 1000)
    keys = mx.array([mix(s, rung, r) for s in seeds for r in range(repeat)], dtype=mx.uint32)
    holds = [-1 if e is None else tok.timestamp_begin + round(e / TIME_PRECISION) for e in ends]
    row_holds = mx.array([h for h in holds for _ in range(repeat)], dtype=mx.int32)
    cross_kv = cross_kv or window_kv(wm, audio, options)
    rows = (row_limits, keys, row_holds)
    decoded = _decode_rows(wm, cross_kv, prompts, sot_len, options, batch, rows)
    return [
        _result(wm, *d, lang, options, limit)
        for d, lang, limit in zip(decoded, languages, limits, strict=True)
    ]


def context_prompt(wm: WhisperModel, context: list[int]) -> list[int]:
    """<|startofprev|> and the last tokens of `context` that fit in half the text context."""
    if not context:
        return []
    keep = wm.dims.n_text_ctx // 2 - 1
    return [wm.tokenizer.sot_prev, *context[-keep:]]


def left_pad(prompts: list[list[int]], pad_token: int) -> tuple[mx.array, mx.array]:
    """(R, L) prompts right-aligned, and the pad count per row."""
    width = max(len(p) for p in prompts)
    pads = [width - len(p) for p in prompts]
    return mx.array([[pad_token] * n + p for n, p in zip(pads, prompts, strict=True)]), mx.array(
        pads
    )


def attention_mask(pad: mx.array, offset: int, length: int) -> mx.array:
    """(R, 1, length, offset+length) bool: causal, pads hidden (a pad query sees itself only)."""
    q = mx.arange(offset, offset + length)[:, None]
    k = mx.arange(offset + length)[None, :]
    real = k[None] >= pad[:, None, None]
    return (((k <= q)[None] & real) | (k == q)[None])[:, None]


def _decode_rows(
    wm: WhisperModel,
    cross_kv: CrossKV,
    prompts: list[list[int]],
    sot_len: int,
    options: DecodingOptions,
    batch: int,
    rows: tuple[mx.array, mx.array, mx.array],
) -> list[tuple[list[int], float, int, float]]:
    """(tokens, sum logprob, length, no-speech prob) per window, from its repeat rows.

    cross_kv: the cross-attention keys and values of one window per `batch` entry; its rows
    (beams, samples) share them. rows: each row's most tokens (`stop_loops`), its sampling
    key and the timestamp token before which it may not end after a pair (-1: none)."""
    model, tok = wm.model, wm.tokenizer
    prompt, pad = left_pad(prompts, tok.eot)
    n_rows, width = prompt.shape
    padded = len({len(p) for p in prompts}) > 1
    cache = model.decoder.new_cache(n_rows, model.dtype)
    positions = mx.maximum(mx.arange(width)[None] - pad[:, None], 0)
    mask = attention_mask(pad, 0, width) if padded else None
    logits = model.decoder(prompt, cross_kv, cache, 0, positions, mask).astype(mx.float32)
    no_speech = mx.softmax(logits[:, width - sot_len], axis=-1)[:, tok.no_speech]
    state = DecodeState.start(n_rows, *rows)
    search: BeamSearch | _Rows
    if options.temperature == 0 and options.beam_size > 1:
        search = BeamSearch(batch, options.beam_size, options.patience, tok.eot)
        state.sum_logprob = search.initial_scores()
    else:
        search = _Rows.new(n_rows, max_steps(wm, width, options), tok.eot)
    _loop(wm, logits[:, -1], (cross_kv, cache, pad), (width, padded), state, search, options)
    repeat = n_rows // batch
    no_speech_np = np.array(no_speech)[::repeat].tolist()
    if isinstance(search, BeamSearch):
        return [
            (*b, ns)
            for b, ns in zip(
                search.finalize(state.sum_logprob, options.length_penalty),
                no_speech_np,
                strict=True,
            )
        ]
    search.flush(state)
    return _pick_samples(search, repeat, tok.eot, no_speech_np, options.length_penalty)


@dataclass
class _Rows:
    """Greedy or sampled rows: which original row each batch row is, and what rows already
    dropped from the batch left behind (tokens so far, summed log-prob, length), on the host.

    Rows end at different steps; once half of the batch has ended, the ended rows are dropped
    (their caches and cross keys/values too), so the step costs what the live rows need."""

    ids: np.ndarray
    tokens: np.ndarray
    sums: np.ndarray
    lengths: np.ndarray
    start: int = 0
    steps: list[mx.array] = field(default_factory=list)

    @classmethod
    def new(cls, n_rows: int, sample_len: int, eot: int) -> _Rows:
        tokens = np.full((n_rows, sample_len), eot, np.int64)
        return cls(np.arange(n_rows), tokens, np.zeros(n_rows), np.zeros(n_rows, np.int64))

    def flush(self, state: DecodeState) -> None:
        """Copy the steps since the last flush and the rows' scores to the host."""
        if self.steps:
            block = np.array(mx.stack(self.steps, 1))
            self.tokens[self.ids, self.start : self.start + block.shape[1]] = block
            self.start += block.shape[1]
            self.steps = []
        self.sums[self.ids] = np.array(state.sum_logprob)
        self.lengths[self.ids] = np.array(state.length)

    def compact(self, state: DecodeState) -> mx.array | None:
        """Batch rows to keep, when at most half of them are still decoding (else None)."""
        live = np.flatnonzero(~np.array(state.finished))
        if len(live) == 0 or 2 * len(live) > len(self.ids):
            return None
        self.flush(state)
        self.ids = self.ids[live]
        return mx.array(live)


def _loop(
    wm: WhisperModel,
    logits: mx.array,
    batch_state: tuple[list, list, mx.array],
    layout: tuple[int, bool],
    state: DecodeState,
    search: BeamSearch | _Rows,
    options: DecodingOptions,
) -> None:
    """Run decode steps until every row (or every window's beams) has ended."""
    beam = search if isinstance(search, BeamSearch) else None
    model, tok = wm.model, wm.tokenizer
    cross_kv, cache, pad = batch_state
    width, padded = layout
    filters = LogitFilters(wm, options)
    compiled = options.compiled_step
    pending: mx.array | None = None
    for step in range(max_steps(wm, width, options)):
        logits = filters(logits, step, state)
        norm = logsumexp(logits, axis=-1)  # the only pass over the vocabulary with exp
        if beam is not None:
            token, src, logprob = beam.step(logits, norm, state.sum_logprob)
            state.take(src)
            for c in cache:
                c.take(src)
        else:
            token = mx.where(
                state.finished, tok.eot, select(logits, options.temperature, state.keys, step)
            )
            logprob = mx.take_along_axis(logits, token[:, None], axis=-1)[:, 0] - norm
        state.advance(token, logprob, filters.ts_begin, tok.eot)
        if isinstance(search, _Rows):
            search.steps.append(token)
        done = beam.done() if beam is not None else mx.all(state.finished)
        mx.async_eval(token, done, state.sum_logprob)
        if pending is not None and pending.item():  # read the previous step while this one runs
            break
        pending = done
        if step % COMPACT_EVERY == COMPACT_EVERY - 1:
            if options.stop_loops:
                state.guard()
            keep = search.compact(state)
            if keep is not None:
                state.take(keep)
                for c in cache:
                    c.take(keep)
                # beams leave by whole windows and stay grouped; sampled rows each get their own
                per_window = beam.k if beam is not None else 1
                window = keep[::per_window] // (token.shape[0] // leading(cross_kv[0][0])[0])
                cross_kv = take_kv(cross_kv, window)
                pad, token = pad[keep], token[keep]
        if compiled:
            logits = decoder_step(model.decoder, token, width + step, pad, cache, cross_kv)
        else:
            logits = _eager_step(model.decoder, token, (width, step), pad, cache, cross_kv, padded)


def _eager_step(
    decoder: TextDecoder,
    token: mx.array,
    at: tuple[int, int],
    pad: mx.array,
    cache: list[KVCache],
    cross_kv: CrossKV,
    padded: bool,
) -> mx.array:
    """One decoder step built op by op: float32 logits (B, n_vocab) for `token` (B,) at cache slot
    width + step (`at`), attending over the slots written so far."""
    width, step = at
    offset = width + step
    positions = (width - pad + step)[:, None]
    mask = attention_mask(pad, offset, 1) if padded else None
    logits = decoder(token[:, None], cross_kv, cache, offset, positions, mask)
    return logits[:, -1].astype(mx.float32)


def take_kv(cross_kv: CrossKV, rows: mx.array | Sequence[int]) -> CrossKV:
    """The keys and values of windows `rows`; consecutive rows given as a list are a view of
    them (no copy: a batch's keys and values are its largest arrays)."""
    index: object = rows
    if not isinstance(rows, mx.array):
        first = rows[0] if len(rows) else 0
        consecutive = list(rows) == list(range(first, first + len(rows)))
        index = slice(first, first + len(rows)) if consecutive else mx.array(list(rows))
    return [(rows_of(k, index), rows_of(v, index)) for k, v in cross_kv]


def max_steps(wm: WhisperModel, width: int, options: DecodingOptions) -> int:
    """Most tokens decoded after a prompt of `width` tokens."""
    return min(options.sample_len or wm.dims.n_text_ctx // 2, wm.dims.n_text_ctx - width)


def select(logits: mx.array, temperature: float, keys: mx.array, step: int) -> mx.array:
    if temperature == 0:
        return mx.argmax(logits, axis=-1)
    return sample(logits, temperature, keys, step)


def _pick_samples(
    rows: _Rows,
    repeat: int,
    eot: int,
    no_speech: list[float],
    length_penalty: float | None,
) -> list[tuple[list[int], float, int, float]]:
    """Per window, the best of its `repeat` sampled rows (one row when greedy)."""
    sums, lengths = rows.sums.tolist(), rows.lengths.tolist()
    out = []
    for w, ns in enumerate(no_speech):
        best = None
        for r in range(w * repeat, (w + 1) * repeat):
            ends = np.flatnonzero(rows.tokens[r] == eot)
            kept = (rows.tokens[r][: ends[0]] if ends.size else rows.tokens[r]).tolist()
            rank = _rank(sums[r], len(kept), length_penalty)
            if best is None or rank > best[0]:
                best = (rank, kept, sums[r], lengths[r])
        assert best is not None
        out.append((best[1], best[2], best[3], ns))
    return out


def _result(
    wm: WhisperModel,
    tokens: list[int],
    total: float,
    length: int,
    no_speech: float,
    language: str | None,
    options: DecodingOptions,
    limit: int,
) -> DecodingResult:
    units = tuple(wm.tokenizer.units(tokens))
    eot = wm.tokenizer.eot
    looped = options.stop_loops and (length >= limit or loop_at_end(tokens, eot))
    text = "".join(text for text, _ in units)
    return DecodingResult(
        tokens=tokens,
        text=text,
        language=language,
        avg_logprob=total / max(length, 1),
        no_speech_prob=no_speech,
        temperature=options.temperature,
        compression_ratio=compression_ratio(text),
        units=units,
        looped=looped,
    )
