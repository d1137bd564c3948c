"""Lanes: the rows of a batch, each reading a run of consecutive chunks of one input.

A lane is decoded sequentially with Whisper's seek rule (the next window starts where the last
complete segment ended), so within a lane nothing is cut at window edges, and each window can be
conditioned on the previous one's text (kept across the lane's chunks). Lanes run side by side as
the rows of a batch. When a lane is idle and no input is left to read, another lane gives it the
second half of its work (`Lane.share`): later chunks of its run, or, for a long chunk (an input
read without VAD), the rest of the chunk cut at its quietest moment, never into pieces shorter
than one window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np

from ..audio import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE
from ..types import AudioChunk

SEARCH_SECONDS = 2.0  # look this far either side of an ideal cut for the quietest moment
MIN_PIECE = N_SAMPLES  # never cut a chunk into pieces shorter than one window
FRAME = SAMPLE_RATE // 50  # 20 ms energy frames


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


@dataclass
class Lane:
    """A lane's position: the chunk being read and the next window's first sample in it."""

    chunks: list[AudioChunk]
    index: int = 0
    pos: int = 0
    context: list[int] = field(default_factory=list)  # previous window's text tokens

    @property
    def chunk(self) -> AudioChunk:
        return self.chunks[self.index]

    @property
    def active(self) -> bool:
        return self.index < len(self.chunks)

    @property
    def at(self) -> int:
        """The next window's first sample on the input's timeline."""
        return self.chunk.file_spans(self.pos, self.pos + 1)[0].start

    @property
    def remaining(self) -> int:
        """Samples left to read: the rest of the current chunk and the later chunks."""
        if not self.active:
            return 0
        return self.chunk.length - self.pos + sum(c.length for c in self.chunks[self.index + 1 :])

    def advance(self, samples: int) -> tuple[int, AudioChunk | None]:
        """Move on by `samples` (at least one mel frame); a chunk with less than one frame left
        is finished. Returns the samples now behind the lane and the chunk finished, if any."""
        before = self.pos
        self.pos = min(self.pos + max(samples, HOP_LENGTH), self.chunk.length)
        covered = self.pos - before
        if self.chunk.length - self.pos >= HOP_LENGTH:
            return covered, None
        done = self.chunk
        covered += done.length - self.pos
        self.index += 1
        self.pos = 0
        return covered, done

    def share(self) -> list[AudioChunk]:
        """Give away about half of the remaining work, as chunks for another lane (none when
        the work cannot be split): later chunks of the run, else the rest of the current chunk
        cut at a quiet moment, when both parts hold at least MIN_PIECE samples."""
        later = self.chunks[self.index + 1 :]
        if later:
            left, best = self.chunk.length - self.pos, (self.remaining, len(later))
            for k, c in enumerate(later):  # keep later[:k]: the most even split
                best = min(best, (abs(self.remaining - 2 * left), k))
                left += c.length
            given = later[best[1] :]
            del self.chunks[self.index + 1 + best[1] :]
            return given
        rest = self.chunk.length - self.pos
        if rest < 2 * MIN_PIECE:
            return []
        lo, hi = self.pos + MIN_PIECE, self.chunk.length - MIN_PIECE
        at = min(max(quiet_cut(self.chunk.audio, self.pos + rest // 2, lo, hi), lo), hi)
        kept, given_chunk = self.chunk.split(at)
        self.chunks[self.index] = kept
        return [given_chunk]
