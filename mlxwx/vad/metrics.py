"""Score speech regions against a reference, pyannote.metrics conventions; sweep VAD thresholds.

Definitions (pyannote.metrics `DetectionErrorRate`, `DetectionPrecision`, `DetectionRecall`):
speech is the union of the reference regions and of the hypothesis regions; inside the scored
part of the timeline,
    miss        = reference speech the hypothesis calls non-speech   (seconds)
    false alarm = reference non-speech the hypothesis calls speech   (seconds)
    DetER       = (false alarm + miss) / total reference speech
    precision   = correctly detected speech / hypothesis speech
    recall      = correctly detected speech / reference speech
`VadMetrics.miss` and `.false_alarm` are those durations divided by the total reference speech, so
that `detection_error_rate == miss + false_alarm`.

Scored part: `[0, duration]` when the file duration is given; otherwise, like pyannote.metrics
without a UEM, the extent from the first start to the last end of reference and hypothesis.
Collar: as in pyannote.metrics, `collar` is the *total* width of the zone removed around every
reference boundary (half before, half after) from both reference and hypothesis; the boundaries
are those of the reference regions as passed (pass every speaker's turn, `read_rttm(merge=False)`,
to match pyannote on a multi-speaker annotation; pass the union to match a single-label one).
Durations are exact (interval arithmetic, as pyannote computes them) unless `resolution` asks for
frame-level scoring on a grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mlxwx.vad.base import SpanSeconds, SpeechProbs
from mlxwx.vad.rttm import speech_support

BinarizeFn = Callable[[SpeechProbs, float], list[SpanSeconds]]


@dataclass(frozen=True)
class VadMetrics:
    """Frame-level speech detection scores of one hypothesis (rates are fractions, not %).

    Attributes:
        detection_error_rate: (false alarm + miss) / reference speech.
        miss: missed speech / reference speech.
        false_alarm: false-alarm speech / reference speech.
        precision: detected reference speech / hypothesis speech (1.0 when nothing detected).
        recall: detected reference speech / reference speech (1.0 when there is none).
        reference_speech: seconds of reference speech scored.
        hypothesis_speech: seconds of hypothesis speech scored.
        scored: seconds of timeline scored (after collars).
    """

    detection_error_rate: float
    miss: float
    false_alarm: float
    precision: float
    recall: float
    reference_speech: float
    hypothesis_speech: float
    scored: float


@dataclass(frozen=True)
class SweepRow:
    """One onset threshold of a sweep and its scores."""

    threshold: float
    metrics: VadMetrics
    regions: int  # number of hypothesis regions


def _as_arrays(regions: Sequence[SpanSeconds]) -> tuple[np.ndarray, np.ndarray]:
    merged = speech_support(regions)
    return (
        np.array([r.start for r in merged], dtype=np.float64),
        np.array([r.end for r in merged], dtype=np.float64),
    )


def _inside(starts: np.ndarray, ends: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Which times `t` lie in the disjoint sorted intervals [starts, ends)."""
    i = np.searchsorted(starts, t, side="right") - 1
    ok = i >= 0
    return ok & (t < ends[np.maximum(i, 0)]) if starts.size else np.zeros(t.shape, bool)


def _scored(
    reference: Sequence[SpanSeconds],
    hypothesis: Sequence[SpanSeconds],
    collar: float,
    duration: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The scored timeline as disjoint intervals: the UEM minus the reference collars."""
    if duration is not None:
        lo, hi = 0.0, float(duration)
    else:
        every = [*reference, *hypothesis]
        if not every:
            return np.zeros(0), np.zeros(0)
        lo, hi = min(r.start for r in every), max(r.end for r in every)
    half = 0.5 * collar
    holes = (
        speech_support(SpanSeconds(t - half, t + half) for r in reference for t in (r.start, r.end))
        if collar > 0
        else []
    )
    starts, ends, cursor = [], [], lo
    for hole in holes:
        if hole.start > cursor:
            starts.append(cursor)
            ends.append(min(hole.start, hi))
        cursor = max(cursor, hole.end)
    if cursor < hi:
        starts.append(cursor)
        ends.append(hi)
    s, e = np.array(starts, np.float64), np.array(ends, np.float64)
    keep = e > s
    return s[keep], e[keep]


def _pieces(
    arrays: Sequence[tuple[np.ndarray, np.ndarray]],
    resolution: float | None,
    span: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Points to test membership at and the seconds each stands for.

    Exact: the midpoints of the elementary intervals between all boundaries. Frame level: the
    centres of `resolution`-second frames from 0 (frame k = [k r, (k+1) r))."""
    if resolution is not None:
        first, last = int(np.floor(span[0] / resolution)), int(np.ceil(span[1] / resolution))
        centres = (np.arange(first, last, dtype=np.float64) + 0.5) * resolution
        return centres, np.full(centres.shape, resolution)
    edges = np.unique(np.concatenate([a for pair in arrays for a in pair] or [np.zeros(0)]))
    return 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)


def _rate(part: float, total: float) -> float:
    """pyannote's convention for an empty reference: 0 without error, 1 with any."""
    if total > 0:
        return part / total
    return 0.0 if part == 0 else 1.0


