"""Decoding on several CPU cores: worker processes that each run the stages of their inputs.

MLX's CPU backend runs every op on one thread; only matmuls use more cores (through OpenBLAS).
One decoding pipeline leaves cores idle during the softmax, GELU, filter and search passes; two
pipelines with one BLAS thread each keep both cores busy, where threads in one process gain
little (page faults and the GIL serialise them). Figures: bench/RESULTS.md.

A `Worker` is a child process (`main` below, run by `sys.executable`) that loads the same
checkpoint and runs a stage function (named by module and function, so this module imports no
stage) over the inputs it asks for: `stage(wm, config, requests, report)` yields one `Transcript`
per input, where `requests.take(wait)` asks the parent for the next one. Inputs and results
travel as pickles over the child's stdin and stdout. The child asks for its next input only when
its lanes need one, and the parent answers from a source shared by every process
(`mlxwx.asr.pool`): an input, none ready yet (when the child's other lanes are busy, it does not
wait), or the end. Work goes to whichever process frees up first, and no process holds more than
its inputs in flight. A child that fails or dies hands back the inputs
it did not finish (`on_failed`) for another process: a crash costs time, never transcripts.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import mlx.core as mx

from .. import _blas
from ..weights.folder import CONFIG_FILE
from .engine import Transcript
from .model import WhisperModel, load_model

logger = logging.getLogger(__name__)
MIN_SECONDS = 60.0  # of audio per process: below this, starting a process costs more than it saves
EXIT_SECONDS = 10.0  # a worker that reported but has not exited by then is killed


@dataclass(frozen=True)
class Job:
    """What a worker runs: the checkpoint, the stage function ("module:function") and its
    config."""

    model: str
    dtype: str
    stage: str
    config: Any

    @classmethod
    def of(cls, wm: WhisperModel, stage: str, config: Any) -> Job:
        """A job decoding with `wm` (reloaded from its folder, in its dtype)."""
        return cls(str(wm.path), str(wm.model.dtype).rsplit(".", 1)[-1], stage, config)


def put_while(box: queue.Queue[Any], item: object, alive: Callable[[], bool]) -> bool:
    """Put `item` into the bounded queue `box`, waiting while it is full for as long as
    `alive()` holds; whether it was put (a reader that died never unblocks a plain `put`)."""
    while alive():
        try:
            box.put(item, timeout=0.5)
            return True
        except queue.Full:
            continue
    return False


def count(requested: int | None, wm: WhisperModel, seconds: float | None = None) -> int:
    """How many processes decode: `requested` (None: one per core, at most two); one on a GPU,
    for a model that cannot be reloaded from its folder, or with less than MIN_SECONDS of audio
    per process (`seconds`: the run's audio, None when not known yet)."""
    if mx.default_device() != mx.cpu or not (wm.path / CONFIG_FILE).exists():
        return 1
    n = requested if requested is not None else min(2, os.cpu_count() or 1)
    if seconds is not None:
        n = min(n, int(seconds // MIN_SECONDS))
    return max(1, n)


# The child imports this very mlxwx (installed or a checkout) by its location, without putting
# its parent folder (site-packages, for an install) ahead of the standard library on sys.path.
_BOOT = """import importlib.util, sys
if sys.platform == "linux":  # die with the parent, however it ends
    import ctypes, signal
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
spec = importlib.util.spec_from_file_location("mlxwx", {init!r})
module = importlib.util.module_from_spec(spec)
sys.modules["mlxwx"] = module
spec.loader.exec_module(module)
from mlxwx.asr.workers import main
main()
"""


def _start(threads: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, **{name: str(threads) for name in _blas.THREAD_VARIABLES})
    init = Path(__file__).resolve().parent.parent / "__init__.py"
    command = [sys.executable, "-c", _BOOT.format(init=str(init))]
    # A session of its own: a Ctrl-C at the terminal reaches the parent only, which ends it.
    return subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True
    )


@dataclass
class Worker:
    """A running child that pulls its inputs: each time its lanes need one, the child asks and
    the reader thread answers with `source(wait)`: a (key, input) pair, None when none is ready
    and not `wait`, StopIteration when there are no more.

    `on_done(transcript)` is called from the reader thread for every finished input (the
    transcript's `file` is the input's key); `on_failed(inputs)` with the inputs it held when it
    failed or died, so that another process can take them.
    """

    job: Job
    threads: int
    source: Callable[[bool], tuple[int, Any] | None]
    on_done: Callable[[Transcript], None]
    on_failed: Callable[[list[tuple[int, Any]]], None] = lambda _: None
    on_progress: Callable[[], None] = lambda: None
    completed: int = 0  # chunk samples decoded and pulled, as the child reports them
    total: int = 0
    unfinished: dict[int, Any] = field(default_factory=dict)
    error: str | None = None
    process: subprocess.Popen[bytes] = field(init=False)
    reader: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.process = _start(self.threads)
        self._send(self.job)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    @property
    def alive(self) -> bool:
        return self.reader.is_alive()

    def _send(self, item: object) -> bool:
        stream = self.process.stdin
        assert stream is not None
        try:
            pickle.dump(item, stream, protocol=pickle.HIGHEST_PROTOCOL)
            stream.flush()
            return True
        except (OSError, ValueError):  # it died: its reader reports why
            return False

    def _give(self, wait: bool) -> None:
        """Answer the child's request: its next input, none yet, or the end of its inputs."""
        try:
            item = self.source(wait)
        except StopIteration:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
            except OSError:
                pass
            return
        if item is not None:
            with self.lock:
                self.unfinished[item[0]] = item[1]
        self._send(item)

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        try:
            while True:
                kind, value = pickle.load(stream)
                if kind == "need":
                    self._give(value)
                elif kind == "progress":
                    self.completed, self.total = value
                    self.on_progress()
                elif kind == "done":
                    with self.lock:
                        self.unfinished.pop(value.file, None)
                    self.on_done(value)
                else:
                    self.error = value if kind == "error" else None
                    break
        except (EOFError, OSError, pickle.UnpicklingError):
            self.error = f"exited with code {self.process.wait()}"
        if self.error is not None:
            logger.warning("a decoding worker failed (%s); its inputs go to the others", self.error)
            with self.lock:
                left, self.unfinished = list(self.unfinished.items()), {}
            self.on_failed(left)
            return
        try:  # it exits once it has reported: reap it (no zombie; its CPU time is counted)
            self.process.wait(timeout=EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def join(self) -> None:
        """Wait for the child to finish."""
        self.reader.join()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()


@dataclass
class _Requests:
    """The child's side: `take(wait)` asks the parent for the next input (see `Worker`)."""

    stream: BinaryIO
    out: BinaryIO

    def take(self, wait: bool) -> tuple[int, Any] | None:
        pickle.dump(("need", wait), self.out)
        self.out.flush()
        try:
            item: tuple[int, Any] | None = pickle.load(self.stream)
        except EOFError:
            raise StopIteration from None
        return item


def _serve(job_in: BinaryIO, out: BinaryIO) -> None:
    """Run the job read from `job_in` over the inputs that follow it, writing progress, each
    transcript and the end (or the error) to `out`."""
    try:
        job: Job = pickle.load(job_in)
        mx.set_default_device(mx.cpu)
        wm = load_model(job.model, getattr(mx, job.dtype))
        module, name = job.stage.split(":")
        stage = getattr(importlib.import_module(module), name)

        def report(_stage: str = "", completed: int = 0, total: int = 0, **_: Any) -> None:
            pickle.dump(("progress", (completed, total)), out)
            out.flush()

        for transcript in stage(wm, job.config, _Requests(job_in, out), report):
            pickle.dump(("done", transcript), out)
            out.flush()
        pickle.dump(("end", None), out)
    except Exception as err:  # reported to the parent, which decodes this share itself
        pickle.dump(("error", f"{type(err).__name__}: {err}"), out)
    out.flush()


def main() -> None:
    """A worker's entry point (`python -c "from mlxwx.asr.workers import main; main()"`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which ends us
    out = os.fdopen(os.dup(1), "wb")  # the parent reads pickles here; stray prints go to stderr
    os.dup2(2, 1)
    try:
        _serve(sys.stdin.buffer, out)
    except OSError:  # the parent is gone
        os._exit(1)


if __name__ == "__main__":
    main()
