"""The one path from frame probabilities to speech regions and <= `chunk_size` chunks.

`binarize` is a single frame-by-frame state machine (the one silero-vad's `get_speech_timestamps`
runs, generalised): hysteresis between `onset` and `offset`, a minimum silence that must pass
before a region ends, a minimum speech length, a maximum region length with two ways to cut a
region that grows past it, and silero's padding rule. Times are counted in samples at 16 kHz
(frame `i` starts at sample `round((offset + i * hop) * 16000)`), so with silero's parameters
(`VadOptions.silero()`) the regions are those of `silero_vad.get_speech_timestamps`, sample for
sample. With `cut="min_score"` it is WhisperX's pyannote binarization except for details that do
not matter to it: onset is `>=` (not `>`), frame start times are used (give pyannote scores an
`offset` of half a frame for its frame middles), the frame where a cut happens may also start a
silence, and a padded region is never let grow past `max_speech`. `merge_chunks` then
groups regions for the recogniser, either as WhisperX does (one span from the first region's start
to the last one's end, silence between included) or as faster-whisper's batched mode does (the
speech samples only, concatenated, with a map back).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import mlx.core as mx
import numpy as np

from .base import SAMPLE_RATE, SpanSeconds, SpeechProbs, check_bounds

SILERO_NEG_GAP = 0.15  # silero-vad: offset = max(onset - 0.15, 0.01) when none is given


@dataclass(frozen=True)
class VadOptions:
    """How probabilities become regions and chunks.

    Attributes:
      onset: a frame with probability >= onset starts speech.
      offset: while in speech, a frame with probability < offset starts a silence; None means
        max(onset - 0.15, 0.01), silero-vad's `neg_threshold` (pyannote/WhisperX use 0.363).
      min_speech: a region that ends in silence and is not longer than this is dropped (s).
      min_silence: a silence must last this long (from its first frame below offset to a later
        frame below offset, before any frame >= onset) for the region to end there (s).
      pad: regions grow by this much on each side; two regions closer than 2 * pad share the
        gap between them half and half (silero-vad's rule, so regions never overlap) (s).
      max_speech: a region is cut before it would grow, padded, past this length (s; inf: never).
      chunk_size: the longest chunk `merge_chunks` makes (s of audio the chunk holds).
      merge: "span" (WhisperX: a chunk spans its regions, gaps included) or "concat"
        (faster-whisper batched: a chunk holds only the speech samples, concatenated).
      cut: how a region too long is cut. "min_score" (WhisperX): at the frame with the lowest
        probability in the second half of the running region; the region goes on from there.
        "silence" (silero-vad): at the longest silence inside the region longer than
        `cut_min_silence`, the region going on after that silence; with none, at the current
        frame, and the region ends there.
      cut_min_silence: shortest silence the "silence" cut considers (s; silero-vad's 98 ms).
    """

    onset: float = 0.5
    offset: float | None = None
    min_speech: float = 0.0
    min_silence: float = 0.0
    pad: float = 0.0
    max_speech: float = 30.0
    chunk_size: float = 30.0
    merge: Literal["span", "concat"] = "span"
    cut: Literal["min_score", "silence"] = "min_score"
    cut_min_silence: float = 0.098

    def __post_init__(self) -> None:
        for name in ("onset", "offset"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        seconds = ("min_speech", "min_silence", "pad", "cut_min_silence")
        check_bounds(self, seconds, 0, unit=" seconds")
        check_bounds(self, ("max_speech", "chunk_size"), 0, strict=True, unit=" seconds")
        if self.merge not in ("span", "concat"):
            raise ValueError(f"merge must be 'span' or 'concat', got {self.merge!r}")
        if self.cut not in ("min_score", "silence"):
            raise ValueError(f"cut must be 'min_score' or 'silence', got {self.cut!r}")

    @property
    def threshold_off(self) -> float:
        """The offset in force: `offset`, or silero-vad's default below `onset`."""
        if self.offset is not None:
            return self.offset
        return max(self.onset - SILERO_NEG_GAP, 0.01)

    @classmethod
    def silero(cls, **changes: Any) -> VadOptions:
        """silero-vad's `get_speech_timestamps` defaults (threshold 0.5, min_speech 250 ms,
        min_silence 100 ms, pad 30 ms, no max length, its silence cut), with `changes`."""
        base = cls(min_speech=0.25, min_silence=0.1, pad=0.03, max_speech=math.inf, cut="silence")
        return replace(base, **changes)


def _samples(seconds: float) -> float:
    """Seconds -> samples, rounded to 1e-3 sample so that 0.098 s is 1568 like 98 ms is."""
    return round(seconds * SAMPLE_RATE, 3) if math.isfinite(seconds) else seconds


@dataclass
class _Machine:
    """silero-vad's speech/silence state machine over frame start times in samples."""

    o: VadOptions
    hop: float  # samples between frames
    out: list[list[int]] = field(default_factory=list)
    triggered: bool = False
    start: int = 0
    silence_from: int | None = None  # first frame below offset of the running silence
    silences: list[tuple[int, int]] = field(default_factory=list)  # (start, length) inside
    since: list[tuple[int, float]] = field(default_factory=list)  # (time, score) after start

    def __post_init__(self) -> None:
        o = self.o
        self.on, self.off = o.onset, o.threshold_off
        self.min_speech, self.min_silence = _samples(o.min_speech), _samples(o.min_silence)
        self.max_len = _samples(o.max_speech) - self.hop - 2 * _samples(o.pad)
        self.cut_silence = _samples(o.cut_min_silence)

    def _stop(self) -> None:
        self.triggered, self.silence_from = False, None
        self.silences, self.since = [], []

    def step(self, t: int, y: float) -> None:
        if y >= self.on and self.silence_from is not None:  # speech is back
            gap = t - self.silence_from
            if gap > self.cut_silence:
                self.silences.append((self.silence_from, gap))
            self.silence_from = None
        if y >= self.on and not self.triggered:
            self.triggered, self.start, self.since = True, t, []
            return
        if self.triggered and t - self.start > self.max_len and not self._cut(t):
            return
        if y < self.off and self.triggered:
            if self.silence_from is None:
                self.silence_from = t
            if t - self.silence_from >= self.min_silence:
                if self.silence_from - self.start > self.min_speech:
                    self.out.append([self.start, self.silence_from])
                self._stop()
                return
        if self.triggered and self.o.cut == "min_score":
            self.since.append((t, y))

    def _cut(self, t: int) -> bool:
        """Cut the running region at frame time `t`; False when the region ended here."""
        if self.o.cut == "silence":
            if not self.silences:
                self.out.append([self.start, t])
                self._stop()
                return False
            end, length = max(self.silences, key=lambda s: s[1])  # the first longest
            self.out.append([self.start, end])
            self.start, self.silence_from, self.silences = end + length, None, []
            return True
        half = len(self.since) // 2
        if not self.since:
            self.out.append([self.start, t])
            self.start = t
            return True
        scores = [y for _, y in self.since[half:]]
        m = half + int(np.argmin(scores))
        at = self.since[m][0]
        if self.silence_from is not None and at >= self.silence_from:
            self.out.append([self.start, self.silence_from])  # the cut falls in this silence
            self._stop()
            return False
        self.out.append([self.start, at])
        self.start, self.since = at, self.since[m + 1 :]
        return True

    def finish(self, total: int) -> list[list[int]]:
        if self.triggered and total - self.start > self.min_speech:
            self.out.append([self.start, total])
        self._stop()
        return self.out


def _pad(regions: list[list[int]], pad: float, total: int) -> None:
    """silero-vad's padding, in place: neighbours closer than 2 * pad split the gap."""
    for i, r in enumerate(regions):
        if i == 0:
            r[0] = int(max(0, r[0] - pad))
        if i == len(regions) - 1:
            r[1] = int(min(total, r[1] + pad))
            break
        nxt = regions[i + 1]
        gap = nxt[0] - r[1]
        if gap < 2 * pad:
            r[1] += int(gap // 2)
            nxt[0] = int(max(0, nxt[0] - gap // 2))
        else:
            r[1] = int(min(total, r[1] + pad))
            nxt[0] = int(max(0, nxt[0] - pad))


def binarize(p: SpeechProbs, o: VadOptions, duration: float) -> list[SpanSeconds]:
    """Speech regions (seconds, sorted, disjoint) of probabilities `p` over `duration` seconds.

    A region still open at the last frame ends at `duration`.
    """
    scores = np.asarray(p.probs, dtype=np.float32).astype(np.float64).tolist()
    hop = p.hop * SAMPLE_RATE
    times = np.rint(p.offset * SAMPLE_RATE + np.arange(len(scores)) * hop).astype(np.int64)
    total = round(duration * SAMPLE_RATE)
    machine = _Machine(o, hop)
    for t, y in zip(times.tolist(), scores, strict=True):
        machine.step(t, y)
    regions = machine.finish(total)
    _pad(regions, _samples(o.pad), total)
    return [SpanSeconds(s / SAMPLE_RATE, e / SAMPLE_RATE) for s, e in regions]


@dataclass(frozen=True)
class Chunk:
    """Audio handed to the recogniser as one input: pieces of the original timeline.

    "span" chunks have one piece (first region start to last region end); "concat" chunks have
    one piece per speech region. `regions` are the speech regions the chunk holds.
    """

    pieces: tuple[SpanSeconds, ...]
    regions: tuple[SpanSeconds, ...] = ()

    @property
    def start(self) -> float:
        return self.pieces[0].start

    @property
    def end(self) -> float:
        return self.pieces[-1].end

    @property
    def duration(self) -> float:
        """Seconds of audio the chunk holds (pieces concatenated)."""
        return sum(p.duration for p in self.pieces)

    def to_original(self, t: float, *, end: bool = False) -> float:
        """Seconds from the chunk's own audio start -> seconds on the original timeline.

        A time on the seam of two pieces belongs to the later piece, or to the earlier one with
        `end=True` (for the end of a segment or word).
        """
        offsets = np.cumsum([0.0] + [p.duration for p in self.pieces[:-1]]).tolist()
        i = (bisect.bisect_left if end else bisect.bisect_right)(offsets, t) - 1
        i = min(max(i, 0), len(self.pieces) - 1)
        return self.pieces[i].start + (t - offsets[i])


def _split(regions: Sequence[SpanSeconds], limit: int) -> list[tuple[int, int]]:
    """Regions in samples, sorted, any longer than `limit` samples cut into equal pieces."""
    out = []
    for r in sorted(regions, key=lambda r: r.start):
        s, e = round(r.start * SAMPLE_RATE), round(r.end * SAMPLE_RATE)
        n = max(1, -(-(e - s) // limit))
        bounds = [s + (e - s) * k // n for k in range(n + 1)]
        out += [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
    return out


def merge_chunks(regions: list[SpanSeconds], o: VadOptions) -> list[Chunk]:
    """Group consecutive regions into chunks of at most `o.chunk_size` seconds of audio.

    A region longer than `chunk_size` (possible when `max_speech` is larger) is first cut into
    equal parts. No regions: no chunks.
    """
    limit = round(o.chunk_size * SAMPLE_RATE)
    chunks: list[Chunk] = []
    group: list[tuple[int, int]] = []
    held = 0  # samples the group's chunk would hold
    for s, e in _split(regions, limit):
        grown = e - group[0][0] if o.merge == "span" and group else held + e - s
        if group and grown > limit:
            chunks.append(_chunk(group, o.merge))
            group, grown = [], e - s
        group.append((s, e))
        held = grown
    if group:
        chunks.append(_chunk(group, o.merge))
    return chunks


def _chunk(group: list[tuple[int, int]], merge: str) -> Chunk:
    regions = tuple(SpanSeconds(s / SAMPLE_RATE, e / SAMPLE_RATE) for s, e in group)
    if merge == "span":
        return Chunk((SpanSeconds(regions[0].start, regions[-1].end),), regions)
    return Chunk(regions, regions)


def chunk_audio(audio: mx.array, chunk: Chunk) -> mx.array:
    """The chunk's samples: (n,) float32, its pieces of `audio` concatenated."""
    parts = [audio[round(p.start * SAMPLE_RATE) : round(p.end * SAMPLE_RATE)] for p in chunk.pieces]
    return parts[0] if len(parts) == 1 else mx.concatenate(parts)
