"""Decoding on several CPU cores: a run's lanes split between this process and worker processes.

MLX's CPU backend runs every op on one thread; only matmuls use more cores (through OpenBLAS).
One decoding pipeline leaves cores idle during the softmax, GELU, filter and search passes:
on our 2-core CPU, BLAS on two threads instead of one makes it only 1.3x faster. Two pipelines
with one BLAS thread each keep both cores busy: two processes decode twice the audio in 1.3x
the time that one process takes with both cores (bench/RESULTS.md). Threads in one process
gained 1.1x: page faults and the GIL serialise them.

This process decodes the first group of lanes itself while `workers - 1` child processes
(`main` below, run by `sys.executable`) each load the same checkpoint and decode another group.
Jobs and results travel as pickles over the children's stdin and stdout; each job carries a seed
drawn from this process's random state, so a seeded run samples the same fallbacks every time.
A child that fails or dies has its lanes decoded here afterwards: a crash costs time, never
segments.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import mlx.core as mx
import numpy as np

from . import _blas
from .checkpoint import CONFIG_FILE

if TYPE_CHECKING:
    from .engine import Lane, ProgressHook, TranscribeOptions
    from .load import WhisperModel
    from .types import Segment

logger = logging.getLogger(__name__)
MIN_SECONDS = 60.0  # of audio per process: below this, starting a process costs more than it saves
SAMPLE_RATE = 16000
EXIT_SECONDS = 10.0  # a worker that reported but has not exited by then is killed

Decode = Callable[..., "list[list[Segment]]"]


@dataclass(frozen=True)
class Job:
    """One worker's share: its inputs (only those its lanes read) and what to decode them with."""

    model: str
    dtype: str
    audios: list[np.ndarray]
    lanes: list[Lane]
    languages: list[str | None]
    options: TranscribeOptions
    seed: int  # of the worker's fallback sampling, drawn from this process's random state


