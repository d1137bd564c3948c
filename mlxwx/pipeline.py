"""The pipeline: the stages composed, inputs streamed through with bounded memory.

    inputs -> load -> detect_speech -> transcribe -> align -> diarize -> write

Each stage is a function over typed records that can be called alone: `load` (decode and
resample one input), `detect_speech` (VAD -> the input's chunks), `transcribe` (chunks of many
inputs decoded together, `mlxwx.asr.engine`), `align` and `diarize` (per finished input), and the
writers (`mlxwx.writers`). `Pipeline.run` composes them; `mlxwx run`, `mlxwx.transcribe` and
`Pipeline.transcribe` all go through it.

Streaming: a loader thread decodes inputs ahead of need (PyAV releases the GIL), at most
`prefetch` waiting. The main thread runs the VAD and the batched decoder (all MLX work stays on
one thread); the decoder pulls an input only when a lane needs one. On a CPU with worker
processes, a thread runs the VAD, and the main thread and the workers take parts of the inputs
as they free up (`mlxwx.asr.pool`). Each finished input goes through a bounded queue (`backlog`)
to a thread that runs the per-input stages and hands the result to the sink (the writer), while
the decoder works on the next inputs; its audio is released once the sink has it. Memory is
bounded by the inputs in flight, not by the run.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from . import _blas
from .align import Aligners, AlignOptions, align
from .asr import pool, workers
from .asr.engine import ProgressHook, SpeechFile, TranscribeOptions, Transcript, transcribe_stream
from .asr.model import WhisperModel, check_language, load_model
from .asr.noise import draw_seed
from .audio import read_audio
from .diarize import DiarizeOptions, Diarizers, diarize
from .errors import MlxwxError
from .types import SAMPLE_RATE, AudioChunk, Result, SpanSamples
from .vad.base import Vad
from .vad.methods import METHODS, load_vad, speech_regions, transcribe_options
from .vad.regions import Chunk, VadOptions, chunk_audio, merge_chunks

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "large-v3-turbo"
DEFAULT_VAD = "silero"  # the lowest corpus WER of the three methods (bench/RESULTS.md)
POOL_STAGE = "mlxwx.asr.pool:serve_parts"

AudioInput = str | os.PathLike | np.ndarray | mx.array
Stage = Callable[[Result, np.ndarray], Result]  # a per-input stage after transcribe
Sink = Callable[[int, "Result | MlxwxError"], None]  # what happens to each input's outcome


@dataclass(frozen=True)
class PipelineOptions:
    """Options of a run (the defaults `mlxwx run` uses).

    Attributes:
        transcribe: the transcribe stage's options (decoding, batching, fallback, workers).
        vad: speech detection before decoding: "silero", "pyannote", "energy", or None to
            decode all of the audio.
        vad_options: how the VAD's probabilities become chunks; None: the method's
            transcription defaults (`mlxwx.vad.transcribe_options`).
        align: the align stage's options (None: no word alignment). Aligners that need
            Whisper's token times have the transcribe stage compute them.
        diarize: the diarize stage's options (None: no diarization).
        prefetch: inputs decoded ahead of need.
        backlog: finished inputs waiting for the per-input stages before the decoder waits.
    """

    transcribe: TranscribeOptions = field(default_factory=TranscribeOptions)
    vad: str | None = DEFAULT_VAD
    vad_options: VadOptions | None = None
    align: AlignOptions | None = field(default_factory=AlignOptions)
    diarize: DiarizeOptions | None = None
    prefetch: int = 2
    backlog: int = 2

    def __post_init__(self) -> None:
        if self.vad is not None and self.vad not in METHODS:
            raise ValueError(f"unknown VAD method {self.vad!r}; choose from {', '.join(METHODS)}")
        if self.prefetch < 1 or self.backlog < 1:
            raise ValueError(
                f"prefetch and backlog must be >= 1, got {self.prefetch}, {self.backlog}"
            )


def chunking(options: PipelineOptions, vad: Vad | None) -> VadOptions:
    """The region and chunk options in force: `options.vad_options`, else the transcription
    defaults of the VAD's method (`VadOptions()` for a VAD that names none, or no VAD)."""
    if options.vad_options is not None:
        return options.vad_options
    method = getattr(vad, "method", None)  # mlxwx's VADs name themselves
    return transcribe_options(method) if method in METHODS else VadOptions()


