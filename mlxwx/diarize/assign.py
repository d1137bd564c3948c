"""Speakers onto words and segments, from speaker turns.

Rules (WhisperX's, with its gaps filled):
- A word gets the speaker whose turns cover most of it (total overlap in seconds). A tie goes to
  the speaker who talks first in the input. A word of no duration counts as 1 ms around its time.
- A word that no turn overlaps gets no speaker, or, with `fill_nearest`, the speaker of the
  nearest turn. A word without times gets the speaker of the word before it (else after it).
- A word is marked `overlap` when at least half of it lies where two or more speakers talk at once;
  it keeps its dominant speaker.
- A lone word that opens or closes a segment on another speaker than the rest of the segment,
  when the rest's speaker has a turn within 0.5 s of it, takes the rest's speaker: at a turn
  change the word times and the turn edges are each off by a few hundred ms, so the first or last
  word of a turn tends to land on the neighbouring turn (a complaint of WhisperX users).
- A segment whose words change speaker is cut before the first word of each new speaker, where
  that word's times come from the aligner (an interpolated word's times are a guess: no cut
  there). Each part's speaker is the one holding most of its words' time; a segment without
  speakers on its words takes the speaker of its own stretch (same rule as a word).

Turns are indexed once per input: per speaker, the union of its turns as sorted disjoint intervals
with their cumulative time, so each query is a binary search (`np.searchsorted`) over all words at
once, not a scan of the turns per word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..types import Result, Segment, Turn, Word

POINT = 0.0005  # seconds each side of a word of no duration
TIE = 1e-9  # seconds of overlap told apart (sums of turn lengths differ in the last bits)
OVERLAP_SHARE = 0.5  # a word this much in overlapped speech is marked `overlap`
EDGE = 0.5  # seconds: a lone word at a segment's edge this near its neighbour's turn joins it


@dataclass(frozen=True)
class Intervals:
    """Sorted disjoint intervals and the time they cover before each one."""

    starts: np.ndarray
    ends: np.ndarray
    before: np.ndarray  # before[i]: total length of intervals 0..i-1

    @classmethod
    def union(cls, spans: Sequence[tuple[float, float]]) -> Intervals:
        merged: list[list[float]] = []
        for a, b in sorted(spans):
            if b <= a:
                continue
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        arr = np.array(merged, dtype=np.float64).reshape(-1, 2)
        lengths = arr[:, 1] - arr[:, 0]
        before = np.concatenate([[0.0], np.cumsum(lengths)[:-1]]) if len(arr) else np.zeros(0)
        return cls(arr[:, 0], arr[:, 1], before)

    def covered(self, t: np.ndarray) -> np.ndarray:
        """Time covered in (-inf, t], for each t."""
        if not len(self.starts):
            return np.zeros_like(t)
        i = np.searchsorted(self.starts, t, side="right") - 1
        j = np.maximum(i, 0)
        inside = np.clip(t - self.starts[j], 0.0, self.ends[j] - self.starts[j])
        return np.where(i >= 0, self.before[j] + inside, 0.0)

    def overlap(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Time covered within [a, b], for each pair."""
        return self.covered(b) - self.covered(a)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Gap between each [a, b] and the nearest interval (0 when they touch; inf: none)."""
        if not len(self.starts):
            return np.full_like(a, np.inf)
        i = np.searchsorted(self.starts, b, side="right") - 1  # last interval starting <= b
        left = np.where(i >= 0, np.maximum(a - self.ends[np.maximum(i, 0)], 0.0), np.inf)
        k = i + 1
        right = np.where(
            k < len(self.starts), self.starts[np.minimum(k, len(self.starts) - 1)] - b, np.inf
        )
        return np.minimum(left, right)


@dataclass(frozen=True)
class SpeakerIndex:
    """An input's turns indexed for interval queries."""

    labels: tuple[str, ...]  # in order of first turn
    speakers: tuple[Intervals, ...]
    overlapped: Intervals  # where two or more speakers talk at once

    @classmethod
    def of(cls, turns: Sequence[Turn]) -> SpeakerIndex:
        ordered = sorted(turns, key=lambda t: (t.start, t.end))
        labels = tuple(dict.fromkeys(t.speaker for t in ordered if t.end > t.start))
        speakers = tuple(
            Intervals.union([(t.start, t.end) for t in ordered if t.speaker == s]) for s in labels
        )
        return cls(labels, speakers, _overlapped(speakers))

    def assign(
        self, starts: np.ndarray, ends: np.ndarray, fill_nearest: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """For stretches [starts, ends]: the index in `labels` of each one's speaker (-1: none)
        and whether each is mostly overlapped speech."""
        a = np.where(ends > starts, starts, starts - POINT)
        b = np.where(ends > starts, ends, ends + POINT)
        if not self.labels:
            return np.full(len(a), -1), np.zeros(len(a), dtype=bool)
        shares = np.stack([s.overlap(a, b) for s in self.speakers])
        most = shares.max(axis=0)
        best = np.argmax(shares >= most - TIE, axis=0)  # on a tie, the first speaker to talk
        found = most > TIE
        if fill_nearest:
            gaps = np.stack([s.distance(a, b) for s in self.speakers])
            best = np.where(found, best, np.argmin(gaps, axis=0))
        else:
            best = np.where(found, best, -1)
        overlapped = self.overlapped.overlap(a, b) >= OVERLAP_SHARE * (b - a)
        return best, overlapped & found


def _overlapped(speakers: Sequence[Intervals]) -> Intervals:
    """Where two or more of `speakers` are active (each speaker's intervals are disjoint)."""
    starts = np.concatenate([s.starts for s in speakers]) if speakers else np.zeros(0)
    ends = np.concatenate([s.ends for s in speakers]) if speakers else np.zeros(0)
    times = np.concatenate([starts, ends])
    steps = np.concatenate([np.ones(len(starts)), -np.ones(len(ends))])
    order = np.lexsort((steps, times))  # at equal times ends first: touching is not overlap
    times, active = times[order], np.cumsum(steps[order])
    spans = [(times[i], times[i + 1]) for i in range(len(times) - 1) if active[i] >= 2]
    return Intervals.union(spans)


def _word_speakers(
    words: Sequence[Word], index: SpeakerIndex, fill_nearest: bool
) -> list[tuple[str | None, bool]]:
    """(speaker, overlap) of each word; untimed words take a neighbour's speaker."""
    timed = [i for i, w in enumerate(words) if w.start is not None and w.end is not None]
    starts = np.array([words[i].start for i in timed], dtype=np.float64)
    ends = np.array([words[i].end for i in timed], dtype=np.float64)
    best, overlapped = index.assign(starts, ends, fill_nearest)
    out: list[tuple[str | None, bool]] = [(None, False)] * len(words)
    for k, i in enumerate(timed):
        out[i] = (index.labels[best[k]] if best[k] >= 0 else None, bool(overlapped[k]))
    untimed = set(range(len(words))) - set(timed)
    after: list[str | None] = [None] * (len(words) + 1)  # the first timed speaker from i on
    for i in reversed(range(len(words))):
        after[i] = after[i + 1] if i in untimed or out[i][0] is None else out[i][0]
    last: str | None = None
    for i in range(len(words)):  # untimed: the word before, else the first timed one after
        if i in untimed:
            out[i] = (last if last is not None else after[i], False)
        elif out[i][0] is not None:
            last = out[i][0]
    return out


def _runs(words: Sequence[Word]) -> list[tuple[int, int, str]]:
    """Runs of one speaker in `words`: (first, end, speaker); words without one join the run."""
    runs: list[tuple[int, int, str]] = []
    for i, w in enumerate(words):
        if w.speaker is None:
            continue
        if runs and runs[-1][2] == w.speaker:
            runs[-1] = (runs[-1][0], i + 1, w.speaker)
        else:
            runs.append((runs[-1][1] if runs else 0, i + 1, w.speaker))
    return runs


def _edges(words: list[Word], index: SpeakerIndex) -> list[Word]:
    """A lone word opening or closing a segment on another speaker than its neighbour takes the
    neighbour's speaker when that speaker's turns come within `EDGE` seconds of it."""
    for edge in (0, -1):
        runs = _runs(words)  # again after the first edge: a two-word segment is not swapped
        if len(runs) < 2:
            return words
        (a, b, _), (_, _, other) = runs[edge], runs[1 if edge == 0 else -2]
        lone = [i for i in range(a, b) if words[i].speaker is not None]
        w = words[lone[0]] if len(lone) == 1 else None
        if w is None or w.start is None or w.end is None:
            continue
        turns = index.speakers[index.labels.index(other)]
        gap = turns.distance(np.array([w.start]), np.array([w.end]))[0]
        if gap <= EDGE:
            words[lone[0]] = replace(w, speaker=other)
    return words


def _cuts(words: Sequence[Word]) -> list[int]:
    """Indices of the words before which `words` change speaker, where word times support it."""
    cuts, current = [], None
    for i, w in enumerate(words):
        if w.speaker is None:
            continue
        if current is not None and w.speaker != current and not w.interpolated and i > 0:
            cuts.append(i)
        if current is None or not w.interpolated:
            current = w.speaker
    return cuts


def _dominant(words: Sequence[Word]) -> str | None:
    """The speaker holding most of `words`' time (ties: the first of them to speak)."""
    time: dict[str, float] = {}
    for w in words:
        if w.speaker is not None and w.start is not None and w.end is not None:
            time[w.speaker] = time.get(w.speaker, 0.0) + max(w.end - w.start, POINT)
    return max(time, key=lambda s: time[s]) if time else None


def _segment_speakers(
    segments: Sequence[Segment], index: SpeakerIndex, fill_nearest: bool
) -> list[tuple[str | None, bool]]:
    starts = np.array([s.start for s in segments], dtype=np.float64)
    ends = np.array([s.end for s in segments], dtype=np.float64)
    best, overlapped = index.assign(starts, ends, fill_nearest)
    return [
        (index.labels[b] if b >= 0 else None, bool(o))
        for b, o in zip(best, overlapped, strict=True)
    ]


def assign_speakers(
    result: Result,
    turns: Sequence[Turn],
    fill_nearest: bool = False,
    embeddings: dict[str, tuple[float, ...]] | None = None,
) -> Result:
    """`result` with speakers from `turns` on its words and segments (see the module's rules),
    segments cut where their words change speaker; `embeddings` (speaker -> vector) kept in
    the result when given."""
    index = SpeakerIndex.of(turns)
    words = [w for s in result.segments for w in s.words]
    labelled = _word_speakers(words, index, fill_nearest)
    parts: list[Segment] = []
    at = 0
    for segment in result.segments:
        mine, at = labelled[at : at + len(segment.words)], at + len(segment.words)
        worded = _edges(
            [
                replace(w, speaker=sp, overlap=o)
                for w, (sp, o) in zip(segment.words, mine, strict=True)
            ],
            index,
        )
        cuts = _cuts(worded)
        parts += (
            segment.with_words(worded).cut(cuts)
            if cuts
            else [replace(segment, words=tuple(worded))]
        )
    own = _segment_speakers(parts, index, fill_nearest)
    segments = []
    for part, (speaker, overlap) in zip(parts, own, strict=True):
        if part.words and _dominant(part.words) is not None:
            speaker = _dominant(part.words)
            overlap = any(w.overlap for w in part.words)
        segments.append(replace(part, speaker=speaker, overlap=overlap))
    word_segments = tuple(w for s in segments for w in s.words) if result.word_segments else ()
    return replace(
        result,
        segments=tuple(segments),
        word_segments=word_segments,
        speaker_embeddings=embeddings if embeddings is not None else result.speaker_embeddings,
    )
