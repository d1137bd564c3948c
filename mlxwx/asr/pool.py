"""The transcribe stage shared by this process and CPU worker processes, which take work as
they free up.

A thread of this process finds each input's speech (its chunks) and cuts it into parts: one VAD
chunk each (all of an input's chunks with `condition_on_previous_text`, which carries text from
one to the next; an input read without VAD in parts of about UNIT_SAMPLES, cut at quiet
moments). Parts wait on a shared board, at most `waiting` of them; this process's lanes and each
worker process's (`mlxwx.asr.workers`) take the next part whenever one of them is free (a
process with busy lanes no more than its even share of the work left), so no process idles
while another holds a slow window. A process with a busy lane is never kept
waiting for a part (a part may wait for its input's language, found by another part in
flight). Parts come back as transcripts and are put together per input, which is finished with
its last part. A multilingual model with no language given detects an input's language on its
first part (its first speech chunk, as in one process); its other parts wait for that language
(ahead of everything else once it is known).

Every window samples its fallback from its own noise (`mlxwx.asr.noise`), so where and with what
a part is decoded does not change its text: the run gives the transcripts of one process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import mlx.core as mx
import numpy as np

from ..audio import N_SAMPLES
from ..types import AudioChunk
from .engine import SpeechFile, TranscribeOptions, Transcript, transcribe_stream
from .lanes import MIN_PIECE, quiet_cut
from .model import WhisperModel

logger = logging.getLogger(__name__)
UNIT_SAMPLES = 4 * N_SAMPLES  # parts of an input read without VAD: about two minutes
PART_BASE = 1 << 40  # part keys start here, above any input's position


def cut(chunk: AudioChunk, size: int = UNIT_SAMPLES) -> list[AudioChunk]:
    """`chunk` in parts of about `size` samples (none shorter), cut at quiet moments."""
    parts = []
    while chunk.length >= 2 * size:
        at = quiet_cut(chunk.audio, size, MIN_PIECE, chunk.length - MIN_PIECE)
        left, chunk = chunk.split(at)
        parts.append(left)
    return [*parts, chunk]


def parts(item: SpeechFile, options: TranscribeOptions) -> list[tuple[AudioChunk, ...]]:
    """The parts of an input that processes take one at a time (one, empty, for no speech)."""
    if options.condition_on_previous_text or not item.chunks:
        return [item.chunks]
    return [(piece,) for chunk in item.chunks for piece in cut(chunk)]


def to_host(item: SpeechFile, samples: np.ndarray | None = None) -> SpeechFile:
    """`item` with its chunks' samples as numpy (for a pipe); given its input's own `samples`,
    a chunk of one piece is a view of them instead of a copy (what waits on the board then
    costs no memory beside the input's audio, which the run holds anyway)."""

    def host(chunk: AudioChunk) -> np.ndarray:
        if samples is not None and len(chunk.pieces) == 1:
            piece = chunk.pieces[0]
            return samples[piece.start : piece.end]
        return np.asarray(chunk.audio)

    return replace(item, chunks=tuple(replace(c, audio=host(c)) for c in item.chunks))


def to_device(item: SpeechFile) -> SpeechFile:
    chunks = tuple(replace(c, audio=mx.array(c.audio)) for c in item.chunks)
    return replace(item, chunks=chunks)


@dataclass
class _Pace:
    """When each part in flight was taken, and the longest a part was out (a process's parts
    come back together, at the end of its batch: a batch's time; the longest, so that a part
    back at once, as one without speech, does not make the others' batches look done): how much
    of a process's batch is still to do."""

    clock: Callable[[], float]
    taken: dict[int, float] = field(default_factory=dict)  # part key -> when it was taken
    longest: float | None = None

    def took(self, key: int) -> None:
        self.taken[key] = self.clock()

    def back(self, key: int, done: bool = True) -> None:
        """Part `key` came back: `done`, or handed back by a process that failed."""
        at = self.taken.pop(key, None)
        if at is not None and done:
            self.longest = max(self.longest or 0.0, self.clock() - at)

    def left(self, keys: list[int]) -> float:
        """The share still to do of a batch holding parts `keys`, by the age of its oldest
        against the longest time out (all of it before any part came back)."""
        if not self.longest or not keys:
            return 1.0
        age = self.clock() - min(self.taken.get(k, self.clock()) for k in keys)
        return min(1.0, max(0.0, 1.0 - age / self.longest))


@dataclass
class _Input:
    parts: int  # parts not yet transcribed
    language: str | None = None
    held: list[SpeechFile] = field(default_factory=list)  # parts waiting for the language
    windows: list = field(default_factory=list)


class Board:
    """The parts waiting for a process, and the inputs they are put back together into.

    `takers` processes take parts (numbered from 0). A process with a busy lane takes one more
    only while it holds less than its even share of the work left: the parts waiting, its own in
    flight, and what remains of the others' batches. So the last parts of a run, or
    the few parts of one short input, are split between the processes instead of filling the
    lanes of the first to ask: a process that frees up just before another finishes its batch
    takes half of what waits, not all of it, and all of it when the other has just begun
    (`_Pace`). An idle process always takes. `clock`: seconds, for that pace.

    `idle(takers)` is called (under the board's lock) each time a process starts waiting with
    the board closed and empty: `takers` are the processes done with the run (unless a failed
    one gives parts back), whose cores the others may use."""

    def __init__(
        self,
        options: TranscribeOptions,
        detect: bool,
        waiting: int,
        takers: int = 1,
        clock: Callable[[], float] = time.monotonic,
        idle: Callable[[frozenset[int]], None] = lambda _: None,
    ):
        self.options, self.detect, self.waiting = options, detect, waiting
        self.takers = takers
        self.pace = _Pace(clock)
        self.holder: dict[int, int] = {}  # part key -> the taker it is in flight with
        self.cond = threading.Condition()
        self.items: deque[SpeechFile] = deque()
        self.inputs: dict[int, _Input] = {}
        self.owner: dict[int, int] = {}  # part key -> input
        self.next_key = PART_BASE
        self.closed = self.aborted = False
        self.on_idle, self.idle = idle, frozenset[int]()

    def add(self, item: SpeechFile, samples: np.ndarray | None = None) -> None:
        """Put an input's parts on the board (its first alone while its language is unknown),
        waiting while `waiting` parts are there (until the run is aborted). `samples`: the
        input's audio as numpy, which parts of one piece are views of (`to_host`)."""
        cut_parts = parts(item, self.options)
        pieces = []
        for chunks in cut_parts:
            key, self.next_key = self.next_key, self.next_key + 1
            pieces.append(
                SpeechFile(key, tuple(replace(c, file=key) for c in chunks), None, item.file)
            )
        pieces = [to_host(p, samples) for p in pieces]  # MLX arrays read on their own thread
        state = _Input(len(pieces))
        if self.detect and len(pieces) > 1:
            state.held = pieces[1:]
            pieces = pieces[:1]
        with self.cond:
            self.inputs[item.file] = state
            self.owner.update((p.file, item.file) for p in [*pieces, *state.held])
            while len(self.items) >= self.waiting and not self.aborted:
                self.cond.wait(0.5)
            self.items.extend(pieces)
            self.cond.notify_all()

    def take(self, wait: bool = True, taker: int = 0) -> tuple[int, SpeechFile] | None:
        """The next part for process `taker`, as (key, part); None when none is ready, or it
        holds its share, and not `wait` (its lanes are busy). Raises StopIteration once no part
        is left or will be: the board is closed and every part is done (a part in flight may
        yet come back from a process that fails), or the run was aborted."""
        with self.cond:
            while not self.items:
                if self.aborted or (self.closed and not self.owner):
                    raise StopIteration
                if not wait:
                    return None
                if self.closed and taker not in self.idle:  # done, unless parts are given back
                    self.idle |= {taker}
                    self.on_idle(self.idle)
                self.cond.wait(0.5)
            if not wait and self._holds_share(taker):
                return None
            self.idle -= {taker}
            item = self.items.popleft()
            self.pace.took(item.file)
            self.holder[item.file] = taker
            self.cond.notify_all()
            return item.file, item

    def _holds_share(self, taker: int) -> bool:
        keys: dict[int, list[int]] = {}
        for key, t in self.holder.items():
            keys.setdefault(t, []).append(key)
        mine = len(keys.get(taker, []))
        others = sum(len(k) * self.pace.left(k) for t, k in keys.items() if t != taker)
        return mine * self.takers >= len(self.items) + mine + others

    def give_back(self, items: list[tuple[int, SpeechFile]]) -> None:
        """Parts a failed process did not finish: first in line for the others."""
        with self.cond:
            for key, _ in items:
                self.holder.pop(key, None)
                self.pace.back(key, done=False)
            self.items.extendleft(reversed([p for _, p in items]))
            self.cond.notify_all()

    def done(self, part: Transcript) -> Transcript | None:
        """Take a part's transcript; its input's `Transcript` when that was its last part."""
        with self.cond:
            self.holder.pop(part.file, None)
            self.pace.back(part.file)
            file = self.owner.pop(part.file)
            state = self.inputs[file]
            state.language = state.language or part.language
            state.windows += [replace(w, file=file) for w in part.windows]
            if state.held:  # its first part: the others now know the language
                held = [replace(p, language=part.language) for p in state.held]
                state.held = []
                self.items.extendleft(reversed(held))
                self.cond.notify_all()
            state.parts -= 1
            self.cond.notify_all()  # the last part done ends the takers' wait
            if state.parts:
                return None
            del self.inputs[file]
            return Transcript(file, state.language, tuple(state.windows))

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def abort(self) -> None:
        with self.cond:
            self.aborted = True
            self.cond.notify_all()


@dataclass
class OnDevice:
    """Parts taken from `parts` (a `Board`, or a worker's requests to its parent), as the
    transcribe stage's `Source`: samples back on the device."""

    parts: Any  # take(wait) -> (key, SpeechFile) | None, StopIteration at the end

    def pull(self, wait: bool) -> SpeechFile | None:
        got = self.parts.take(wait)
        return None if got is None else to_device(got[1])


def serve_parts(
    wm: WhisperModel, options: TranscribeOptions, parts: Any, progress: Callable[..., None]
) -> Iterator[Transcript]:
    """What a worker process runs: the transcribe stage over the parts it asks for."""
    return transcribe_stream(wm, OnDevice(parts), options, progress)
