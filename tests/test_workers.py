"""Decoding shared by CPU worker processes: same segments as one process, failures recovered."""

from __future__ import annotations

import io
import logging
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mlx.core as mx
import pytest

import mlxwx.workers as workers
from mlxwx.audio import SAMPLE_RATE
from mlxwx.decoding import DecodingOptions
from mlxwx.engine import Lane, TranscribeOptions, transcribe_arrays
from mlxwx.lanes import Region

GREEDY = TranscribeOptions(DecodingOptions(beam_size=1), batch_size=4)


@pytest.fixture
def started(monkeypatch):
    """Worker processes started by the code under test (MIN_SECONDS lowered so that the short
    test clips are worth a worker)."""
    monkeypatch.setattr(workers, "MIN_SECONDS", 1.0)
    calls = []
    start = workers._start

    def spy(job, threads):
        calls.append(job)
        return start(job, threads)

    monkeypatch.setattr(workers, "_start", spy)
    return calls


def lane(*seconds: float, source: int = 0) -> Lane:
    at, regions = 0, []
    for s in seconds:
        regions.append(Region(source, at, at + int(s * SAMPLE_RATE)))
        at += int(s * SAMPLE_RATE)
    return Lane(regions)


def test_workers_give_the_segments_of_one_process(wm, clips, started):
    alone = transcribe_arrays(wm, clips, replace(GREEDY, workers=1))
    assert not started
    seen = []
    shared = transcribe_arrays(
        wm, clips, replace(GREEDY, workers=2), progress=lambda *a, **kw: seen.append(kw)
    )
    assert len(started) == 1 and 0 < len(started[0].audios) < len(clips)  # its share only
    assert [r.to_dict() for r in shared] == [r.to_dict() for r in alone]
    assert "ask what you can do for your country" in shared[0].text
    done = [kw["completed"] for kw in seen]
    total = sum(c.shape[0] for c in clips)
    assert done == sorted(done) and done[-1] == total and {kw["total"] for kw in seen} == {total}


def test_a_failed_worker_has_its_share_decoded_here(wm, clips, started, monkeypatch, caplog):
    alone = transcribe_arrays(wm, clips, replace(GREEDY, workers=1))

    def crash(job, threads):
        started.append(job)
        command = [sys.executable, "-c", "import sys; sys.exit(3)"]
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    monkeypatch.setattr(workers, "_start", crash)
    with caplog.at_level(logging.WARNING, logger="mlxwx.workers"):
        shared = transcribe_arrays(wm, clips, replace(GREEDY, workers=2))
    assert started
    assert [r.to_dict() for r in shared] == [r.to_dict() for r in alone]
    assert "worker failed (exited with code 3)" in caplog.text


def test_a_worker_reports_its_error(tmp_path):
    job = workers.Job(str(tmp_path / "missing"), "float32", [], [], [], GREEDY, 0)
    out = io.BytesIO()
    workers._serve(io.BytesIO(pickle.dumps(job)), out)
    out.seek(0)
    kind, message = pickle.load(out)
    assert kind == "error" and "missing" in message


def test_worker_count(wm, monkeypatch, tmp_path):
    minutes = [lane(60.0), lane(60.0), lane(60.0)]
    assert workers.count(3, wm, minutes) == 3
    assert workers.count(5, wm, minutes) == 3  # no more than lanes
    assert workers.count(3, wm, [lane(50.0), lane(50.0), lane(50.0)]) == 2  # 60 s each at least
    assert workers.count(1, wm, minutes) == 1
    assert workers.count(None, wm, minutes) == min(2, workers.os.cpu_count() or 1)
    assert workers.count(3, replace(wm, path=tmp_path), minutes) == 1  # cannot be reloaded
    monkeypatch.setattr(workers.mx, "default_device", lambda: mx.Device(mx.gpu))
    assert workers.count(3, wm, minutes) == 1  # one process feeds a GPU


def test_split_balances_audio():
    lanes = [lane(s) for s in (10, 90, 40, 30, 20, 10)]
    groups = workers.split(lanes, 2)
    loads = sorted(sum(sum(r.length for r in lanes[i].regions) for i in g) for g in groups)
    assert sorted(i for g in groups for i in g) == list(range(6))
    assert loads == [100 * SAMPLE_RATE, 100 * SAMPLE_RATE]
    assert len(workers.split(lanes[:1], 3)) == 1  # no empty groups


def test_a_job_carries_only_the_inputs_its_lanes_read(wm):
    audios = [mx.full((SAMPLE_RATE,), float(i)) for i in range(4)]
    lanes = [lane(1.0, source=3), lane(0.5, source=1)]
    job, sources = workers.job_for(wm, audios, lanes, ["en", "fr", "de", "it"], GREEDY)
    assert sources == [1, 3] and job.languages == ["fr", "it"]
    assert [float(a[0]) for a in job.audios] == [1.0, 3.0]
    assert [r.source for ln in job.lanes for r in ln.regions] == [1, 0]
    assert job.dtype == "float32" and Path(job.model) == wm.path


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        TranscribeOptions(workers=0)


def test_a_seeded_run_samples_the_same_in_workers(wm, clips, started):
    """Every window falls back to sampling at temperature 1; the workers' draws follow the
    parent's seed, so two runs with one seed agree and runs with two seeds do not."""
    sampled = replace(GREEDY, workers=2, temperatures=(0.0, 1.0), logprob_threshold=0.0)

    def run(seed: int) -> list[dict]:
        mx.random.seed(seed)
        return [r.to_dict() for r in transcribe_arrays(wm, clips, sampled)]

    first = run(3)
    assert started and all(s["temperature"] == 1.0 for r in first for s in r["segments"])
    assert run(3) == first
    assert run(4) != first
