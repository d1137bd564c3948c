"""Decoding shared by CPU worker processes: same transcripts as one process, failures recovered."""

from __future__ import annotations

import io
import logging
import pickle
import subprocess
import sys
from dataclasses import replace

import mlx.core as mx
import pytest

import mlxwx.asr.workers as workers
from mlxwx.asr.decoding import DecodingOptions
from mlxwx.asr.engine import TranscribeOptions
from mlxwx.pipeline import PipelineOptions

from .speech import transcribe_arrays

GREEDY = TranscribeOptions(DecodingOptions(beam_size=1), batch_size=4)


@pytest.fixture
def sent(monkeypatch):
    """What the code under test hands to worker processes: (input, samples) per input sent
    (MIN_SECONDS lowered so that the short test clips are worth a worker)."""
    monkeypatch.setattr(workers, "MIN_SECONDS", 1.0)
    calls: list[tuple[int, int]] = []
    send = workers.Worker.send

    def spy(self, file, audio):
        calls.append((file, audio.size))
        return send(self, file, audio)

    monkeypatch.setattr(workers.Worker, "send", spy)
    return calls


def test_workers_give_the_transcripts_of_one_process(wm, clips, sent):
    alone = transcribe_arrays(wm, clips, replace(GREEDY, workers=1))
    assert not sent
    seen = []
    shared = transcribe_arrays(
        wm, clips, replace(GREEDY, workers=2), progress=lambda *a, **kw: seen.append((a, kw))
    )
    assert 0 < len(sent) < len(clips)  # its share only
    total = sum(c.shape[0] for c in clips)
    theirs = sum(n for _, n in sent)
    assert abs(2 * theirs - total) < max(c.shape[0] for c in clips)  # balanced by audio
    assert [r.to_dict() for r in shared] == [r.to_dict() for r in alone]

    def records(results):  # scores differ in the last float bits between batch layouts
        return [[(w.spans, [s.tokens for s in w.segments]) for w in r.windows] for r in results]

    assert records(shared) == records(alone)
    assert "ask what you can do for your country" in shared[0].text
    done = [kw["completed"] for a, kw in seen if a[0] == "transcribe"]
    known = [kw["total"] for a, kw in seen if a[0] == "transcribe"]
    assert done == sorted(done) and done[-1] == known[-1] == total


@pytest.mark.slow
def test_a_failed_worker_has_its_share_decoded_here(wm, clips, sent, monkeypatch, caplog):
    alone = transcribe_arrays(wm, clips, replace(GREEDY, workers=1))
    started = []

    def crash(threads):
        started.append(threads)
        command = [sys.executable, "-c", "import sys; sys.exit(3)"]
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    monkeypatch.setattr(workers, "_start", crash)
    with caplog.at_level(logging.WARNING, logger="mlxwx.asr.workers"):
        shared = transcribe_arrays(wm, clips, replace(GREEDY, workers=2))
    assert started
    assert [r.to_dict() for r in shared] == [r.to_dict() for r in alone]
    assert "worker failed (exited with code 3)" in caplog.text


def test_a_worker_reports_its_error(tmp_path):
    job = workers.Job(str(tmp_path / "missing"), "float32", "mlxwx.pipeline:worker_stage", None, 0)
    out = io.BytesIO()
    workers._serve(io.BytesIO(pickle.dumps(job)), out)
    out.seek(0)
    kind, message = pickle.load(out)
    assert kind == "error" and "missing" in message


def test_a_worker_runs_its_stage_over_the_inputs_sent(wm, clips):
    """A child decodes the inputs that follow its job and reports each transcript."""
    import numpy as np

    job = workers.Job.of(wm, "mlxwx.pipeline:worker_stage", PipelineOptions(GREEDY, vad=None), 0)
    stream = io.BytesIO()
    for item in (job, (5, np.asarray(clips[0]))):
        pickle.dump(item, stream)
    stream.seek(0)
    out = io.BytesIO()
    workers._serve(stream, out)
    out.seek(0)
    messages = []
    while True:
        try:
            messages.append(pickle.load(out))
        except EOFError:
            break
    kinds = [k for k, _ in messages]
    assert kinds[-2:] == ["done", "end"] and set(kinds[:-2]) == {"progress"}
    transcript = messages[-2][1]
    assert transcript.file == 5 and "country" in "".join(
        s.text for w in transcript.windows for s in w.segments
    )


def test_worker_count(wm, monkeypatch, tmp_path):
    assert workers.count(3, wm) == 3
    assert workers.count(3, wm, seconds=180.0) == 3
    assert workers.count(3, wm, seconds=150.0) == 2  # 60 s each at least
    assert workers.count(3, wm, seconds=10.0) == 1
    assert workers.count(1, wm) == 1
    assert workers.count(None, wm) == min(2, workers.os.cpu_count() or 1)
    assert workers.count(3, replace(wm, path=tmp_path)) == 1  # cannot be reloaded
    monkeypatch.setattr(workers.mx, "default_device", lambda: mx.Device(mx.gpu))
    assert workers.count(3, wm) == 1  # one process feeds a GPU


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        TranscribeOptions(workers=0)


@pytest.mark.slow
def test_a_seeded_run_samples_the_same_in_workers(wm, clips, sent):
    """Every window falls back to sampling at temperature 1 (and keeps it: openai-whisper's
    ladder, where the loop guard would keep the likelier greedy attempt); the workers' draws
    follow the parent's seed, so two runs with one seed agree and runs with two seeds do not."""
    sampled = replace(
        GREEDY, workers=2, temperatures=(0.0, 1.0), logprob_threshold=0.0, loop_guard=False
    )

    def run(seed: int) -> list[dict]:
        mx.random.seed(seed)
        return [r.to_dict() for r in transcribe_arrays(wm, clips, sampled)]

    first = run(3)
    assert sent and all(s["temperature"] == 1.0 for r in first for s in r["segments"])
    assert run(3) == first
    assert run(4) != first
