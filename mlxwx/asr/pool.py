"""The transcribe stage shared by CPU worker processes that take work as they free up.

This process finds each input's speech (its chunks) and cuts it into parts: one VAD chunk each
(all of an input's chunks with `condition_on_previous_text`, which carries text from one to the
next; an input read without VAD in parts of about UNIT_SAMPLES, cut at quiet moments). Parts wait
on a shared board, at most `waiting` of them; each worker process (`mlxwx.asr.workers`) takes
the next part whenever one of its lanes is free, so no process idles while another holds a slow
window. Parts come back as transcripts and are put together per input, which is finished with
its last part. A multilingual model with no language given detects an input's language on its
first part (its first speech chunk, as in one process); its other parts wait for that language
(ahead of everything else once it is known).

Every window samples its fallback from its own noise (`mlxwx.asr.noise`), so where and with what
a part is decoded does not change its text: the run gives the transcripts of one process.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

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


def to_host(item: SpeechFile) -> SpeechFile:
    """`item` with its chunks' samples as numpy (for a pipe)."""
    chunks = tuple(replace(c, audio=np.asarray(c.audio)) for c in item.chunks)
    return replace(item, chunks=chunks)


def to_device(item: SpeechFile) -> SpeechFile:
    chunks = tuple(replace(c, audio=mx.array(c.audio)) for c in item.chunks)
    return replace(item, chunks=chunks)


@dataclass
class _Input:
    parts: int  # parts not yet transcribed
    language: str | None = None
    held: list[SpeechFile] = field(default_factory=list)  # parts waiting for the language
    windows: list = field(default_factory=list)


class Board:
    """The parts waiting for a process, and the inputs they are put back together into."""

    def __init__(self, options: TranscribeOptions, detect: bool, waiting: int):
        self.options, self.detect, self.waiting = options, detect, waiting
        self.cond = threading.Condition()
        self.items: deque[SpeechFile] = deque()
        self.inputs: dict[int, _Input] = {}
        self.owner: dict[int, int] = {}  # part key -> input
        self.next_key = PART_BASE
        self.closed = self.aborted = False

    def add(self, item: SpeechFile, alive: Callable[[], bool]) -> None:
        """Put an input's parts on the board (its first alone while its language is unknown),
        waiting while `waiting` parts are there and some process (`alive()`) takes them."""
        cut_parts = parts(item, self.options)
        pieces = []
        for chunks in cut_parts:
            key, self.next_key = self.next_key, self.next_key + 1
            self.owner[key] = item.file
            pieces.append(
                SpeechFile(key, tuple(replace(c, file=key) for c in chunks), None, item.file)
            )
        pieces = [to_host(p) for p in pieces]  # here: MLX arrays are read on their own thread
        state = _Input(len(pieces))
        if self.detect and len(pieces) > 1:
            state.held = pieces[1:]
            pieces = pieces[:1]
        with self.cond:
            self.inputs[item.file] = state
            while len(self.items) >= self.waiting and alive() and not self.aborted:
                self.cond.wait(0.5)
            self.items.extend(pieces)
            self.cond.notify_all()

    def take(self) -> tuple[int, SpeechFile] | None:
        """The next part for a process; None once no part is or will be left."""
        with self.cond:
            while not self.items:
                held = any(s.held for s in self.inputs.values())
                if self.aborted or (self.closed and not held):
                    return None
                self.cond.wait(0.5)
            item = self.items.popleft()
            self.cond.notify_all()
            return item.file, item

    def give_back(self, items: list[tuple[int, SpeechFile]]) -> None:
        """Parts a failed process did not finish: first in line for the others."""
        with self.cond:
            self.items.extendleft(reversed([p for _, p in items]))
            self.cond.notify_all()

    def done(self, part: Transcript) -> Transcript | None:
        """Take a part's transcript; its input's `Transcript` when that was its last part."""
        with self.cond:
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

    def rest(self) -> list[SpeechFile]:
        """Every part not transcribed, for this process (held parts detect their own language
        when their first part's is not known)."""
        with self.cond:
            left = list(self.items)
            self.items.clear()
            for state in self.inputs.values():
                left += [replace(p, language=state.language) for p in state.held]
                state.held = []
            return [to_device(p) for p in left]


def serve_parts(
    wm: WhisperModel,
    options: TranscribeOptions,
    inputs: Iterator[tuple[int, SpeechFile]],
    progress: Callable[..., None],
) -> Iterator[Transcript]:
    """What a worker process runs: the transcribe stage over the parts it is sent."""
    return transcribe_stream(wm, (to_device(item) for _, item in inputs), options, progress)


def finish_here(
    wm: WhisperModel,
    board: Board,
    files: Iterable[SpeechFile],
    options: TranscribeOptions,
    progress: Callable[..., None] | None,
) -> Iterator[Transcript]:
    """The parts left on the board, then `files`, transcribed in this process (when no worker
    is left): a `Transcript` per input as each is finished."""

    def stream() -> Iterator[SpeechFile]:
        yield from board.rest()
        yield from files

    for transcript in transcribe_stream(wm, stream(), options, progress):
        if transcript.file < PART_BASE:
            yield transcript
        elif (whole := board.done(transcript)) is not None:
            yield whole
