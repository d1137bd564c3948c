"""Decoding shared by CPU worker processes that take parts as they free up: the transcripts of
one process (sampled fallbacks included), failures recovered."""

from __future__ import annotations

import io
import logging
import pickle
import subprocess
import sys
import threading
from dataclasses import replace

import mlx.core as mx
import numpy as np
import pytest

import mlxwx.asr.pool as pool
import mlxwx.asr.workers as workers
import mlxwx.pipeline as pipeline
from mlxwx.asr.decoding import DecodingOptions
from mlxwx.asr.engine import TranscribeOptions
from mlxwx.asr.model import load_model
from mlxwx.pipeline import Pipeline, PipelineOptions
from mlxwx.vad.methods import transcribe_options

from .speech import transcribe_arrays

GREEDY = TranscribeOptions(DecodingOptions(beam_size=1), batch_size=4)


@pytest.fixture
def taken(monkeypatch):
    """The parts each process took, by the thread that took them (this process's own lanes:
    the main thread; a worker: its reader thread), MIN_SECONDS lowered so that the short test
    clips are worth a worker."""
    monkeypatch.setattr(workers, "MIN_SECONDS", 1.0)
    calls: dict[str, list[int]] = {}
    take = pool.Board.take

    def spy(self, *args, **kwargs):
        item = take(self, *args, **kwargs)
        if item is not None:
            calls.setdefault(threading.current_thread().name, []).append(item[0])
        return item

    monkeypatch.setattr(pool.Board, "take", spy)
    return calls


def run_energy(wm, audios, options):
    """`Pipeline.transcribe` with the energy VAD, its chunks at most 8 s."""
    chunks = replace(transcribe_options("energy"), chunk_size=8.0, max_speech=8.0)
    return Pipeline(wm, PipelineOptions(options, vad="energy", vad_options=chunks)).transcribe(
        list(audios)
    )


def records(results):  # scores differ in the last float bits between batch layouts
    return [[(w.spans, [s.tokens for s in w.segments]) for w in r.windows] for r in results]


@pytest.mark.slow
def test_workers_give_the_transcripts_of_one_process(wm, clips, taken):
    alone = transcribe_arrays(wm, clips, replace(GREEDY, workers=1))
    assert not taken
    seen = []
    shared = transcribe_arrays(
        wm, clips, replace(GREEDY, workers=2), progress=lambda *a, **kw: seen.append((a, kw))
    )
    assert len(taken) == 2 and all(taken.values())  # both took parts as they freed up
    assert sorted(k for parts in taken.values() for k in parts) == list(
        range(pool.PART_BASE, pool.PART_BASE + len(clips))
    )
    assert [r.to_dict() for r in shared] == [r.to_dict() for r in alone]
    assert records(shared) == records(alone)
    assert "ask what you can do for your country" in shared[0].text
    total = sum(c.shape[0] for c in clips)
    done = [kw["completed"] for a, kw in seen if a[0] == "transcribe"]
    known = [kw["total"] for a, kw in seen if a[0] == "transcribe"]
    assert done[-1] == known[-1] == total


@pytest.mark.slow
def test_a_process_done_for_the_run_lends_its_cores_to_this_one(wm, clips, taken, monkeypatch):
    """Each process decodes with its share of the cores' BLAS threads; once the board reports
    the worker idle (nothing left to take), this process takes its threads as well; the count
    from before the run is restored at its end."""
    calls: list[int] = []
    monkeypatch.setattr(pipeline._blas, "set_threads", lambda n: calls.append(n) or 7)
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 4)
    boards: list[pool.Board] = []

    class Spy(pool.Board):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            boards.append(self)

    monkeypatch.setattr(pool, "Board", Spy)
    transcribe_arrays(wm, clips, replace(GREEDY, workers=2))
    assert len(taken) == 2 and calls[0] == 2 and calls[-1] == 7
    assert set(calls[1:-1]) <= {2, 4}
    boards[0].on_idle(frozenset({1}))
    boards[0].on_idle(frozenset({0}))  # this process idle: nothing to lend it
    assert calls[-2:] == [4, 2]