# --- the stages ---------------------------------------------------------------------------


def load(item: AudioInput) -> np.ndarray:
    """The load stage: one input (a path, or samples) as (samples,) float32 at 16 kHz.
    Raises `AudioError` (one line) for an input that cannot be read."""
    return read_audio(item)


def _audio_chunk(file: int, audio: mx.array, chunk: Chunk) -> AudioChunk:
    pieces = tuple(
        SpanSamples(round(p.start * SAMPLE_RATE), round(p.end * SAMPLE_RATE)) for p in chunk.pieces
    )
    return AudioChunk(file, chunk_audio(audio, chunk), pieces)


def detect_speech(
    audio: mx.array, vad: Vad | None, options: VadOptions | None = None, file: int = 0
) -> list[AudioChunk]:
    """The detect_speech stage: the chunks of one input the recogniser reads, in time order.

    With a `vad`, its speech merged into chunks of at most `options.chunk_size` seconds
    (options None: `VadOptions()`); without, the whole input as one chunk. `file` is the input's
    position in the run."""
    if audio.shape[0] == 0:
        return []
    if vad is None:
        return [AudioChunk(file, audio, (SpanSamples(0, audio.shape[0]),))]
    options = options or VadOptions()
    chunks = merge_chunks(speech_regions(audio, vad, options), options)
    if not chunks:
        logger.info("no speech found in input %d", file)
    return [_audio_chunk(file, audio, c) for c in chunks]


def transcribe_files(
    wm: WhisperModel,
    vad: Vad | None,
    options: PipelineOptions,
    inputs: Iterable[tuple[int, np.ndarray]],
    progress: ProgressHook | None = None,
) -> Iterator[Transcript]:
    """detect_speech and transcribe in this process over (position, audio) inputs, read as the
    decoder needs them; a `Transcript` per input as each is finished."""
    options = for_chunks(options, vad is not None)
    return transcribe_stream(wm, speech_files(vad, options, inputs), options.transcribe, progress)


def speech_files(
    vad: Vad | None, options: PipelineOptions, inputs: Iterable[tuple[int, np.ndarray]]
) -> Iterator[SpeechFile]:
    """detect_speech over (position, audio) inputs, as they are read."""
    chunks = chunking(options, vad)
    for i, audio in inputs:
        yield speech_file(vad, chunks, i, audio)


def speech_file(vad: Vad | None, chunks: VadOptions, file: int, audio: np.ndarray) -> SpeechFile:
    """detect_speech over one input, as the transcribe stage takes it."""
    return SpeechFile(file, tuple(detect_speech(mx.array(audio), vad, chunks, file)))


def _host(samples: mx.array) -> np.ndarray:
    """MLX samples as numpy (floats as float32: numpy has no bfloat16)."""
    floating = mx.issubdtype(samples.dtype, mx.floating)
    return np.asarray(samples.astype(mx.float32) if floating else samples)


