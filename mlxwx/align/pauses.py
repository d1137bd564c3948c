"""Pauses in the audio, and word starts moved onto their ends.

A word cannot start inside a pause, and the speech onset that ends a pause starts a word. The
cross-attention's word starts are off by 100-200 ms either way depending on the model (tiny.en
late, base early on words said apart), so where a pause lies within `REACH` of a word's start,
the start becomes the pause's end, and the previous word, if it ran into the pause, ends at the
pause's start. Words and pauses are matched monotonically (a small dynamic programme), each pause
to at most one word; a word with no pause near keeps its start (continuous speech). This is what
stable-ts does with its silence suppression; figures in bench/RESULTS.md.

Pauses: runs of 10 ms frames quieter than floor + `REL` x (peak - floor) dB, floor and peak the
5th and 95th percentiles of the frame levels around the words, at least `MIN_PAUSE` long; louder
blips of at most `BRIDGE` inside a quiet run (clicks, noise bursts) do not split it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..types import SAMPLE_RATE, Word

HOP = 0.01  # seconds per level frame
REL = 0.15  # quiet: below floor + REL * (peak - floor) dB
MIN_PAUSE = 0.1  # seconds: shorter quiet runs (stop closures) are not pauses
BRIDGE = 0.03  # seconds: louder blips this short inside a quiet run do not split it
REACH = 0.2  # seconds: how far a word start may move onto a pause

Pause = tuple[float, float]


def frame_levels(audio: np.ndarray) -> np.ndarray:
    """dB level of each 10 ms frame of (samples,) 16 kHz audio, over 20 ms (the frame and the
    next)."""
    hop = round(HOP * SAMPLE_RATE)
    blocks = audio[: audio.size // hop * hop].reshape(-1, hop).astype(np.float64)
    energy = (blocks**2).sum(axis=1)
    pairs = energy + np.append(energy[1:], 0.0)
    return 10 * np.log10(pairs / (2 * hop) + 1e-10)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the runs of True in `mask`."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def find_pauses(audio: np.ndarray, offset: float = 0.0) -> list[Pause]:
    """(start, end) seconds (from `offset`) of the pauses of (samples,) 16 kHz audio that a
    sound ends (frames are 20 ms long, so a pause ends 10 ms before the sound's onset)."""
    db = frame_levels(audio)
    if db.size < 2:
        return []
    floor, peak = np.percentile(db, 5), np.percentile(db, 95)
    quiet = db < floor + REL * (peak - floor)
    for a, b in _runs(~quiet):  # a short loud run between two quiet ones joins them
        if a > 0 and b < quiet.size and (b - a) * HOP <= BRIDGE:
            quiet[a:b] = True
    return [  # a quiet run reaching the end is left out: no onset ends it
        (offset + a * HOP, offset + b * HOP)
        for a, b in _runs(quiet)
        if (b - a) * HOP >= MIN_PAUSE and b < quiet.size
    ]


def match(starts: np.ndarray, pauses: Sequence[Pause]) -> dict[int, int]:
    """{word: pause}: the monotonic matching of word starts to pauses of least total distance
    (0 inside a pause), a word left unmatched costing `REACH`, a match farther than that barred."""
    n, m = starts.size, len(pauses)
    a = np.array([p[0] for p in pauses])
    b = np.array([p[1] for p in pauses])
    dist = np.maximum(0.0, np.maximum(a[None] - starts[:, None], starts[:, None] - b[None]))
    cost = np.full((n + 1, m + 1), np.inf)
    cost[0, :] = 0.0
    move = np.zeros((n + 1, m + 1), dtype=np.int8)  # 0: word unmatched, 1: pause unused, 2: match
    for i in range(1, n + 1):
        for j in range(m + 1):
            best, step = cost[i - 1, j] + REACH, 0
            if j and cost[i, j - 1] < best:
                best, step = cost[i, j - 1], 1
            if j and dist[i - 1, j - 1] <= REACH and cost[i - 1, j - 1] + dist[i - 1, j - 1] < best:
                best, step = cost[i - 1, j - 1] + dist[i - 1, j - 1], 2
            cost[i, j], move[i, j] = best, step
    out, i, j = {}, n, m
    while i > 0:
        step = move[i, j]
        if step == 2:
            out[i - 1] = j - 1
        i, j = (i - 1, j - 1) if step == 2 else (i, j - 1) if step == 1 else (i - 1, j)
    return out


def snap_to_pauses(words: list[Word], pauses: Sequence[Pause]) -> list[Word]:
    """`words` (timed, in order, on the input's timeline) with their starts moved onto nearby
    pauses' ends; starts stay in order and every word ends at or after its start."""
    timed = [w for w in words if w.start is not None and w.end is not None]
    if not words or len(timed) < len(words) or not pauses:
        return words
    lo, hi = timed[0].start - REACH, timed[-1].start + REACH  # type: ignore[operator]
    near = [p for p in pauses if p[1] >= lo and p[0] <= hi]  # the programme is words x pauses
    if not near:
        return words
    starts = np.array([w.start for w in words], dtype=np.float64)
    ends = np.array([w.end for w in words], dtype=np.float64)
    for k, j in match(starts, near).items():
        pause_start, pause_end = near[j]
        starts[k] = pause_end
        if k and starts[k - 1] < pause_start < ends[k - 1]:
            ends[k - 1] = pause_start
    starts = np.maximum.accumulate(starts)
    ends = np.maximum(ends, starts)
    return [
        replace(w, start=float(s), end=float(e))
        for w, s, e in zip(words, starts, ends, strict=True)
    ]


def window_pauses(audio: np.ndarray, first: int, last: int) -> list[Pause]:
    """The pauses of `audio` (the input's samples) around samples [first, last), `REACH` more
    on each side, in seconds on the input's timeline."""
    margin = round(REACH * SAMPLE_RATE)
    a, b = max(0, first - margin), min(audio.size, last + margin)
    return find_pauses(audio[a:b], a / SAMPLE_RATE)
