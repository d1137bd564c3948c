"""Batched beam search as array ops: B windows x K beams decoded as B*K rows.

Each step ranks the K*V continuations of every window, keeps the best K that do not end the text
as the new beams (reordering the cache by their source beam), and counts the ones ending in
<|endoftext|> that rank above the K-th kept beam as finished candidates, as openai-whisper does.
The device never waits on the host: finished candidates are rebuilt on the host after the loop
from the per-step records (`BeamStep`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import mlx.core as mx
import numpy as np

from ..ops import top_k_columns

if TYPE_CHECKING:
    from .logits import DecodeState


@dataclass
class BeamStep:
    """What one step decided, (B, 2K) sorted best first: candidate token, source beam, score,
    whether it finished (an end-of-text ranked before the K-th kept beam, within patience)."""

    token: mx.array
    beam: mx.array
    score: mx.array
    finished: mx.array
    history: mx.array  # (B*K, t) tokens of the beams the candidates extend


class BeamSearch:
    """The search state of B windows x K beams. Windows whose candidates are complete can leave
    the batch (`compact`), so the steps after that cost only what the live windows need."""

    def __init__(self, batch: int, beam_size: int, patience: float, eot: int):
        self.b, self.k, self.eot = batch, beam_size, eot
        self.max_finished = round(beam_size * patience)
        self.n_finished = mx.zeros((batch,), mx.int32)
        self.history = mx.zeros((batch * beam_size, 0), mx.int32)
        self.steps: list[BeamStep] = []
        self.windows = np.arange(batch)  # the original window of each live window
        self.found: list[list[tuple[list[int], float]]] = [[] for _ in range(batch)]

    def initial_scores(self) -> mx.array:
        """(B*K,) start scores: only beam 0 is live, so step one does not pick K copies."""
        first = mx.array([0.0] + [-mx.inf] * (self.k - 1))
        return mx.tile(first, (self.b,))

    def step(
        self, logits: mx.array, norm: mx.array, sum_logprob: mx.array
    ) -> tuple[mx.array, mx.array, mx.array]:
        """Next tokens, source rows and token log-probs, each (B*K,), from (B*K, V) logits, their
        log-softmax normalisers (B*K,) and the beam scores (B*K,).

        A window's best 2K continuations are among the best 2K tokens of each of its beams, so
        the vocabulary is cut to those per row before the beams compete."""
        b, k = self.b, self.k
        n = 2 * k
        top = top_k_columns(logits, n)  # (B*K, 2K)
        logprobs = mx.take_along_axis(logits, top, axis=-1) - norm[:, None]
        scores = (sum_logprob[:, None] + logprobs).reshape(b, k * n)
        order = mx.argsort(-scores, axis=-1)[:, :n]
        cand_scores = mx.take_along_axis(scores, order, -1)
        token = mx.take_along_axis(top.reshape(b, k * n), order, -1).astype(mx.int32)
        cand_logprob = mx.take_along_axis(logprobs.reshape(b, k * n), order, -1)
        beam = (order // n).astype(mx.int32)
        ends = token == self.eot
        kept_before = mx.cumsum((~ends).astype(mx.int32), axis=-1) - (~ends).astype(mx.int32)
        early = ends & (kept_before < k) & (cand_scores > -mx.inf)
        finished = early & (
            mx.cumsum(early.astype(mx.int32), axis=-1) + self.n_finished[:, None]
            <= self.max_finished
        )
        self.n_finished = self.n_finished + finished.astype(mx.int32).sum(-1)
        self.steps.append(BeamStep(token, beam, cand_scores, finished, self.history))
        # the first K candidates that do not end the text become the beams
        keep_rank = mx.where(ends, 2 * k, kept_before)
        pick = mx.argsort(keep_rank, axis=-1)[:, :k]
        new_token = mx.take_along_axis(token, pick, -1).reshape(-1)
        new_logprob = mx.take_along_axis(cand_logprob, pick, -1).reshape(-1)
        src = (mx.take_along_axis(beam, pick, -1) + mx.arange(b)[:, None] * k).reshape(-1)
        self.history = mx.concatenate([self.history[src], new_token[:, None]], axis=1)
        return new_token, src, new_logprob

    def done(self) -> mx.array:
        return mx.all(self.n_finished >= self.max_finished)

    def compact(self, state: DecodeState) -> mx.array | None:
        """Drop the windows whose candidates are complete (reads the device): the batch rows to
        keep, or None when every window or none has ended."""
        ended = np.array(self.n_finished) >= self.max_finished
        if ended.all() or not ended.any():
            return None
        self._close(np.flatnonzero(ended), state.sum_logprob)
        live = np.flatnonzero(~ended)
        rows = mx.array((live[:, None] * self.k + np.arange(self.k)).reshape(-1))
        self.windows, self.b = self.windows[live], len(live)
        self.n_finished, self.history = self.n_finished[mx.array(live)], self.history[rows]
        return rows

    def finalize(
        self, sum_logprob: mx.array, length_penalty: float | None
    ) -> list[tuple[list[int], float, int]]:
        """Best (tokens without eot, sum logprob, length incl. eot) per window."""
        self._close(np.arange(self.b), sum_logprob)
        best = [max(f, key=lambda c: _rank(c[1], len(c[0]), length_penalty)) for f in self.found]
        return [(tokens, score, len(tokens) + 1) for tokens, score in best]

    def _close(self, live: np.ndarray, sum_logprob: mx.array) -> None:
        """Collect the ended candidates recorded so far, then close windows `live` (indices among
        the live ones): where fewer than K candidates ended, its live beams compete too."""
        self._collect()
        history, scores = np.array(self.history), np.array(sum_logprob)
        for i in live.tolist():
            found = self.found[self.windows[i]]
            if len(found) < self.k:
                rows = range(i * self.k, (i + 1) * self.k)
                found.extend((history[r].tolist(), float(scores[r])) for r in rows)

    def _collect(self) -> None:
        """Move the ended candidates of the recorded steps to the host, per original window."""
        for s in self.steps:
            finished = np.array(s.finished)
            if not finished.any():  # most steps: nothing ended, nothing to copy from the device
                continue
            beams, scores, history = np.array(s.beam), np.array(s.score), np.array(s.history)
            for row, col in zip(*np.nonzero(finished), strict=True):
                src = int(beams[row, col]) + row * self.k
                candidate = (history[src].tolist(), float(scores[row, col]))
                self.found[self.windows[row]].append(candidate)
        self.steps = []


def _rank(score: float, length: int, length_penalty: float | None) -> float:
    """openai-whisper's ranking: log-prob over length, or over the Google NMT penalty."""
    if length_penalty is None:
        return score / length
    return score / (((5 + length) / 6) ** length_penalty)
