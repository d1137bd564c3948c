"""Logit filters over (rows, vocab) arrays and the per-row state they read.

Filters are array ops (no per-row Python, no host sync): static suppression, blank suppression at
the first step, and Whisper's timestamp rules (pairing, monotonic, max initial timestamp, and the
timestamp-vs-text probability rule).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import mlx.core as mx
import numpy as np

from ..ops import logsumexp
from .guards import fresh_history, looping_rows

if TYPE_CHECKING:
    from .decoding import DecodingOptions
    from .model import WhisperModel

TIME_PRECISION = 0.02  # seconds per timestamp token


class LogitFilters:
    """Static suppression plus Whisper's timestamp rules, over (B, vocab) float32 logits."""

    def __init__(self, wm: WhisperModel, options: DecodingOptions):
        tok, vocab = wm.tokenizer, wm.dims.n_vocab
        self.options = options
        self.eot, self.ts_begin = tok.eot, tok.timestamp_begin
        ids = np.arange(vocab)
        static = np.zeros(vocab, np.float32)
        static[list(wm.suppress_tokens) + list(options.suppress_tokens)] = -np.inf
        if options.suppress_numerals:
            static[list(tok.numeral_tokens)] = -np.inf
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
        self.first = mx.array(static + begin)  # the masks of the first step
        end_only = np.full(vocab, -np.inf, np.float32)
        end_only[self.eot] = 0.0
        self.end_only = mx.array(end_only)  # a row told to stop can only end
        self.ids = mx.array(ids)

    def __call__(self, logits: mx.array, step: int, state: DecodeState) -> mx.array:
        """One pass over the vocabulary adds the masks; the timestamp rules add `static`."""
        if step == 0:
            return logits + self.first
        if self.options.without_timestamps:
            out = logits + self.static
        else:
            out = self.timestamp_rules(logits, state)
        return mx.where(state.stop[:, None], self.end_only, out) if self.options.stop_loops else out

    def timestamp_rules(self, logits: mx.array, state: DecodeState) -> mx.array:
        """Whisper's timestamp rules. Every rule bans a range of columns per row, so the rules
        proper run on (rows,) arrays and the 1501 timestamp columns, and the vocabulary-wide work
        is three passes: the static mask, the best text logit, and one fused ban."""
        eot, ts = self.eot, self.ts_begin
        x = logits + self.static
        last_ts = state.last >= ts
        pen_ts = (state.penult >= ts) | (state.penult < 0)
        after_pair, after_lone = last_ts & pen_ts, last_ts & ~pen_ts
        # Timestamps come in pairs: after a pair, text (or the end); after a lone one, another.
        # Timestamps never go back; after a lone timestamp the next may repeat it (empty segment).
        floor = mx.where(state.max_ts >= 0, state.max_ts + mx.where(after_lone, 0, 1), ts)
        stamps_end = mx.where(after_pair, x.shape[-1], floor)  # stamps before it are banned
        stamps = mx.where(self.ids[ts:] < stamps_end[:, None], -mx.inf, x[:, ts:])
        # When all timestamps together outweigh the likeliest other token, emit a timestamp
        # (compared in logits: the log-softmax normaliser is the same on both sides). Of the
        # special columns only <|endoftext|> is open (`static`).
        ts_mass = logsumexp(stamps, axis=-1)
        text_best = mx.where(after_lone, -mx.inf, mx.max(x[:, :eot], axis=-1))
        # A row whose window holds speech past its last timestamp may not end after a pair
        # (not after the first timestamp alone: an empty window may end there).
        hold = last_ts & (state.penult >= ts) & (state.max_ts < state.hold_until)
        end_logit = mx.where(hold, -mx.inf, x[:, eot])
        force = ts_mass > mx.maximum(text_best, end_logit)
        text_end = mx.where(force, ts, mx.where(after_lone, eot, 0))  # columns before it banned
        return _ban(x, self.ids, ts, eot, text_end[:, None], stamps_end[:, None], hold[:, None])


@functools.partial(mx.compile, shapeless=True)  # one trace for any number of rows
def _ban(
    x: mx.array,
    ids: mx.array,
    ts: int,
    eot: int,
    text_end: mx.array,
    stamps_end: mx.array,
    hold: mx.array,
) -> mx.array:
    """-inf at columns [0, text_end) and [ts, stamps_end) of each row, and at <|endoftext|>
    where `hold`, in one fused pass."""
    banned = (ids < text_end) | ((ids >= ts) & (ids < stamps_end)) | (hold & (ids == eot))
    return mx.where(banned, -mx.inf, x)


@dataclass
class DecodeState:
    """Per-row arrays: the last two sampled tokens (-1 before any), the latest timestamp token
    (-1 before any), finished flags and summed log-probabilities; for the loop guard, the last
    text tokens (`guards.LOOP_HISTORY`), the rows told to end (`stop`: the next token is
    <|endoftext|>) and each row's most tokens (`limit`); each row's sampling key (`keys`,
    `mlxwx.asr.noise`)."""

    last: mx.array
    penult: mx.array
    max_ts: mx.array
    finished: mx.array
    sum_logprob: mx.array
    length: mx.array
    history: mx.array
    stop: mx.array
    limit: mx.array
    keys: mx.array
    hold_until: mx.array

    @classmethod
    def start(
        cls,
        batch: int,
        limit: mx.array | None = None,
        keys: mx.array | None = None,
        hold_until: mx.array | None = None,
    ) -> DecodeState:
        none = mx.full((batch,), -1, dtype=mx.int32)
        return cls(
            none,
            none,
            none,
            mx.zeros((batch,), mx.bool_),
            mx.zeros((batch,)),
            mx.zeros((batch,), mx.int32),
            fresh_history(batch),
            mx.zeros((batch,), mx.bool_),
            mx.full((batch,), 1 << 30, dtype=mx.int32) if limit is None else limit,
            mx.zeros((batch,), mx.uint32) if keys is None else keys,
            none if hold_until is None else hold_until,
        )

    FIELDS = ("last", "penult", "max_ts", "finished", "sum_logprob", "length", "history", "stop",
              "limit", "keys", "hold_until")  # fmt: skip

    def take(self, rows: mx.array) -> None:
        """Reorder rows (beam search): row i becomes old row rows[i]."""
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name)[rows])

    def advance(self, token: mx.array, logprob: mx.array, ts_begin: int, eot: int) -> None:
        live = ~self.finished
        self.sum_logprob = self.sum_logprob + mx.where(live, logprob, 0.0)
        self.length = self.length + live.astype(mx.int32)
        self.penult, self.last = self.last, token
        self.max_ts = mx.where(token >= ts_begin, mx.maximum(self.max_ts, token), self.max_ts)
        text = live & (token < eot)
        pushed = mx.concatenate([self.history[:, 1:], token[:, None].astype(mx.int32)], axis=1)
        self.history = mx.where(text[:, None], pushed, self.history)
        self.finished = self.finished | (token == eot)

    def guard(self) -> None:
        """Tell looping rows and rows at their limit to end."""
        self.stop = self.stop | looping_rows(self.history) | (self.length >= self.limit)
