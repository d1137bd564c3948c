"""Dynamic time warping and a median filter along time, in numpy.

`dtw` finds the cheapest monotonic path through a cost matrix one anti-diagonal at a time (each a
whole-slice numpy step, no Python loop per cell); Whisper's token timing walks it through the
negated attention of its alignment heads (`mlxwx.asr.timing`).
"""

from __future__ import annotations

import numpy as np


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a window of `width` (odd) along the last axis, edges reflected."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    view = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.partition(view, pad, axis=-1)[..., pad]


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotonic path through `cost` (N, M) from (0, 0) to (N-1, M-1), moving
    one token, one frame or both at a time: its (token, frame) indices. Ties go as in
    openai-whisper's `dtw_cpu` (diagonal, then token, then frame).

    Cell (i, j) of the accumulated cost depends on (i-1, j-1), (i-1, j) and (i, j-1): every
    anti-diagonal i + j = d follows from the two before it. Row d of the skewed arrays holds
    diagonal d, indexed by i, so each step is whole-slice arithmetic."""
    n, m = cost.shape
    acc = np.full((n + m + 1, n + 1), np.inf)  # acc[d, i] = accumulated cost at (i, d - i)
    move = np.zeros((n + m + 1, n + 1), dtype=np.int8)
    acc[0, 0] = 0.0
    for d in range(2, n + m + 1):
        lo, hi = max(1, d - m), min(n, d - 1)
        if lo > hi:
            continue
        i = np.arange(lo, hi + 1)
        c0, c1, c2 = acc[d - 2, lo - 1 : hi], acc[d - 1, lo - 1 : hi], acc[d - 1, lo : hi + 1]
        step = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2))
        best = np.choose(step, (c0, c1, c2))
        acc[d, lo : hi + 1] = cost[i - 1, d - i - 1] + best
        move[d, lo : hi + 1] = step
    return _backtrack(move, n, m)


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