def share_lanes(options: PipelineOptions, k: int, n: int) -> PipelineOptions:
    """Process `k` of `n`'s options: its share of the run's `batch_size` lanes."""
    size = options.transcribe.batch_size
    lanes = max(1, size // n + (1 if k < size % n else 0))
    return replace(options, transcribe=replace(options.transcribe, batch_size=lanes))


def with_token_times(options: PipelineOptions) -> PipelineOptions:
    """`options` with the transcribe stage timing tokens when the aligner needs them."""
    if options.align is None or not options.align.token_times or options.transcribe.token_times:
        return options
    return replace(options, transcribe=replace(options.transcribe, token_times=True))


def for_chunks(options: PipelineOptions, vad: bool) -> PipelineOptions:
    """`options` for chunks cut by a VAD or not: without one, `finish_chunks` off (see
    `TranscribeOptions`)."""
    if vad or not options.transcribe.finish_chunks:
        return options
    return replace(options, transcribe=replace(options.transcribe, finish_chunks=False))


def text_language(options: PipelineOptions) -> str | None:
    """The language of the transcripts when it is not the audio's: English for translations."""
    return "en" if options.transcribe.decoding.task == "translate" else None


def source_name(item: AudioInput) -> str:
    return str(item) if isinstance(item, (str, os.PathLike)) else "<array>"


# --- streaming ----------------------------------------------------------------------------

_END = object()


def finishing_stages(
    options: PipelineOptions, aligners: Aligners, diarizers: Diarizers
) -> list[Stage]:
    """The per-input stages after transcribe (align, diarize), with the models they load on
    first use."""
    return [
        lambda r, a: align(r, a, options.align, aligners, text_language(options)),
        lambda r, a: diarize(r, a, options.diarize, diarizers),
    ]


class _Progress:
    """Progress of a run, reported through one hook from any thread: inputs loaded, chunk
    samples transcribed (this process and its workers together), inputs finished."""

    def __init__(self, hook: ProgressHook | None, inputs: int):
        self.hook, self.inputs = hook, inputs
        self.lock = threading.Lock()
        self.loaded = self.finished = 0
        self.own = (0, 0)
        self.workers: list[workers.Worker] = []

    def report(self, stage: str, completed: int, total: int) -> None:
        if self.hook is not None:
            with self.lock:
                self.hook(stage, completed=completed, total=total)

    def load(self) -> None:
        self.loaded += 1
        self.report("load", self.loaded, self.inputs)

    def transcribe(self) -> None:
        """Report the chunk samples decoded and found so far, in every process."""
        done = self.own[0] + sum(w.completed for w in self.workers)
        known = self.own[1] + sum(w.total for w in self.workers)
        self.report("transcribe", done, known)

    def engine(self) -> ProgressHook:
        """The hook of a transcribe stage in this process; a later one adds to the earlier."""
        base = self.own

        def hook(_stage: str = "", completed: int = 0, total: int = 0, **_: Any) -> None:
            self.own = (base[0] + completed, base[1] + total)
            self.transcribe()

        return hook

    def finish(self) -> None:
        self.finished += 1
        self.report("finish", self.finished, self.inputs)


class _Post:
    """The thread running the per-input stages and the sink on finished inputs."""

    def __init__(self, sink: Sink, stages: Sequence[Stage], backlog: int, progress: _Progress):
        self.sink, self.stages, self.progress = sink, stages, progress
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=backlog)
        self.thread = threading.Thread(target=self._run, name="mlxwx-post", daemon=True)
        self.thread.start()

    def put(self, index: int, outcome: Result | MlxwxError, audio: np.ndarray | None) -> None:
        """Queue an input's outcome (waits while `backlog` are queued)."""
        if not workers.put_while(self.queue, (index, outcome, audio), self.thread.is_alive):
            raise RuntimeError("the per-input stages thread has stopped")

    def _run(self) -> None:
        while (item := self.queue.get()) is not _END:
            index, outcome, audio = item
            if isinstance(outcome, Result):
                try:
                    for stage in self.stages:
                        outcome = stage(outcome, audio)
                except MlxwxError as err:
                    outcome = err
                except Exception as err:  # one input's failure never sinks the run
                    logger.exception("a per-input stage failed on input %d", index)
                    outcome = MlxwxError(f"{type(err).__name__}: {err}")
            try:
                self.sink(index, outcome)
            except Exception:
                logger.exception("the sink failed on input %d", index)
            self.progress.finish()

    def close(self) -> None:
        """Wait for the inputs already finished to go through."""
        self.queue.put(_END)
        self.thread.join()

    def abort(self, wait: float = 1.0) -> None:
        """Drop the finished inputs still queued, and wait at most `wait` seconds for the one
        in the stages (outputs are written whole or not at all)."""
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass
        self.queue.put(_END)
        self.thread.join(wait)


