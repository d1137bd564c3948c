"""Dynamic time warping and a median filter along time, in numpy.

`dtw` finds the cheapest monotonic path through a cost matrix one anti-diagonal at a time (each a
whole-slice numpy step, no Python loop per cell); Whisper's token timing walks it through the
negated attention of its alignment heads (`mlxwx.asr.timing`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SWEEP_BYTES = 1 << 26  # the padded costs, accumulated costs and moves of matrices swept together


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a window of `width` (odd) along the last axis, edges reflected: the window's
    `width` shifted copies sorted elementwise by an odd-even transposition network (`width`
    rounds of minimum/maximum pairs; 2.5x faster than partitioning each window at width 7)."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    n = x.shape[-1]
    v = [padded[..., i : i + n] for i in range(width)]
    for r in range(width):
        for i in range(r % 2, width - 1, 2):
            v[i], v[i + 1] = np.minimum(v[i], v[i + 1]), np.maximum(v[i], v[i + 1])
    return v[pad]


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotonic path through `cost` (N, M) from (0, 0) to (N-1, M-1), moving
    one token, one frame or both at a time: its (token, frame) indices. Ties go as in
    openai-whisper's `dtw_cpu` (diagonal, then token, then frame)."""
    return dtw_batch([cost])[0]


def dtw_batch(costs: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """`dtw` of each cost matrix, several in one sweep (as many as fit in SWEEP_BYTES).

    Cell (i, j) of the accumulated cost depends on (i-1, j-1), (i-1, j) and (i, j-1): every
    anti-diagonal i + j = d follows from the two before it. Row d of the skewed arrays holds
    diagonal d, indexed by i, so each step is whole-slice arithmetic over every matrix at once.
    The matrices are padded with +inf to the largest: a cell of a matrix depends only on cells
    above and left of it, so the padding changes none of its cells."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    at = 0
    while at < len(costs):
        n, m, size = 0, 0, 0
        for c in costs[at:]:
            n, m = max(n, c.shape[0]), max(m, c.shape[1])
            if size and (size + 1) * ((n + m + 1) * (n + 1) * 9 + n * m * 8) > SWEEP_BYTES:
                break
            size += 1
        out += _sweep(costs[at : at + size])
        at += size
    return out


def _sweep(costs: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    n, m = max(c.shape[0] for c in costs), max(c.shape[1] for c in costs)
    cost = np.full((len(costs), n, m), np.inf)
    for k, c in enumerate(costs):
        cost[k, : c.shape[0], : c.shape[1]] = c
    acc = np.full((len(costs), n + m + 1, n + 1), np.inf)  # acc[k, d, i]: cell (i, d - i)
    move = np.zeros((len(costs), n + m + 1, n + 1), dtype=np.int8)
    acc[:, 0, 0] = 0.0
    for d in range(2, n + m + 1):
        lo, hi = max(1, d - m), min(n, d - 1)
        if lo > hi:
            continue
        i = np.arange(lo, hi + 1)
        c0, c1 = acc[:, d - 2, lo - 1 : hi], acc[:, d - 1, lo - 1 : hi]
        c2 = acc[:, d - 1, lo : hi + 1]
        step = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2))
        best = np.choose(step, (c0, c1, c2))
        acc[:, d, lo : hi + 1] = cost[:, i - 1, d - i - 1] + best
        move[:, d, lo : hi + 1] = step
    return [_backtrack(move[k], *c.shape) for k, c in enumerate(costs)]


def _backtrack(move: np.ndarray, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    i, j, path = n, m, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        step = 2 if i == 0 else 1 if j == 0 else int(move[i + j, i])
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    out = np.array(path[::-1]).reshape(-1, 2)
    return out[:, 0], out[:, 1]