def count(requested: int | None, wm: WhisperModel, lanes: list[Lane]) -> int:
    """How many processes decode `lanes`: `requested` (None: one per core, at most two), and one
    on a GPU, for a model that cannot be reloaded from its folder, or for fewer lanes or less
    audio than the processes would each need."""
    if mx.default_device() != mx.cpu or not (wm.path / CONFIG_FILE).exists():
        return 1
    n = requested if requested is not None else min(2, os.cpu_count() or 1)
    seconds = sum(r.length for lane in lanes for r in lane.regions) / SAMPLE_RATE
    return max(1, min(n, len(lanes), int(seconds // MIN_SECONDS)))


def split(lanes: list[Lane], n: int) -> list[list[int]]:
    """Lane indices in `n` groups of near-equal audio: longest lane first to the lightest group."""
    groups: list[list[int]] = [[] for _ in range(n)]
    loads = [0] * n
    length = [sum(r.length for r in lane.regions) for lane in lanes]
    for i in sorted(range(len(lanes)), key=lambda i: -length[i]):
        g = loads.index(min(loads))
        groups[g].append(i)
        loads[g] += length[i]
    return [g for g in groups if g]


def job_for(
    wm: WhisperModel,
    audios: list[mx.array],
    lanes: list[Lane],
    languages: list[str | None],
    options: TranscribeOptions,
) -> tuple[Job, list[int]]:
    """A job holding the inputs `lanes` read, renumbered; and the original index of each."""
    sources = sorted({r.source for lane in lanes for r in lane.regions})
    index = {s: i for i, s in enumerate(sources)}
    moved = [
        replace(lane, regions=[replace(r, source=index[r.source]) for r in lane.regions])
        for lane in lanes
    ]
    job = Job(
        str(wm.path),
        str(wm.model.dtype).rsplit(".", 1)[-1],
        [np.asarray(audios[s]) for s in sources],
        moved,
        [languages[s] for s in sources],
        options,
        int(np.asarray(mx.random.randint(0, 2**31 - 1, ()))),  # seeded runs stay reproducible
    )
    return job, sources


@dataclass
class _Child:
    """A running worker and what it has reported so far."""

    process: subprocess.Popen[bytes]
    sources: list[int]
    lanes: list[int]
    completed: int = 0
    result: list[list[Segment]] | None = None
    error: str | None = None
    reader: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        try:
            while True:
                kind, value = pickle.load(stream)
                if kind == "progress":
                    self.completed = value
                    continue
                if kind == "done":
                    self.result = value
                else:
                    self.error = value
                break
        except (EOFError, OSError, pickle.UnpicklingError):
            self.error = f"exited with code {self.process.wait()}"
            return
        try:  # it exits once it has reported: reap it (no zombie; its CPU time is counted)
            self.process.wait(timeout=EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# The child imports this very mlxwx (installed or a checkout) by its location, without putting
# its parent folder (site-packages, for an install) ahead of the standard library on sys.path.
_BOOT = """import importlib.util, sys
spec = importlib.util.spec_from_file_location("mlxwx", {init!r})
module = importlib.util.module_from_spec(spec)
sys.modules["mlxwx"] = module
spec.loader.exec_module(module)
from mlxwx.workers import main
main()
"""


def _start(job: Job, threads: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    boot = _BOOT.format(init=str(Path(__file__).resolve().with_name("__init__.py")))
    command = [sys.executable, "-c", boot]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert process.stdin is not None
    try:
        pickle.dump(job, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        process.stdin.close()
    except OSError:  # it died on start: its reader sees the end of its output and reports it
        pass
    return process


def decode(
    decode_serial: Decode,
    wm: WhisperModel,
    audios: list[mx.array],
    lanes: list[Lane],
    languages: list[str | None],
    options: TranscribeOptions,
    progress: ProgressHook | None,
    n: int,
) -> list[list[Segment]]:
    """`decode_serial(wm, audios, lanes, languages, options, progress)`, its lanes shared by this
    process and n - 1 workers; segments per input."""
    groups = split(lanes, n)
    threads = max(1, (os.cpu_count() or 1) // len(groups))
    children = []
    for group in groups[1:]:
        job, sources = job_for(wm, audios, [lanes[i] for i in group], languages, options)
        children.append(_Child(_start(job, threads), sources, group))
    total = sum(a.shape[0] for a in audios)
    own_done = 0

    def report(_stage: str = "", completed: int = 0, **_: Any) -> None:
        nonlocal own_done
        own_done = completed
        if progress is not None:
            done = own_done + sum(c.completed for c in children)
            progress("transcribe", completed=min(done, total), total=total)

    before = _blas.set_threads(threads)
    try:
        start = time.perf_counter()
        out = decode_serial(wm, audios, [lanes[i] for i in groups[0]], languages, options, report)
        logger.debug("own share decoded in %.1f s", time.perf_counter() - start)
        for child in children:
            while child.reader.is_alive():
                child.reader.join(0.5)
                report(completed=own_done)
            logger.debug("worker %d done at %.1f s", child.process.pid, time.perf_counter() - start)
            if child.result is not None:
                for source, segments in zip(child.sources, child.result, strict=True):
                    out[source] += segments
                continue
            logger.warning("a decoding worker failed (%s); decoding its share here", child.error)
            redone = decode_serial(wm, audios, [lanes[i] for i in child.lanes], languages, options)
            for segments, more in zip(out, redone, strict=True):
                segments += more
        if progress is not None:
            progress("transcribe", completed=total, total=total)
    finally:
        for child in children:
            if child.process.poll() is None:
                child.process.kill()
        if before is not None:
            _blas.set_threads(before)
    return out


def _serve(job_in: BinaryIO, out: BinaryIO) -> None:
    """Run one job from `job_in`, writing progress and the result (or the error) to `out`."""
    from .engine import decode_lanes_serial
    from .load import load_model

    try:
        job: Job = pickle.load(job_in)
        mx.set_default_device(mx.cpu)
        mx.random.seed(job.seed)
        wm = load_model(job.model, getattr(mx, job.dtype))

        def report(_stage: str = "", completed: int = 0, **_: Any) -> None:
            pickle.dump(("progress", completed), out)
            out.flush()

        audios = [mx.array(a) for a in job.audios]
        segments = decode_lanes_serial(wm, audios, job.lanes, job.languages, job.options, report)
        pickle.dump(("done", segments), out)
    except Exception as err:  # reported to the parent, which decodes this share itself
        pickle.dump(("error", f"{type(err).__name__}: {err}"), out)
    out.flush()


def main() -> None:
    """A worker's entry point (`python -c "from mlxwx.workers import main; main()"`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which ends us
    out = os.fdopen(os.dup(1), "wb")  # the parent reads pickles here; stray prints go to stderr
    os.dup2(2, 1)
    try:
        _serve(sys.stdin.buffer, out)
    except OSError:  # the parent is gone
        os._exit(1)


if __name__ == "__main__":
    main()
