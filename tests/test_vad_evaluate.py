"""VAD scoring (mlxwx.vad.metrics, mlxwx.vad.rttm) against pyannote.metrics and by hand."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlxwx.vad.base import SpanSeconds, SpeechProbs
from mlxwx.vad.metrics import VadMetrics, evaluate, format_metrics, format_sweep, sweep
from mlxwx.vad.rttm import RttmError, read_rttm, speech_support, to_rttm, write_rttm

DATA = Path(__file__).parent / "data"
SAMPLE_RTTM = DATA / "sample.rttm"


def _threshold(probs: SpeechProbs, onset: float) -> list[SpanSeconds]:
    """Plain thresholding (no hysteresis): regions where probs >= onset."""
    above = np.concatenate([[False], np.array(probs.probs) >= onset, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    return [
        SpanSeconds(probs.offset + s * probs.hop, probs.offset + e * probs.hop)
        for s, e in zip(edges[::2], edges[1::2], strict=True)
    ]


def _hypotheses(reference: list[SpanSeconds]) -> dict[str, list[SpanSeconds]]:
    rng = np.random.default_rng(0)
    jitter = [
        SpanSeconds(r.start + rng.uniform(-0.4, 0.4), r.end + rng.uniform(-0.4, 0.4))
        for r in reference
    ]
    return {
        "jittered": [*jitter, SpanSeconds(0.5, 1.2), SpanSeconds(29.5, 31.0)],
        "split": [SpanSeconds(t, t + 0.7) for t in np.arange(0.0, 30.0, 1.0)],
        "empty": [],
        "everything": [SpanSeconds(0.0, 30.0)],
    }


def test_read_rttm_union_and_turns() -> None:
    turns = read_rttm(SAMPLE_RTTM, merge=False)["sample"]
    speech = read_rttm(SAMPLE_RTTM)["sample"]
    assert len(turns) == len(SAMPLE_RTTM.read_text().splitlines())
    assert all(a.end <= b.start for a, b in itertools.pairwise(speech))
    # The union covers exactly the frames some turn covers.
    t = np.arange(0, 30, 0.001) + 0.0005
    in_turns = np.any([(t >= r.start) & (t < r.end) for r in turns], axis=0)
    in_speech = np.any([(t >= r.start) & (t < r.end) for r in speech], axis=0)
    assert np.array_equal(in_turns, in_speech)
    assert len(speech) < len(turns)  # sample.rttm has overlapping turns


def test_rttm_round_trip_and_errors(tmp_path: Path) -> None:
    regions = {"a": [SpanSeconds(0.5, 1.25), SpanSeconds(2.0, 3.0)], "b": []}
    path = write_rttm(tmp_path / "out" / "hyp.rttm", regions)
    assert read_rttm(path) == {"a": regions["a"]}
    assert not list(path.parent.glob(".*"))  # no temporary file left behind
    with pytest.raises(ValueError, match="file id"):
        to_rttm({"has space": [SpanSeconds(0, 1)]})
    bad = tmp_path / "bad.rttm"
    bad.write_text("SPEAKER x 1 0.0 1.0 <NA> <NA> s <NA> <NA>\nSPEAKER x 1 zero 1.0\n")
    with pytest.raises(RttmError, match=r"bad\.rttm:2"):
        read_rttm(bad)
    with pytest.raises(RttmError, match="cannot read"):
        read_rttm(tmp_path / "missing.rttm")


def test_speech_support() -> None:
    regions = [SpanSeconds(3, 4), SpanSeconds(0, 1), SpanSeconds(0.5, 2), SpanSeconds(2, 2.5)]
    assert speech_support(regions) == [SpanSeconds(0, 2.5), SpanSeconds(3, 4)]


def test_by_hand_with_collar() -> None:
    ref, hyp = [SpanSeconds(1, 3)], [SpanSeconds(2, 4)]
    m = evaluate(ref, hyp, duration=5)
    assert (m.miss, m.false_alarm, m.detection_error_rate) == (0.5, 0.5, 1.0)
    assert (m.precision, m.recall, m.scored) == (0.5, 0.5, 5.0)
    # collar 1 s = 0.5 s each side of 1 and 3: ref [1.5, 2.5], hyp [2, 2.5] + [3.5, 4].
    m = evaluate(ref, hyp, duration=5, collar=1.0)
    assert (m.reference_speech, m.hypothesis_speech, m.scored) == (1.0, 1.0, 3.0)
    assert (m.miss, m.false_alarm, m.precision) == (0.5, 0.5, 0.5)
    # No UEM: only the extent [1, 4] is scored, as pyannote.metrics does.
    assert evaluate(ref, [SpanSeconds(0.0, 0.5), *hyp]).scored == 4.0
    assert evaluate(ref, hyp).scored == 3.0


def test_empty_conventions() -> None:
    assert evaluate([], [], duration=10) == VadMetrics(0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 10.0)
    m = evaluate([], [SpanSeconds(1, 2)], duration=10)
    assert (m.detection_error_rate, m.false_alarm, m.precision) == (1.0, 1.0, 0.0)
    m = evaluate([SpanSeconds(1, 2)], [], duration=10)
    assert (m.detection_error_rate, m.miss, m.precision, m.recall) == (1.0, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="collar"):
        evaluate([], [], collar=-1)
    with pytest.raises(ValueError, match="resolution"):
        evaluate([], [], resolution=0)


@pytest.mark.parametrize("collar", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("duration", [None, 30.0])
def test_matches_pyannote_metrics(collar: float, duration: float | None) -> None:
    """Same numbers as pyannote.metrics' DetectionErrorRate/Precision/Recall on sample.rttm, with
    the reference as the single-label union and as the two speakers' turns (collars differ)."""
    pytest.importorskip(
        "pyannote.metrics", reason="pyannote.metrics missing: pip install -e '.[dev]'"
    )
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.detection import (
        DetectionErrorRate,
        DetectionPrecision,
        DetectionRecall,
    )

    def annotation(regions: list[SpanSeconds], labels: list[str] | None = None) -> Annotation:
        out = Annotation(uri="sample")
        for i, r in enumerate(regions):
            out[Segment(r.start, r.end), i] = labels[i] if labels else "speech"
        return out

    lines = [line.split() for line in SAMPLE_RTTM.read_text().splitlines()]
    turns = [SpanSeconds(float(f[3]), float(f[3]) + float(f[4])) for f in lines]
    references = {
        "union": (read_rttm(SAMPLE_RTTM)["sample"], annotation(read_rttm(SAMPLE_RTTM)["sample"])),
        "turns": (turns, annotation(turns, [f[7] for f in lines])),
    }
    uem = Timeline([Segment(0, duration)]) if duration else None
    for name, hyp in _hypotheses(references["union"][0]).items():
        for ours_ref, their_ref in references.values():
            ours = evaluate(ours_ref, hyp, collar=collar, duration=duration)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "uem was approximated" when duration is None
                d = DetectionErrorRate(collar=collar)(
                    their_ref, annotation(hyp), uem=uem, detailed=True
                )
                precision = DetectionPrecision(collar=collar)(their_ref, annotation(hyp), uem=uem)
                recall = DetectionRecall(collar=collar)(their_ref, annotation(hyp), uem=uem)
            where = f"{name} collar={collar} duration={duration}"
            assert ours.detection_error_rate == pytest.approx(
                d["detection error rate"], abs=1e-9
            ), where
            assert ours.reference_speech == pytest.approx(d["total"], abs=1e-9), where
            assert ours.miss * d["total"] == pytest.approx(d["miss"], abs=1e-9), where
            assert ours.false_alarm * d["total"] == pytest.approx(d["false alarm"], abs=1e-9), where
            assert ours.precision == pytest.approx(precision, abs=1e-9), where
            assert ours.recall == pytest.approx(recall, abs=1e-9), where


