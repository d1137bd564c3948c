"""The transcribe stage: chunks of many inputs decoded together, window by window, in lanes.

Up to `batch_size` lanes (`mlxwx.asr.lanes`) each read a run of consecutive chunks of one input;
each batch decodes the next 30 s window of every lane together, so many short inputs fill a batch
as well as one long input. Windows failing the quality checks are decoded again, alone and
together, at rising temperatures (per-row fallback).

Inputs are streamed: the next one is pulled only when a lane has nothing left to read, and each
input's `Transcript` is yielded as soon as its last window is decoded, so a run holds only the
inputs in flight. An input's chunks go to the lanes one each, in input order, so the earliest
inputs finish first (with `condition_on_previous_text`, one lane reads all of an input's chunks,
carrying the text from one to the next). When no input is left, idle lanes take half of the
busiest lanes' work. Lanes are filled the same way on every run (the stream is waited for, never
raced), so a seeded run decodes the same batches every time.

A multilingual model with no language given detects each input's language on the first window
of the input that is decoded (its first speech chunk with a VAD), from that window's features.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Protocol, runtime_checkable

import mlx.core as mx
import numpy as np

from ..audio import N_SAMPLES, SAMPLE_RATE, window_mel
from ..types import AudioChunk, Window
from .decoding import (
    CrossKV,
    DecodingOptions,
    DecodingResult,
    decode_features,
    detect_language,
    encode,
    take_kv,
    window_kv,
)
from .lanes import Lane
from .model import WhisperModel
from .noise import draw_seed, mix
from .segments import Thresholds, build_window
from .timing import annotate

logger = logging.getLogger(__name__)
SILENCE_DBFS = -60.0  # a window whose loudest 20 ms frame is below this holds no speech
# Loop guard: a sampled attempt decodes at most this many tokens a second of audio, plus the
# margin (timestamps included; fast read speech is ~4 text tokens and ~0.5 segments a second).
SAMPLE_TOKENS_PER_SECOND = 8
SAMPLE_TOKENS_MARGIN = 24
# A window holding the end of its chunk reads it to its last END_SECONDS (`finish_chunks`).
END_SECONDS = 0.3

ProgressHook = Callable[..., None]


@dataclass(frozen=True)
class TranscribeOptions:
    """Options of the transcribe stage (the defaults `mlxwx run` uses).

    Attributes:
        decoding: options of each window's first decoding pass (beam 5; 5 samples a window
            when falling back to sampling).
        batch_size: windows decoded together (lanes).
        temperatures: fallback ladder; a window failing the checks below is decoded again at the
            next temperature.
        compression_ratio_threshold: fail when the text's gzip ratio is above (repetition).
        logprob_threshold: fail when the average token log-probability is below.
        no_speech_threshold: with a failing log-prob, a no-speech probability above this marks
            the window as silence: no fallback, no text. None: never silence.
        condition_on_previous_text: prompt each window with the previous window's text.
        initial_prompt: text that prompts every window that has no previous text.
        hotwords: words or phrases to favour, prompted before every window.
        workers: processes decoding on the CPU, each taking parts of the inputs as it frees up
            (`mlxwx.asr.pool`); None: one per core, at most two. Ignored on a GPU.
        token_times: time each window's text tokens by Whisper's cross-attention while its
            encoder features are at hand (`mlxwx.asr.timing`; `--align whisper` needs them).
        finish_chunks: a window that holds the end of its chunk decodes it to the end: its text
            may not end after a pair of timestamps (Whisper's sign that an utterance runs past
            the window, which its seek rule decodes again in a window of its own) earlier than
            END_SECONDS before the end of its audio, and a chunk's last END_SECONDS are never
            a window of their own. False: openai-whisper's seek rule. The pipeline follows it
            only with a VAD, whose chunks end where speech ends: without one the audio after the
            last timestamp may hold none, and a text made to go on there is made up.
        loop_guard: a bounded fallback ladder: a row whose text loops ends at once and its
            window fails (`mlxwx.asr.guards`); samples at temperatures above 0 end after
            SAMPLE_TOKENS_PER_SECOND tokens a second of the window's audio (plus
            SAMPLE_TOKENS_MARGIN); a window that fails every rung keeps its attempt with the
            best average log-probability (the temperature-0 one when it is best). False:
            openai-whisper's ladder (every attempt free to run to 224 tokens, the last kept).
        seed: the key of the fallback's sampling noise; each window's noise follows from it,
            its input and its place in the input (`mlxwx.asr.noise`), so a window samples the
            same tokens in any batch and any process. None: drawn from MLX's random state when
            the run starts (`mx.random.seed` makes runs repeatable).
    """

    decoding: DecodingOptions = field(default_factory=DecodingOptions)
    batch_size: int = 16
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    condition_on_previous_text: bool = False
    initial_prompt: str | None = None
    hotwords: str | None = None
    workers: int | None = None
    token_times: bool = False
    finish_chunks: bool = True
    loop_guard: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise ValueError(f"temperatures must be non-negative, got {self.temperatures}")

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(
            self.compression_ratio_threshold, self.logprob_threshold, self.no_speech_threshold
        )


@dataclass(frozen=True)
class SpeechFile:
    """An input ready for the transcribe stage: its chunks in time order (none: no speech)."""

    file: int  # the input's position in the run
    chunks: tuple[AudioChunk, ...]
    language: str | None = None  # None: the options' language, else detected
    source: int | None = None  # the input its chunks come from, when not `file` (a part of one)


@runtime_checkable
class Source(Protocol):
    """Inputs handed out as lanes free up, where some may not be ready yet (the parts of a run
    shared by processes): `pull(wait)` gives the next input, or None when none is ready and
    `wait` is false (the lanes go on with what they have and ask again after their next
    window); it raises StopIteration after the last input."""

    def pull(self, wait: bool) -> SpeechFile | None: ...


@dataclass
class _Listed:
    """An iterable of inputs as a `Source`: every input is ready when asked for."""

    items: Iterator[SpeechFile]

    def pull(self, wait: bool) -> SpeechFile | None:
        return next(self.items)


@dataclass(frozen=True)
class Transcript:
    """What the transcribe stage found in one input: its language and its windows."""

    file: int
    language: str | None
    windows: tuple[Window, ...]


def is_quiet(audio: mx.array, start: int, end: int) -> bool:
    """True when no 20 ms frame of samples [start, min(end, start + 30 s)) reaches SILENCE_DBFS:
    digital silence, where Whisper would otherwise hallucinate."""
    chunk = audio[start : min(end, start + N_SAMPLES)]
    frame = SAMPLE_RATE // 50
    n = chunk.shape[0] // frame
    if n == 0:
        return bool(chunk.size == 0 or np.abs(np.asarray(chunk)).max() < 10 ** (SILENCE_DBFS / 20))
    power = mx.mean(chunk[: n * frame].reshape(n, frame) ** 2, axis=1)
    return bool(np.asarray(mx.max(power)) < 10 ** (SILENCE_DBFS / 10))


class Rows(NamedTuple):
    """Per window of a batch: its seconds of audio (for the loop guard's length limit of
    samples; None: no limit), the key of its sampling noise, and the second before which its
    text may not end after a timestamp pair (`finish_chunks`; None: no such rule)."""

    seconds: list[float] | None
    seeds: list[int]
    ends: list[float | None] | None


def sample_limit(seconds: float) -> int:
    """The most tokens a sampled attempt at a window of `seconds` of audio may decode."""
    return int(SAMPLE_TOKENS_PER_SECOND * seconds) + SAMPLE_TOKENS_MARGIN


def decode_with_fallback(
    wm: WhisperModel,
    audio: mx.array,
    options: TranscribeOptions,
    languages: list[str | None],
    contexts: list[list[int]],
    windows: Rows | None = None,
    cross_kv: CrossKV | None = None,
) -> list[DecodingResult]:
    """Decode every window; re-decode only the failing ones, together, at the next temperature.
    windows: what each row holds (default: keys drawn from MLX's random state, no limits);
    cross_kv: the windows' cross-attention keys and values, computed once for every rung."""
    results: list[DecodingResult] = []
    best: list[DecodingResult] = []
    todo = list(range(audio.shape[0]))
    thresholds, guard = options.thresholds, options.loop_guard
    seconds, seeds, ends = windows or Rows(None, [draw_seed() for _ in todo], None)
    cross_kv = cross_kv or window_kv(wm, audio, options.decoding)
    for temperature in options.temperatures:
        opts = replace(options.decoding, temperature=temperature, stop_loops=guard)
        every = len(todo) == audio.shape[0]
        rows = audio if every else audio[mx.array(todo)]
        limits = None
        if guard and temperature > 0 and seconds is not None:
            limits = [sample_limit(seconds[i]) for i in todo]
        found = decode_features(
            wm,
            rows,
            opts,
            [languages[i] for i in todo],
            [contexts[i] for i in todo],
            limits,
            [seeds[i] for i in todo],
            cross_kv if every else take_kv(cross_kv, todo),
            None if ends is None else [ends[i] for i in todo],
        )
        if not results:
            results, best = list(found), list(found)
        else:
            for i, r in zip(todo, found, strict=True):
                results[i] = r
                best[i] = r if r.avg_logprob > best[i].avg_logprob else best[i]
        todo = [i for i in todo if thresholds.needs_fallback(results[i])]
        if not todo:
            break
    if guard:
        for i in todo:  # failed every rung: the likeliest attempt
            results[i] = best[i]
    return results


def prompt_contexts(
    wm: WhisperModel, lanes: list[Lane], options: TranscribeOptions
) -> list[list[int]]:
    """Each lane's prompt: hotwords, then the previous window's text or the initial prompt."""
    tok = wm.tokenizer
    hot = tok.encode(" " + options.hotwords.strip()) if options.hotwords else []
    initial = tok.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else []
    return [hot + (lane.context or initial) for lane in lanes]


@dataclass
class _Open:
    """An input being transcribed: its language, chunks not yet read to the end, windows."""

    language: str | None
    chunks: int
    source: int  # the input of its chunks (keys of the sampling noise)
    windows: list[Window] = field(default_factory=list)


class Engine:
    """The lanes of one transcribe stage over a stream of inputs (see the module docstring)."""

    def __init__(
        self,
        wm: WhisperModel,
        files: Iterable[SpeechFile] | Source,
        options: TranscribeOptions,
        progress: ProgressHook | None = None,
    ):
        self.wm, self.progress = wm, progress
        self.options = options if options.seed is not None else replace(options, seed=draw_seed())
        self.files = files if isinstance(files, Source) else _Listed(iter(files))
        self.exhausted = False
        self.lanes: list[Lane | None] = [None] * options.batch_size
        self.queue: list[list[AudioChunk]] = []  # runs of chunks waiting for a lane
        self.open: dict[int, _Open] = {}
        self.done, self.total = 0, 0  # chunk samples decoded and pulled
        self.finished: list[Transcript] = []

    def _language(self, given: str | None) -> str | None:
        if not self.wm.tokenizer.multilingual:
            return "en"
        return given or self.options.decoding.language

    def _pull(self, wait: bool) -> bool:
        """Take the next input from the source (waiting for one when `wait`); False when there
        is none, or none ready yet."""
        try:
            item = self.files.pull(wait)
        except StopIteration:
            self.exhausted = True
            return False
        if item is None:
            return False
        language = self._language(item.language)
        if not item.chunks:
            self.finished.append(Transcript(item.file, language, ()))
            return True
        source = item.file if item.source is None else item.source
        self.open[item.file] = _Open(language, len(item.chunks), source)
        if self.options.condition_on_previous_text:  # one lane reads them all, in order
            self.queue.append(list(item.chunks))
        else:  # spread over the lanes: the earliest inputs finish first
            self.queue += [[c] for c in item.chunks]
        self.total += sum(c.length for c in item.chunks)
        return True

    def _fill(self) -> Iterator[Transcript]:
        """Give every idle lane work: queued runs, new inputs (waiting for one only when no lane
        is busy), then, when the source has none ready or none left, shares of busy lanes (in a
        shared run the source is exhausted only once every part of the run is done); an input
        with no speech is yielded as soon as it is pulled."""
        ready = True  # until the source says it has nothing ready
        for i, lane in enumerate(self.lanes):
            if lane is not None and lane.active:
                continue
            self.lanes[i] = None
            while not self.queue and not self.exhausted and ready:
                busy = any(ln is not None and ln.active for ln in self.lanes)
                ready = self._pull(wait=not busy)
                yield from self._drain()
            if not self.queue and (self.exhausted or not ready):
                self.queue += self._share()
            if self.queue:
                self.lanes[i] = Lane(self.queue.pop(0))

    def _share(self) -> list[list[AudioChunk]]:
        """Half of the work of the busiest lane that can split it."""
        busy = [ln for ln in self.lanes if ln is not None and ln.active]
        for lane in sorted(busy, key=lambda ln: -ln.remaining):
            before = len(lane.chunks)
            given = lane.share()
            if given:  # a chunk cut in two is one more chunk of its input to finish
                self.open[given[0].file].chunks += len(lane.chunks) + len(given) - before
                return [given]
        return []

    def _close(self, chunk: AudioChunk | None) -> None:
        """Count a chunk read to its end; its input is finished with its last chunk."""
        if chunk is None:
            return
        state = self.open[chunk.file]
        state.chunks -= 1
        if state.chunks == 0:
            del self.open[chunk.file]
            self.finished.append(Transcript(chunk.file, state.language, tuple(state.windows)))

    def _advance(self, lane: Lane, samples: int) -> None:
        covered, finished = lane.advance(samples)
        self.done += covered
        self._close(finished)

    def _languages(
        self, features: mx.array, lanes: list[Lane], cross_kv: CrossKV
    ) -> list[str | None]:
        """Each row's language; an input's unknown language is detected on its earliest window
        in this batch, from the features being decoded."""
        first: dict[int, tuple[int, int]] = {}  # input -> (sample on its timeline, row)
        for row, lane in enumerate(lanes):
            if self.open[lane.chunk.file].language is None:
                first[lane.chunk.file] = min(
                    first.get(lane.chunk.file, (lane.at, row)), (lane.at, row)
                )
        if first:
            rows = sorted(row for _, row in first.values())
            pick = mx.array(rows)
            codes, _ = detect_language(self.wm, features[pick], take_kv(cross_kv, pick))
            for row, code in zip(rows, codes, strict=True):
                self.open[lanes[row].chunk.file].language = code
        return [self.open[lane.chunk.file].language for lane in lanes]

    def _seed(self, lane: Lane) -> int:
        """The key of a window's sampling noise: the run's seed, its input, its first sample."""
        return mix(self.options.seed or 0, self.open[lane.chunk.file].source, lane.at)

    def _rows(self, lanes: list[Lane]) -> Rows:
        rest = [ln.chunk.length - ln.pos for ln in lanes]
        seconds = [min(N_SAMPLES, n) / SAMPLE_RATE for n in rest]
        seeds = [self._seed(ln) for ln in lanes]
        if not self.options.finish_chunks:
            return Rows(seconds, seeds, None)
        ends = [  # a window that stops short of its chunk's end: no rule
            s - END_SECONDS if n <= N_SAMPLES else None for s, n in zip(seconds, rest, strict=True)
        ]
        return Rows(seconds, seeds, ends)

    def _step(self, lane: Lane, step: int) -> int:
        """`step`, or the rest of the lane's chunk when less than END_SECONDS would be left
        (`finish_chunks`)."""
        rest = lane.chunk.length - lane.pos
        if self.options.finish_chunks and rest - step < END_SECONDS * SAMPLE_RATE:
            return max(step, rest)
        return step

    def _batch(self, lanes: list[Lane]) -> None:
        """Decode the next window of every lane (digitally silent windows are skipped)."""
        wm, options = self.wm, self.options
        quiet = [ln for ln in lanes if is_quiet(ln.chunk.audio, ln.pos, ln.chunk.length)]
        for lane in quiet:
            self._advance(lane, N_SAMPLES)
        lanes = [ln for ln in lanes if ln not in quiet]
        if lanes:
            mels = [
                window_mel(ln.chunk.audio, ln.pos, ln.chunk.length, wm.dims.n_mels) for ln in lanes
            ]
            features = encode(wm, mx.stack(mels))
            cross_kv = window_kv(wm, features, options.decoding)  # every rung, token timing
            languages = self._languages(features, lanes, cross_kv)
            contexts = prompt_contexts(wm, lanes, options)
            results = decode_with_fallback(
                wm, features, options, languages, contexts, self._rows(lanes), cross_kv
            )
            thresholds, ts_begin = options.thresholds, wm.tokenizer.timestamp_begin
            built = [
                build_window(r, ln.chunk, ln.pos, ts_begin, thresholds)
                for ln, r in zip(lanes, results, strict=True)
            ]
            windows = [w for w, _ in built]
            if options.token_times:
                windows = annotate(wm, cross_kv, windows, options.decoding.task)
            for lane, result, window, (_, step) in zip(lanes, results, windows, built, strict=True):
                self.open[lane.chunk.file].windows.append(window)
                silent = thresholds.is_silence(result)
                if options.condition_on_previous_text and result.temperature <= 0.5 and not silent:
                    lane.context = list(result.tokens)
                self._advance(lane, self._step(lane, step))
        if self.progress is not None:
            self.progress("transcribe", completed=self.done, total=self.total)

    def run(self) -> Iterator[Transcript]:
        """Transcripts of the stream's inputs, each as soon as it is finished."""
        while True:
            yield from self._fill()
            active = [ln for ln in self.lanes if ln is not None and ln.active]
            if not active:
                if self.exhausted and not self.queue:
                    return
                continue
            self._batch(active)
            yield from self._drain()

    def _drain(self) -> Iterator[Transcript]:
        while self.finished:
            yield self.finished.pop(0)


def transcribe_stream(
    wm: WhisperModel,
    files: Iterable[SpeechFile] | Source,
    options: TranscribeOptions | None = None,
    progress: ProgressHook | None = None,
) -> Iterator[Transcript]:
    """The transcribe stage in this process: a `Transcript` per input of `files`, yielded as
    each is finished (not in input order). `files` is read only as lanes need more work."""
    return Engine(wm, files, options or TranscribeOptions(), progress).run()