def evaluate(
    reference: Sequence[SpanSeconds],
    hypothesis: Sequence[SpanSeconds],
    *,
    collar: float = 0.0,
    duration: float | None = None,
    resolution: float | None = None,
) -> VadMetrics:
    """Detection error rate, miss, false alarm, precision and recall of `hypothesis`.

    Args:
        reference, hypothesis: speech regions in seconds (may overlap; their union is speech).
        collar: total seconds removed around each reference boundary (pyannote.metrics).
        duration: file length in seconds: scores `[0, duration]`. None scores the extent of
            reference and hypothesis (what pyannote.metrics does without a UEM).
        resolution: None (default) for exact durations, identical to pyannote.metrics; a frame
            length in seconds to score frame by frame instead (each frame labelled by its centre).
    """
    if collar < 0:
        raise ValueError(f"collar must be >= 0 seconds, got {collar}")
    if resolution is not None and resolution <= 0:
        raise ValueError(f"resolution must be > 0 seconds or None, got {resolution}")
    uem = _scored(reference, hypothesis, collar, duration)
    ref, hyp = _as_arrays(reference), _as_arrays(hypothesis)
    span = (float(uem[0][0]), float(uem[1][-1])) if uem[0].size else (0.0, 0.0)
    points, widths = _pieces([uem, ref, hyp], resolution, span)
    scored = _inside(*uem, points)
    is_ref = _inside(*ref, points) & scored
    is_hyp = _inside(*hyp, points) & scored
    total, detected = float(widths[is_ref].sum()), float(widths[is_hyp].sum())
    hit = float(widths[is_ref & is_hyp].sum())
    miss, false_alarm = float(widths[is_ref & ~is_hyp].sum()), float(widths[is_hyp & ~is_ref].sum())
    return _metrics(miss, false_alarm, hit, total, detected, float(widths[scored].sum()))


def combine(metrics: Sequence[VadMetrics]) -> VadMetrics:
    """Scores of several files together: durations summed, then the rates (pyannote.metrics'
    `abs(metric)` over the files it accumulated). No files: the scores of nothing scored."""
    reference = sum(m.reference_speech for m in metrics)
    hypothesis = sum(m.hypothesis_speech for m in metrics)
    hit = sum(m.recall * m.reference_speech for m in metrics if m.reference_speech > 0)
    miss, false_alarm = max(reference - hit, 0.0), max(hypothesis - hit, 0.0)
    return _metrics(miss, false_alarm, hit, reference, hypothesis, sum(m.scored for m in metrics))


def _metrics(
    miss: float, false_alarm: float, hit: float, reference: float, hypothesis: float, scored: float
) -> VadMetrics:
    """Rates from durations (seconds)."""
    return VadMetrics(
        detection_error_rate=_rate(miss + false_alarm, reference),
        miss=_rate(miss, reference),
        false_alarm=_rate(false_alarm, reference),
        precision=hit / hypothesis if hypothesis > 0 else 1.0,
        recall=hit / reference if reference > 0 else 1.0,
        reference_speech=reference,
        hypothesis_speech=hypothesis,
        scored=scored,
    )


def sweep(
    reference: Sequence[SpanSeconds],
    probs: SpeechProbs,
    thresholds: Sequence[float],
    binarize_fn: BinarizeFn,
    *,
    collar: float = 0.0,
    duration: float | None = None,
    resolution: float | None = None,
) -> list[SweepRow]:
    """Score `binarize_fn(probs, onset)` for every onset threshold.

    `binarize_fn` turns probabilities into regions for one onset (the shared regions path, or any
    closure that also fixes offset, padding and minimum durations). `duration` defaults to the
    span the probabilities cover (`offset + frames * hop`), so the whole file is scored.
    """
    if duration is None:
        duration = probs.offset + probs.frames * probs.hop
    rows = []
    for threshold in thresholds:
        regions = binarize_fn(probs, float(threshold))
        metrics = evaluate(
            reference, regions, collar=collar, duration=duration, resolution=resolution
        )
        rows.append(SweepRow(float(threshold), metrics, len(regions)))
    return rows


def format_sweep(rows: Sequence[SweepRow]) -> str:
    """A text table of a sweep (percentages), the lowest detection error rate marked with '*'."""
    names = ("onset", "DetER%", "miss%", "FA%", "prec%", "rec%", "regions")
    header = " ".join(f"{n:>{w}}" for n, w in zip(names, (6, 7, 6, 6, 6, 6, 7), strict=True))
    best = min(range(len(rows)), key=lambda i: rows[i].metrics.detection_error_rate, default=-1)
    lines = [header]
    for i, row in enumerate(rows):
        m = row.metrics
        lines.append(
            f"{row.threshold:6.3f} {100 * m.detection_error_rate:7.2f} {100 * m.miss:6.2f} "
            f"{100 * m.false_alarm:6.2f} {100 * m.precision:6.2f} {100 * m.recall:6.2f} "
            f"{row.regions:7d}{' *' if i == best else ''}"
        )
    return "\n".join(lines)


def format_metrics(m: VadMetrics) -> str:
    """One line: DetER, miss, false alarm, precision, recall in %, and reference speech."""
    return (
        f"DetER {100 * m.detection_error_rate:.2f}%  miss {100 * m.miss:.2f}%  "
        f"FA {100 * m.false_alarm:.2f}%  precision {100 * m.precision:.2f}%  "
        f"recall {100 * m.recall:.2f}%  (reference speech {m.reference_speech:.2f} s)"
    )