def test_frame_level_is_close_to_exact() -> None:
    ref = read_rttm(SAMPLE_RTTM)["sample"]
    for hyp in _hypotheses(ref).values():
        exact = evaluate(ref, hyp, duration=30.0)
        frames = evaluate(ref, hyp, duration=30.0, resolution=0.01)
        # Each boundary moves by at most half a frame.
        bound = 0.005 * 2 * (len(ref) + len(hyp)) / exact.reference_speech
        assert abs(frames.detection_error_rate - exact.detection_error_rate) <= bound + 1e-9
        assert frames.scored == pytest.approx(30.0)


def test_sweep_rows_and_table() -> None:
    ref = read_rttm(SAMPLE_RTTM)["sample"]
    t = (np.arange(3000) + 0.5) * 0.01
    inside = np.any([(t >= r.start) & (t < r.end) for r in ref], axis=0)
    probs = np.clip(0.3 + 0.4 * inside + 0.25 * np.sin(t * 7.0), 0, 1).astype(np.float32)
    sp = SpeechProbs(mx.array(probs), hop=0.01)
    thresholds = [0.2, 0.4, 0.5, 0.6, 0.8]
    rows = sweep(ref, sp, thresholds, _threshold)
    assert [row.threshold for row in rows] == thresholds
    for row in rows:
        assert row.metrics == evaluate(ref, _threshold(sp, row.threshold), duration=30.0)
    speech = [row.metrics.hypothesis_speech for row in rows]
    assert speech == sorted(speech, reverse=True)
    table = format_sweep(rows).splitlines()
    assert len(table) == 1 + len(rows) and "DetER%" in table[0]
    best = min(rows, key=lambda r: r.metrics.detection_error_rate)
    marked = [line for line in table if line.endswith("*")]
    assert len(marked) == 1 and marked[0].startswith(f"{best.threshold:6.3f}")
    assert "DetER" in format_metrics(best.metrics)
