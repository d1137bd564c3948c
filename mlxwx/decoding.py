"""Decode a batch of 30 s windows with Whisper: logit filters as array ops, greedy or sampled.

Every row of the batch carries its own state as arrays (last tokens, latest timestamp, finished
flag), so filters act on (B, vocab) logits with no per-row Python and the loop reads back one
boolean per step, one step behind the GPU (`mx.async_eval`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np

from .load import WhisperModel

TIME_PRECISION = 0.02  # seconds per timestamp token


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
    """

    task: str = "transcribe"
    language: str | None = None
    temperature: float = 0.0
    without_timestamps: bool = False
    max_initial_timestamp: float = 1.0
    suppress_blank: bool = True
    sample_len: int | None = None

    def __post_init__(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {self.task!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_initial_timestamp < 0:
            raise ValueError(
                f"max_initial_timestamp must be >= 0, got {self.max_initial_timestamp}"
            )


@dataclass(frozen=True)
class DecodingResult:
    tokens: list[int]
    text: str
    language: str | None
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float = field(default=0.0)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def detect_language(wm: WhisperModel, cross_kv: list) -> list[str]:
    """Most likely language code per row from the logits after `<|startoftranscript|>`."""
    tok = wm.tokenizer
    codes = list(tok.languages)
    ids = mx.array([tok.languages[c] for c in codes])
    batch = cross_kv[0][0].shape[0]
    cache = wm.model.decoder.new_cache(batch, wm.model.dtype)
    logits = wm.model.decoder(mx.full((batch, 1), tok.sot), cross_kv, cache, 0)[:, 0]
    best = mx.argmax(logits[:, ids], axis=-1)
    return [codes[i] for i in np.array(best).tolist()]


class LogitFilters:
    """Static suppression plus Whisper's timestamp rules, over (B, vocab) float32 logits."""

    def __init__(self, wm: WhisperModel, options: DecodingOptions):
        tok, vocab = wm.tokenizer, wm.dims.n_vocab
        self.options = options
        self.eot, self.ts_begin = tok.eot, tok.timestamp_begin
        ids = np.arange(vocab)
        static = np.zeros(vocab, np.float32)
        static[list(wm.suppress_tokens)] = -np.inf
        if options.without_timestamps:
            static[ids >= self.ts_begin] = -np.inf
        # Special tokens between <|endoftext|> and the timestamps (languages, tasks, sot, ...)
        # belong to prompts only; openai-whisper leaves the language tokens open.
        static[self.eot + 1 : self.ts_begin] = -np.inf
        self.static = mx.array(static)
        begin = np.zeros(vocab, np.float32)
        if options.suppress_blank:
            begin[list(wm.begin_suppress_tokens)] = -np.inf
        if not options.without_timestamps:
            begin[: self.ts_begin] = -np.inf  # the first token is a timestamp...
            last_initial = self.ts_begin + round(options.max_initial_timestamp / TIME_PRECISION)
            begin[last_initial + 1 :] = -np.inf  # ...no later than max_initial_timestamp
        self.begin = mx.array(begin)
        self.ids = mx.array(ids)

    def __call__(self, logits: mx.array, step: int, state: DecodeState) -> mx.array:
        logits = logits + self.static
        if step == 0:
            return logits + self.begin
        if self.options.without_timestamps:
            return logits
        return self.timestamp_rules(logits, state)

    def timestamp_rules(self, logits: mx.array, state: DecodeState) -> mx.array:
        ids, ts = self.ids[None], self.ts_begin
        is_ts = ids >= ts
        last_ts = (state.last >= ts)[:, None]
        pen_ts = ((state.penult >= ts) | (state.penult < 0))[:, None]
        # Timestamps come in pairs: after a pair, text (or the end); after a lone one, another.
        banned = (last_ts & pen_ts & is_ts) | (last_ts & ~pen_ts & (ids < self.eot))
        # Timestamps never go back; after a lone timestamp the next may repeat it (empty segment).
        floor = state.max_ts + mx.where(last_ts[:, 0] & ~pen_ts[:, 0], 0, 1)
        banned |= is_ts & (ids < floor[:, None]) & (state.max_ts >= 0)[:, None]
        logits = mx.where(banned, -mx.inf, logits)
        # When all timestamps together outweigh the likeliest text token, emit a timestamp.
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        ts_mass = mx.logsumexp(mx.where(is_ts, logprobs, -mx.inf), axis=-1)
        text_best = mx.max(mx.where(is_ts, -mx.inf, logprobs), axis=-1)
        force = (ts_mass > text_best)[:, None] & ~is_ts
        return mx.where(force, -mx.inf, logits)


@dataclass
class DecodeState:
    """Per-row arrays: the last two sampled tokens (-1 before any), the latest timestamp token
    (-1 before any), finished flags and summed log-probabilities."""

    last: mx.array
    penult: mx.array
    max_ts: mx.array
    finished: mx.array
    sum_logprob: mx.array
    length: mx.array

    @classmethod
    def start(cls, batch: int) -> DecodeState:
        none = mx.full((batch,), -1, dtype=mx.int32)
        return cls(
            none,
            none,
            none,
            mx.zeros((batch,), mx.bool_),
            mx.zeros((batch,)),
            mx.zeros((batch,), mx.int32),
        )

    def advance(self, token: mx.array, logprob: mx.array, ts_begin: int, eot: int) -> None:
        live = ~self.finished
        self.sum_logprob = self.sum_logprob + mx.where(live, logprob, 0.0)
        self.length = self.length + live.astype(mx.int32)
        self.penult, self.last = self.last, token
        self.max_ts = mx.where(token >= ts_begin, mx.maximum(self.max_ts, token), self.max_ts)
        self.finished = self.finished | (token == eot)


def select(logits: mx.array, temperature: float) -> mx.array:
    if temperature == 0:
        return mx.argmax(logits, axis=-1)
    return mx.random.categorical(logits / temperature, axis=-1)


def decode(
    wm: WhisperModel, mel: mx.array, options: DecodingOptions = DecodingOptions()
) -> list[DecodingResult]:
    """Decode windows of log-mel `mel` (B, 3000, n_mels) into one result per row."""
    model, tok = wm.model, wm.tokenizer
    audio = model.encoder(mel.astype(model.dtype))
    cross_kv = model.decoder.cross_kv(audio)
    batch = mel.shape[0]
    languages: list[str | None] = [options.language if tok.multilingual else "en"] * batch
    if tok.multilingual and options.language is None:
        languages = list(detect_language(wm, cross_kv))
    prompt = mx.array(
        [tok.sot_sequence(lang, options.task, not options.without_timestamps) for lang in languages]
    )
    tokens, state, no_speech = _greedy_loop(wm, cross_kv, prompt, options)
    return _results(wm, tokens, state, no_speech, languages, options)


def _greedy_loop(
    wm: WhisperModel, cross_kv: list, prompt: mx.array, options: DecodingOptions
) -> tuple[np.ndarray, DecodeState, mx.array]:
    model, tok = wm.model, wm.tokenizer
    batch, n_prompt = prompt.shape
    n_ctx = wm.dims.n_text_ctx
    sample_len = min(options.sample_len or n_ctx // 2, n_ctx - n_prompt)
    filters = LogitFilters(wm, options)
    cache = model.decoder.new_cache(batch, model.dtype)
    logits = model.decoder(prompt, cross_kv, cache, 0).astype(mx.float32)
    no_speech = mx.softmax(logits[:, 0], axis=-1)[:, tok.no_speech]
    logits = logits[:, -1]
    state = DecodeState.start(batch)
    steps: list[mx.array] = []
    pending: mx.array | None = None
    for step in range(sample_len):
        logits = filters(logits, step, state)
        token = mx.where(state.finished, tok.eot, select(logits, options.temperature))
        logprob = mx.take_along_axis(
            logits - mx.logsumexp(logits, axis=-1, keepdims=True), token[:, None], axis=-1
        )[:, 0]
        state.advance(token, logprob, filters.ts_begin, tok.eot)
        steps.append(token)
        done = mx.all(state.finished)
        mx.async_eval(token, done, state.sum_logprob)
        if pending is not None and pending.item():  # read the previous step while this one runs
            break
        pending = done
        if step + 1 < sample_len:
            logits = model.decoder(token[:, None], cross_kv, cache, n_prompt + step)[:, -1]
            logits = logits.astype(mx.float32)
    return np.array(mx.stack(steps, axis=1)), state, no_speech


def _results(
    wm: WhisperModel,
    tokens: np.ndarray,
    state: DecodeState,
    no_speech: mx.array,
    languages: list[str | None],
    options: DecodingOptions,
) -> list[DecodingResult]:
    eot = wm.tokenizer.eot
    sums, lengths = np.array(state.sum_logprob).tolist(), np.array(state.length).tolist()
    no_speech_probs = np.array(no_speech).tolist()
    results = []
    for row, lang, total, n, nsp in zip(
        tokens, languages, sums, lengths, no_speech_probs, strict=True
    ):
        ends = np.flatnonzero(row == eot)
        kept = row[: ends[0]] if ends.size else row
        text = wm.tokenizer.decode(kept.tolist())
        results.append(
            DecodingResult(
                tokens=kept.tolist(),
                text=text,
                language=lang,
                avg_logprob=total / max(n, 1),
                no_speech_prob=nsp,
                temperature=options.temperature,
                compression_ratio=compression_ratio(text),
            )
        )
    return results