class _Feed:
    """The loader thread: decodes inputs ahead of need, for the main thread.

    It also fixes the number of processes of the run: once `MIN_SECONDS` of audio per possible
    process has been loaded (or all of it); inputs loaded before then wait, at most that much
    audio.
    """

    def __init__(self, run: _Run, inputs: Sequence[AudioInput]):
        self.run, self.inputs = run, inputs
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=run.options.prefetch)
        self.stop = threading.Event()
        self.count = 0
        self.decided = threading.Event()  # set once the number of processes is fixed
        self.thread = threading.Thread(target=self._load, name="mlxwx-load", daemon=True)
        self.thread.start()

    def _put(self, item: object) -> None:
        workers.put_while(self.queue, item, lambda: not self.stop.is_set())

    def _decide(self, waiting: list[tuple[int, np.ndarray]]) -> None:
        seconds = sum(a.size for _, a in waiting) / SAMPLE_RATE
        self.count = workers.count(self.run.options.transcribe.workers, self.run.wm, seconds)
        self.decided.set()
        for item in waiting:
            self._put(item)

    def _load(self) -> None:
        waiting: list[tuple[int, np.ndarray]] | None = []
        most = workers.count(self.run.options.transcribe.workers, self.run.wm)
        enough = most * workers.MIN_SECONDS * SAMPLE_RATE
        try:
            for index, item in enumerate(self.inputs):
                if self.stop.is_set():
                    return
                audio = self._read(index, item)
                if audio is None:
                    continue
                if waiting is None:
                    self._put((index, audio))
                    continue
                waiting.append((index, audio))
                if most == 1 or sum(a.size for _, a in waiting) >= enough:
                    self._decide(waiting)
                    waiting = None
            if waiting is not None:
                self._decide(waiting)
        except Exception as err:  # raised on the main thread, where the run stops
            self._put(err)
        finally:
            self.count = self.count or 1
            self.decided.set()
            self._put(_END)

    def _read(self, index: int, item: AudioInput) -> np.ndarray | None:
        try:
            audio = load(item)
        except MlxwxError as err:
            if self.run.fail_fast:
                self._put(err)
                self.stop.set()
            else:
                self.run.post.put(index, err, None)
            return None
        self.run.keep(index, audio)
        self.run.progress.load()
        return audio

    def processes(self) -> int:
        """The number of processes that decode, once the loader has fixed it."""
        self.decided.wait()
        return self.count

    def own(self) -> Iterator[tuple[int, np.ndarray]]:
        """The inputs, as the decoder (or the VAD of a shared run) asks for them."""
        while (item := self.queue.get()) is not _END:
            if isinstance(item, Exception):
                raise item
            yield item

    def close(self) -> None:
        """Stop loading (after an error or an interrupt)."""
        self.stop.set()


class _Run:
    """One run's shared state: the audio of inputs in flight, the threads, the progress."""

    def __init__(
        self,
        wm: WhisperModel,
        options: PipelineOptions,
        post: _Post,
        progress: _Progress,
        fail_fast: bool,
    ):
        self.wm, self.options, self.post, self.progress = wm, options, post, progress
        self.fail_fast = fail_fast
        self.lock = threading.Lock()
        self.audio: dict[int, np.ndarray] = {}  # inputs loaded and not yet finished
        self.names: list[str] = []
        self.blas_before: int | None = None

    def keep(self, index: int, audio: np.ndarray) -> None:
        with self.lock:
            self.audio[index] = audio

    def blas_threads(self, threads: int) -> None:
        """The BLAS threads of this process from now on (the count before the run is kept,
        to be restored at its end)."""
        before = _blas.set_threads(threads)
        if self.blas_before is None:
            self.blas_before = before

    def finished(self, transcript: Transcript) -> None:
        """Hand a transcript and its input's audio to the per-input stages; the run lets go of
        the audio (the stages hold it until the sink has the result)."""
        with self.lock:
            audio = self.audio.pop(transcript.file)
        duration = audio.size / SAMPLE_RATE
        result = Result.from_windows(
            transcript.windows, transcript.language, duration, self.names[transcript.file]
        )
        self.post.put(transcript.file, result, audio)