@pytest.mark.slow
def test_one_input_is_shared_and_sampled_as_in_one_process(wm, clips, taken):
    """One input of many speech chunks: both workers take its chunks; every window falls back
    to sampling at temperature 1 and keeps it (openai-whisper's ladder), and the samples are
    those of one process with the same seed (each window draws its own noise)."""
    gap = mx.zeros(16000)
    one = mx.concatenate([x for c in clips for x in (c, gap)])
    sampled = replace(GREEDY, temperatures=(0.0, 1.0), logprob_threshold=0.0, loop_guard=False)

    def run(seed: int, n: int) -> list[dict]:
        mx.random.seed(seed)
        return [r.to_dict() for r in run_energy(wm, [one], replace(sampled, workers=n))]

    alone = run(3, 1)
    assert not taken
    shared = run(3, 2)
    assert len(taken) == 2 and sum(len(v) for v in taken.values()) > 4
    assert all(s["temperature"] == 1.0 for r in alone for s in r["segments"])
    assert shared == alone
    assert run(4, 2) != alone


@pytest.mark.slow
def test_a_failed_worker_has_its_share_decoded_here(wm, clips, taken, monkeypatch, caplog):
    alone = transcribe_arrays(wm, clips, replace(GREEDY, workers=1))
    started = []

    def crash(threads):
        started.append(threads)
        command = [sys.executable, "-c", "import sys; sys.exit(3)"]
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    monkeypatch.setattr(workers, "_start", crash)
    with caplog.at_level(logging.WARNING, logger="mlxwx.asr.workers"):
        shared = transcribe_arrays(wm, clips, replace(GREEDY, workers=2))
    assert len(started) == 1  # this process and one worker
    assert [r.to_dict() for r in shared] == [r.to_dict() for r in alone]
    assert "worker failed (exited with code" in caplog.text


@pytest.mark.slow
def test_a_worker_dying_mid_run_hands_its_parts_to_the_other(wm, clips, taken, monkeypatch):
    """The worker is killed when it asks for its second part: the part it held is taken by
    this process, and every input is transcribed once."""
    alone = transcribe_arrays(wm, clips, replace(GREEDY, workers=1))
    give, asked = workers.Worker._give, {}

    def killing(self, wait):
        asked[id(self)] = asked.get(id(self), 0) + 1
        if len(asked) == 1 and asked[id(self)] == 2:
            self.process.kill()
        return give(self, wait)

    monkeypatch.setattr(workers.Worker, "_give", killing)
    shared = transcribe_arrays(wm, clips, replace(GREEDY, workers=2))
    assert [r.to_dict() for r in shared] == [r.to_dict() for r in alone]


def test_a_worker_reports_its_error(tmp_path):
    job = workers.Job(str(tmp_path / "missing"), "float32", pool_stage(), None)
    out = io.BytesIO()
    workers._serve(io.BytesIO(pickle.dumps(job)), out)
    out.seek(0)
    kind, message = pickle.load(out)
    assert kind == "error" and "missing" in message


def pool_stage():
    from mlxwx.pipeline import POOL_STAGE

    return POOL_STAGE


def test_a_worker_runs_its_stage_over_the_parts_sent(wm, clips):
    """A child asks for each part, decodes the parts that follow its job and reports each."""
    from mlxwx.asr.engine import SpeechFile
    from mlxwx.types import AudioChunk, SpanSamples

    job = workers.Job.of(wm, pool_stage(), GREEDY)
    audio = np.asarray(clips[0])
    part = SpeechFile(7, (AudioChunk(7, audio, (SpanSamples(0, audio.size),)),), None, 5)
    stream = io.BytesIO()
    for item in (job, (7, part)):
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
    assert kinds[0] == "need" and kinds[-2:] == ["done", "end"] and kinds.count("need") == 2
    transcript = messages[-2][1]
    assert transcript.file == 7 and "country" in "".join(
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
def test_a_multilingual_input_in_many_parts_is_not_kept_waiting(base_dir, clips, taken):
    """No language given: an input's later parts wait for the language found on its first
    part, and the process decoding that part is never kept waiting for them (it once was: a
    two-minute input with `--model base` and no `--language` never finished)."""
    one = np.concatenate([x for c in clips for x in (np.asarray(c), np.zeros(16000, np.float32))])
    greedy = replace(GREEDY, seed=5)
    outcome: dict[str, list] = {}

    def shared() -> None:  # in a thread of its own (MLX arrays are made on their thread)
        base = load_model(base_dir)
        outcome["shared"] = run_energy(base, [one], replace(greedy, workers=2))

    thread = threading.Thread(target=shared, daemon=True)
    thread.start()
    thread.join(600)
    assert not thread.is_alive(), "the shared run is waiting on itself"
    assert len(taken) == 2 and sum(len(v) for v in taken.values()) > 2
    alone = run_energy(load_model(base_dir), [one], replace(greedy, workers=1))
    assert records(outcome["shared"]) == records(alone)  # base is float16: scores may differ
    assert [r.language for r in outcome["shared"]] == [r.language for r in alone] == ["en"]
