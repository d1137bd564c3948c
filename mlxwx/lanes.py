"""Split a run's audio into lanes: contiguous regions decoded side by side, one row per lane.

A lane is decoded sequentially with Whisper's seek rule (the next window starts where the last
complete segment ended), so within a lane nothing is cut at window edges, and each window can be
conditioned on the previous one's text. Lanes run side by side as the rows of a batch. A file
longer than its fair share of the run is cut into pieces at its quietest moments, so a batch of
B rows costs at most B - 1 cuts in all, each where nobody speaks; short files are never cut.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from .audio import SAMPLE_RATE

SEARCH_SECONDS = 2.0  # look this far either side of an ideal cut for the quietest moment
MIN_PIECE = 30 * SAMPLE_RATE  # never cut a file into pieces shorter than one window
FRAME = SAMPLE_RATE // 50  # 20 ms energy frames


@dataclass(frozen=True)
class Region:
    """Samples [start, end) of input `source`."""

    source: int
    start: int
    end: int
    follows: bool = False  # continues the lane's previous region in time (keeps its context)

    @property
    def length(self) -> int:
        return self.end - self.start


def quiet_cut(audio: mx.array, target: int, lo: int, hi: int) -> int:
    """A sample near `target` (within SEARCH_SECONDS, inside (lo, hi)) in the quietest stretch:
    the middle of the longest run of 20 ms frames as quiet as the quietest 100 ms there, so a
    pause keeps some silence on both sides of the cut (Whisper drops words that end exactly at
    the edge of its window)."""
    radius = int(SEARCH_SECONDS * SAMPLE_RATE)
    a, b = max(lo + FRAME, target - radius), min(hi - FRAME, target + radius)
    if b - a < 2 * FRAME:
        return target
    seg = np.asarray(audio[a:b], dtype=np.float64)
    n = len(seg) // FRAME
    energy = (seg[: n * FRAME].reshape(n, FRAME) ** 2).mean(axis=1)
    width = min(5, n)
    smooth = np.convolve(energy, np.ones(width) / width, mode="same")
    quiet = smooth <= smooth.min() * 1.5 + 1e-12
    best, run_start = (0, int(np.argmin(smooth))), None
    for i, q in enumerate([*quiet.tolist(), False]):
        if q and run_start is None:
            run_start = i
        elif not q and run_start is not None:
            best = max(best, (i - run_start, (run_start + i - 1) // 2))
            run_start = None
    return a + best[1] * FRAME + FRAME // 2


def split_source(audio: mx.array, source: int, pieces: int) -> list[Region]:
    """`pieces` regions of about equal length covering the input, cut at quiet moments."""
    n = audio.shape[0]
    cuts = [0]
    for i in range(1, pieces):
        cuts.append(quiet_cut(audio, i * n // pieces, cuts[-1], n))
    cuts.append(n)
    return [Region(source, a, b) for a, b in itertools.pairwise(cuts) if b > a]


def plan_lanes(audios: list[mx.array], lanes: int) -> list[list[Region]]:
    """Regions of all inputs assigned to at most `lanes` lanes of about equal total length."""
    total = sum(a.shape[0] for a in audios)
    if total == 0:
        return []
    share = total / lanes
    regions = []
    for source, audio in enumerate(audios):
        n = audio.shape[0]
        pieces = max(1, min(lanes, round(n / share), n // MIN_PIECE))
        regions += split_source(audio, source, pieces)
    plan: list[list[Region]] = [[] for _ in range(min(lanes, len(regions)))]
    loads = [0] * len(plan)
    for region in sorted(regions, key=lambda r: -r.length):  # longest first onto the lightest
        i = loads.index(min(loads))
        plan[i].append(region)
        loads[i] += region.length
    for lane in plan:  # decode each lane in timeline order
        lane.sort(key=lambda r: (r.source, r.start))
    return plan


def plan_chunk_lanes(lengths: list[int], files: list[int], lanes: int) -> list[list[Region]]:
    """VAD chunks (sources `0..n-1`, in file and time order, of `lengths` samples) dealt to at
    most `lanes` lanes as contiguous runs of about equal length, so a lane reads a file's chunks
    in order and each chunk can be conditioned on the previous one's text."""
    total = sum(lengths)
    if total == 0:
        return []
    share = total / lanes
    plan: list[list[Region]] = [[]]
    done = 0
    for source, n in enumerate(lengths):
        if plan[-1] and done + n / 2 > share * len(plan) and len(plan) < lanes:
            plan.append([])
        lane = plan[-1]
        follows = bool(lane) and files[lane[-1].source] == files[source]
        lane.append(Region(source, 0, n, follows))
        done += n
    return plan