class _Speech:
    """The thread that runs detect_speech over the loaded inputs of a shared run and puts their
    parts on the board (MLX arrays are made and read on this thread); its error, if any, is
    raised on the main thread by `join`."""

    def __init__(self, board: pool.Board, vad: Vad | None, options: PipelineOptions, feed: _Feed):
        self.board = board
        self.error: BaseException | None = None
        args = (vad, options, feed)
        self.thread = threading.Thread(target=self._run, args=args, name="mlxwx-vad", daemon=True)
        self.thread.start()

    def _run(self, vad: Vad | None, options: PipelineOptions, feed: _Feed) -> None:
        try:
            chunks = chunking(options, vad)
            for i, audio in feed.own():
                self.board.add(speech_file(vad, chunks, i, audio), audio)
                if self.board.aborted:
                    return
        except BaseException as err:
            self.error = err
            self.board.abort()
        finally:
            self.board.close()

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def _shared(run: _Run, feed: _Feed, vad: Vad | None, n: int) -> None:
    """The transcribe stage in this process and `n - 1` worker processes, all taking parts of
    the inputs as they free up (`mlxwx.asr.pool`); a thread of this process runs the VAD. Each
    process has its share of the cores' BLAS threads; once a worker has nothing left to take,
    this process (decoding the run's last parts) takes that worker's threads too. Parts of a
    worker that fails go to the other processes."""
    wm, options = run.wm, run.options
    detect = wm.tokenizer.multilingual and options.transcribe.decoding.language is None

    def finished(part: Transcript) -> None:
        if (whole := board.done(part)) is not None:
            run.finished(whole)

    cores = os.cpu_count() or 1
    threads = max(1, cores // n)
    run.blas_threads(threads)

    def idle(takers: frozenset[int]) -> None:  # the cores of processes done for the run
        run.blas_threads(min(cores, threads * (1 + len(takers - {0}))))

    board = pool.Board(options.transcribe, detect, options.transcribe.batch_size, n, idle=idle)
    crew, speech = [], None
    try:
        for k in range(1, n):
            job = workers.Job.of(wm, POOL_STAGE, share_lanes(options, k, n).transcribe)
            worker = workers.Worker(
                job,
                threads,
                partial(board.take, taker=k),
                finished,
                board.give_back,
                run.progress.transcribe,
            )
            crew.append(worker)
            run.progress.workers.append(worker)
        speech = _Speech(board, vad, options, feed)
        mine = share_lanes(options, 0, n).transcribe
        hook = run.progress.engine()
        for part in transcribe_stream(wm, pool.OnDevice(board), mine, hook):
            finished(part)
        speech.join()
        for worker in crew:
            worker.join()
    except BaseException:
        board.abort()
        for worker in crew:
            worker.kill()
        if speech is not None:  # an MLX op still running at exit aborts the process
            speech.thread.join(30)
        raise


class Pipeline:
    """Loaded models and the options of runs: `run` streams inputs through the stages.

    whisper: the checkpoint the transcribe stage decodes with. The VAD that `options.vad` names is
    loaded on first use, unless `vad` is given: any object that scores frames (`mlxwx.vad.Vad`),
    used instead (the run then stays in one process: workers load VADs by name).
    """

    def __init__(
        self, whisper: WhisperModel, options: PipelineOptions | None = None, vad: Vad | None = None
    ):
        self.whisper = whisper
        self.options = options or PipelineOptions()
        self.custom_vad = vad
        self._vads: dict[str, Vad] = {}
        self.aligners = Aligners()  # wav2vec2 models, loaded on first use
        self.diarizers = Diarizers()  # the pyannote pipeline, RTTM files: read on first use

    def vad(self, method: str | None) -> Vad | None:
        """The VAD this pipeline runs for `method` (None: no VAD, unless one was given)."""
        if self.custom_vad is not None:
            return self.custom_vad
        if method is None:
            return None
        if method not in self._vads:
            self._vads[method] = load_vad(method)
        return self._vads[method]

    def stages(self, options: PipelineOptions) -> list[Stage]:
        """The per-input stages after transcribe."""
        return finishing_stages(options, self.aligners, self.diarizers)

    def run(
        self,
        inputs: Sequence[AudioInput],
        sink: Sink,
        options: PipelineOptions | None = None,
        progress: ProgressHook | None = None,
        extra_stages: Sequence[Stage] = (),
        fail_fast: bool = False,
    ) -> None:
        """Stream `inputs` through the stages; `sink(index, outcome)` gets each input's
        `Result`, or the `MlxwxError` that stopped it, as soon as it is done (in a thread of
        the run, not in input order). An input that cannot be loaded fails alone, unless
        `fail_fast`: then its error is raised here and the run stops. A language the model
        cannot decode raises `ModelError` before any input is read."""
        options = with_token_times(options or self.options)
        check_language(self.whisper, options.transcribe.decoding.language)
        vad = self.vad(options.vad)
        options = for_chunks(options, vad is not None)
        if self.custom_vad is not None:
            options = replace(options, transcribe=replace(options.transcribe, workers=1))
        if options.transcribe.seed is None:  # one seed for every process of the run
            options = replace(options, transcribe=replace(options.transcribe, seed=draw_seed()))
        tracker = _Progress(progress, len(inputs))
        post = _Post(sink, [*self.stages(options), *extra_stages], options.backlog, tracker)
        run = _Run(self.whisper, options, post, tracker, fail_fast)
        run.names = [source_name(x) for x in inputs]
        # MLX arrays are read here: a lazy array can be evaluated only on its own thread
        items = [_host(x) if isinstance(x, mx.array) else x for x in inputs]
        feed = _Feed(run, items)
        try:
            if feed.processes() == 1:
                hook = tracker.engine()
                for transcript in transcribe_files(self.whisper, vad, options, feed.own(), hook):
                    run.finished(transcript)
            else:
                _shared(run, feed, vad, feed.processes())
        except BaseException:
            feed.close()
            post.abort()
            raise
        else:
            post.close()
        finally:
            if run.blas_before is not None:
                _blas.set_threads(run.blas_before)

    def transcribe(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        options: PipelineOptions | None = None,
        progress: ProgressHook | None = None,
    ) -> Result | list[Result]:
        """Transcribe one input (a path, or 16 kHz mono samples) or a list of them, decoded
        together: a `Result` for one input, a list in input order for a list. Raises
        `AudioError` for an input that cannot be loaded."""
        items: list[AudioInput] = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]  # type: ignore[list-item]
        results: dict[int, Result] = {}
        errors: list[MlxwxError] = []

        def keep(index: int, outcome: Result | MlxwxError) -> None:
            if isinstance(outcome, Result):
                results[index] = outcome
            else:
                errors.append(outcome)

        self.run(items, keep, options, progress, fail_fast=True)
        if errors:
            raise errors[0]
        ordered = [results[i] for i in range(len(items))]
        return ordered if isinstance(inputs, (list, tuple)) else ordered[0]


def load_pipeline(
    model: str | Path | WhisperModel = DEFAULT_MODEL,
    options: PipelineOptions | None = None,
    dtype: mx.Dtype | None = None,
) -> Pipeline:
    """A `Pipeline` for `model`: `tiny.en`, `base` (offline packs), `large-v3-turbo`, ... (Hugging
    Face repos of mlx-community), a folder, a repo id, or a loaded `WhisperModel`."""
    whisper = model if isinstance(model, WhisperModel) else load_model(model, dtype)
    return Pipeline(whisper, options)


def transcribe(
    inputs: AudioInput | Sequence[AudioInput],
    model: str | Path | WhisperModel | Pipeline = DEFAULT_MODEL,
    options: PipelineOptions | None = None,
    progress: ProgressHook | None = None,
) -> Result | list[Result]:
    """Transcribe one input or a list of them with `model` (see `load_pipeline`), through the
    same stages and defaults as `mlxwx run` (Silero VAD, beam 5, temperature fallback)."""
    pipeline = model if isinstance(model, Pipeline) else load_pipeline(model)
    return pipeline.transcribe(inputs, options, progress)
