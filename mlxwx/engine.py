"""The batched engine: windows from all inputs of a run decoded together, routed back to files.

Audio is split into lanes (`mlxwx.lanes`); each batch decodes the next 30 s window of every lane,
so many short files fill a batch as well as one long file. Windows that fail the quality checks
are decoded again, alone and together, at rising temperatures (per-row fallback).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import mlx.core as mx
import numpy as np

from . import workers
from .audio import HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE, load_audio, log_mel_spectrogram
from .decoding import (
    TIME_PRECISION,
    DecodingOptions,
    DecodingResult,
    decode_features,
    detect_language,
    encode,
)
from .guards import LOOP_WORDS, collapse_segments
from .lanes import Region, plan_chunk_lanes, plan_lanes
from .load import WhisperModel, load_model
from .types import Result, Segment
from .vad.base import Vad
from .vad.methods import speech_regions, transcribe_options
from .vad.regions import Chunk, VadOptions, chunk_audio, merge_chunks

logger = logging.getLogger(__name__)
FRAMES_PER_TOKEN = round(TIME_PRECISION * SAMPLE_RATE / HOP_LENGTH)  # 2 mel frames per 0.02 s
DETECT_TRIES = 3  # windows tried per file to find speech for language detection
SILENCE_DBFS = -60.0  # a window whose loudest 20 ms frame is below this holds no speech

AudioInput = str | Path | np.ndarray | mx.array
ProgressHook = Callable[..., None]


@dataclass(frozen=True)
class TranscribeOptions:
    """Options of the transcription stage.

    Attributes:
        decoding: options of each window's first decoding pass.
        batch_size: windows decoded together (lanes).
        temperatures: fallback ladder; a window failing the checks below is decoded again at the
            next temperature.
        compression_ratio_threshold: fail when the text's gzip ratio is above (repetition).
        logprob_threshold: fail when the average token log-probability is below.
        no_speech_threshold: with a failing log-prob, a no-speech probability above this marks
            the window as silence: no fallback, no text.
        condition_on_previous_text: prompt each window with the previous window's text.
        initial_prompt: text that prompts every window that has no previous text.
        hotwords: words or phrases to favour, prompted before every window.
        vad_options: how a VAD's frame probabilities become chunks, when one is used; None:
            the VAD's transcription defaults (`mlxwx.vad.transcribe_options(vad.method)`), or
            `VadOptions()` for a VAD without a `method` name.
        workers: processes decoding on the CPU, each with a share of the lanes
            (`mlxwx.workers`); None: one per core, at most two. Ignored on a GPU.
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
    vad_options: VadOptions | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise ValueError(f"temperatures must be non-negative, got {self.temperatures}")


def window_mel(audio: mx.array, start: int, end: int, n_mels: int) -> mx.array:
    """(N_FRAMES, n_mels) log-mel of samples [start, min(end, start + 30 s)).

    A short window is padded with zeros in the log-mel domain, past its last frame of audio, as
    openai-whisper's `transcribe` (`pad_or_trim` of the mel segment) and faster-whisper do: the
    model reads zero features as "no more audio", whereas the features of zero samples (far
    below the window's loudest bin) made it end early and drop the window's last sentence."""
    chunk = audio[start : min(end, start + N_SAMPLES)]
    mel = log_mel_spectrogram(chunk, n_mels=n_mels, padding=N_SAMPLES - chunk.shape[0])[:N_FRAMES]
    content = chunk.shape[0] // HOP_LENGTH
    if content >= N_FRAMES:
        return mel
    return mx.where(mx.arange(N_FRAMES)[:, None] < content, mel, 0.0)


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


def split_segments(
    result: DecodingResult, wm: WhisperModel, offset: float, window: float
) -> tuple[list[Segment], int]:
    """Segments of one window's tokens and how many mel frames to advance (the seek rule)."""
    tokens, ts = result.tokens, wm.tokenizer.timestamp_begin
    is_ts = [t >= ts for t in tokens]
    pairs = [i for i in range(1, len(tokens)) if is_ts[i - 1] and is_ts[i]]
    single_end = len(tokens) >= 2 and is_ts[-1] and not is_ts[-2]
    full = round(window * SAMPLE_RATE / HOP_LENGTH)

    def segment(part: list[int], start: float, end: float) -> Segment:
        return Segment(
            start=offset + start,
            end=offset + end,
            text=wm.tokenizer.decode(part),
            tokens=tuple(part),
            avg_logprob=result.avg_logprob,
            no_speech_prob=result.no_speech_prob,
            compression_ratio=result.compression_ratio,
            temperature=result.temperature,
        )

    if not pairs:
        stamps = [t for t in tokens if t >= ts]
        end = (stamps[-1] - ts) * TIME_PRECISION if stamps and stamps[-1] != ts else window
        return [segment(tokens, 0.0, min(end, window))], full
    cuts = [*pairs, len(tokens)] if single_end else pairs
    segments, last = [], 0
    for cut in cuts:
        part = tokens[last:cut]
        start, end = (part[0] - ts) * TIME_PRECISION, (part[-1] - ts) * TIME_PRECISION
        segments.append(segment(part, start, min(end, window)))
        last = cut
    advance = full if single_end else (tokens[last - 1] - ts) * FRAMES_PER_TOKEN
    return segments, advance if advance > 0 else full


def is_silence(r: DecodingResult, o: TranscribeOptions) -> bool:
    return (
        o.no_speech_threshold is not None
        and r.no_speech_prob > o.no_speech_threshold
        and o.logprob_threshold is not None
        and r.avg_logprob < o.logprob_threshold
    )


def needs_fallback(r: DecodingResult, o: TranscribeOptions) -> bool:
    if is_silence(r, o):
        return False
    repetitive = o.compression_ratio_threshold is not None and (
        r.compression_ratio > o.compression_ratio_threshold
    )
    unlikely = o.logprob_threshold is not None and r.avg_logprob < o.logprob_threshold
    return repetitive or unlikely


def decode_with_fallback(
    wm: WhisperModel,
    audio: mx.array,
    options: TranscribeOptions,
    languages: list[str | None],
    contexts: list[list[int]],
) -> list[DecodingResult]:
    """Decode every window; re-decode only the failing ones, together, at the next temperature."""
    results: list[DecodingResult] = []
    todo = list(range(audio.shape[0]))
    for temperature in options.temperatures:
        opts = replace(options.decoding, temperature=temperature)
        rows = audio if len(todo) == audio.shape[0] else audio[mx.array(todo)]
        found = decode_features(
            wm, rows, opts, [languages[i] for i in todo], [contexts[i] for i in todo]
        )
        if not results:
            results = found
        else:
            for i, r in zip(todo, found, strict=True):
                results[i] = r
        todo = [i for i in todo if needs_fallback(results[i], options)]
        if not todo:
            break
    return results


def file_languages(
    wm: WhisperModel, audios: list[mx.array], options: TranscribeOptions
) -> list[str | None]:
    """One language per input: given, English-only, or detected on the input's first window
    with speech (up to DETECT_TRIES windows), with windows of all inputs batched together."""
    if not wm.tokenizer.multilingual:
        return ["en"] * len(audios)
    if options.decoding.language is not None:
        return [options.decoding.language] * len(audios)
    languages: list[str | None] = [None] * len(audios)
    first: dict[int, str] = {}
    todo = [(i, 0) for i, a in enumerate(audios) if a.shape[0] > 0]
    while todo:
        quiet = {t for t in todo if is_quiet(audios[t[0]], t[1] * N_SAMPLES, audios[t[0]].shape[0])}
        todo = [t for t in todo if t not in quiet] + [
            (i, k + 1)
            for i, k in sorted(quiet)
            if (k + 1) * N_SAMPLES < audios[i].shape[0] and k + 1 < DETECT_TRIES
        ]
        if not todo:
            break
        batch, todo = todo[: options.batch_size], todo[options.batch_size :]
        mels = [
            window_mel(audios[i], k * N_SAMPLES, audios[i].shape[0], wm.dims.n_mels)
            for i, k in batch
        ]
        codes, no_speech = detect_language(wm, encode(wm, mx.stack(mels)))
        for (i, k), code, ns in zip(batch, codes, no_speech, strict=True):
            first.setdefault(i, code)
            more = (k + 1) * N_SAMPLES < audios[i].shape[0] and k + 1 < DETECT_TRIES
            if ns < (options.no_speech_threshold or 0.6) or not more:
                languages[i] = code if ns < (options.no_speech_threshold or 0.6) else first[i]
            else:
                todo.append((i, k + 1))
    return languages


@dataclass
class Lane:
    """A lane's position: the region being decoded and the next window's first sample."""

    regions: list[Region]
    index: int = 0
    pos: int = -1
    context: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pos = self.regions[0].start

    @property
    def region(self) -> Region:
        return self.regions[self.index]

    @property
    def active(self) -> bool:
        return self.index < len(self.regions)

    def advance(self, samples: int) -> int:
        """Move on by `samples` (at least one mel frame); a region with less than one frame
        left is finished. Returns the samples of the region now behind the lane."""
        before = self.pos
        self.pos = min(self.pos + max(samples, HOP_LENGTH), self.region.end)
        covered = self.pos - before
        if self.region.end - self.pos < HOP_LENGTH:
            covered += self.region.end - self.pos
            self.index += 1
            if self.active:
                self.pos = self.region.start
                if not self.region.follows:
                    self.context = []
        return covered


def _contexts(wm: WhisperModel, lanes: list[Lane], options: TranscribeOptions) -> list[list[int]]:
    tok = wm.tokenizer
    hot = tok.encode(" " + options.hotwords.strip()) if options.hotwords else []
    initial = tok.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else []
    return [hot + (lane.context or initial) for lane in lanes]


def _route(
    wm: WhisperModel,
    lane: Lane,
    result: DecodingResult,
    options: TranscribeOptions,
    out: list[list[Segment]],
) -> int:
    """File the window's segments under its input; returns samples to advance."""
    region = lane.region
    window = min(N_SAMPLES, region.end - lane.pos) / SAMPLE_RATE
    if is_silence(result, options):
        return N_SAMPLES
    segments, frames = split_segments(result, wm, lane.pos / SAMPLE_RATE, window)
    threshold = options.compression_ratio_threshold
    failed = threshold is not None and result.compression_ratio > threshold  # after the ladder
    segments = collapse_segments(segments, shortest=1 if failed else LOOP_WORDS)
    end = region.end / SAMPLE_RATE
    out[region.source] += [replace(s, end=min(s.end, end)) for s in segments if s.text.strip()]
    if options.condition_on_previous_text and result.temperature <= 0.5:
        lane.context = list(result.tokens)
    return frames * HOP_LENGTH


def transcribe_arrays(
    wm: WhisperModel,
    audios: list[mx.array],
    options: TranscribeOptions | None = None,
    sources: Sequence[str] | None = None,
    progress: ProgressHook | None = None,
    vad: Vad | None = None,
) -> list[Result]:
    """Transcribe 16 kHz mono inputs (n_samples,) together; one `Result` per input.

    Without `vad`, each input is read whole (long ones cut into lanes at quiet moments). With a
    `vad`, only its speech chunks (`options.vad_options`) are decoded, chunks of all inputs
    batched together, and segment times are put back on each input's timeline."""
    options = options or TranscribeOptions()
    languages = file_languages(wm, audios, options)
    if vad is None:
        lanes = [Lane(regions) for regions in plan_lanes(audios, options.batch_size)]
        out = _decode_lanes(wm, audios, lanes, languages, options, progress)
    else:
        out = _transcribe_chunks(wm, audios, vad, languages, options, progress)
    names = list(sources or [""] * len(audios))
    return [
        Result(tuple(sorted(segs, key=lambda s: s.start)), lang, a.shape[0] / SAMPLE_RATE, name)
        for segs, lang, a, name in zip(out, languages, audios, names, strict=True)
    ]


def _transcribe_chunks(
    wm: WhisperModel,
    audios: list[mx.array],
    vad: Vad,
    languages: list[str | None],
    options: TranscribeOptions,
    progress: ProgressHook | None,
) -> list[list[Segment]]:
    """Decode the VAD chunks of every input as inputs of their own, then map the segments back."""
    chunks: list[tuple[int, Chunk]] = []
    total, done = sum(a.shape[0] for a in audios), 0
    method = getattr(vad, "method", None)  # mlxwx's VADs name themselves; others get VadOptions()
    vad_options = options.vad_options or (transcribe_options(method) if method else VadOptions())
    for i, audio in enumerate(audios):
        found = speech_chunks(audio, vad, vad_options)
        if not found:
            logger.info("no speech found in input %d", i)
        chunks += [(i, c) for c in found]
        done += audio.shape[0]
        if progress is not None:
            progress("speech detection", completed=done, total=total)
    pieces = [chunk_audio(audios[i], c) for i, c in chunks]
    files = [i for i, _ in chunks]
    lanes = [
        Lane(r) for r in plan_chunk_lanes([p.shape[0] for p in pieces], files, options.batch_size)
    ]
    decoded = _decode_lanes(wm, pieces, lanes, [languages[i] for i in files], options, progress)
    out: list[list[Segment]] = [[] for _ in audios]
    for (i, chunk), segments in zip(chunks, decoded, strict=True):
        out[i] += [
            replace(s, start=chunk.to_original(s.start), end=chunk.to_original(s.end, end=True))
            for s in segments
        ]
    return out


def speech_chunks(audio: mx.array, vad: Vad, options: VadOptions) -> list[Chunk]:
    """The <= chunk_size chunks of speech that `vad` finds in `audio`."""
    if audio.shape[0] == 0:
        return []
    return merge_chunks(speech_regions(audio, vad, options), options)


def _decode_lanes(
    wm: WhisperModel,
    audios: list[mx.array],
    lanes: list[Lane],
    languages: list[str | None],
    options: TranscribeOptions,
    progress: ProgressHook | None,
) -> list[list[Segment]]:
    """Decode every lane, in this process or shared with CPU workers; segments per input."""
    n = workers.count(options.workers, wm, lanes)
    if n == 1:
        return decode_lanes_serial(wm, audios, lanes, languages, options, progress)
    return workers.decode(decode_lanes_serial, wm, audios, lanes, languages, options, progress, n)


def decode_lanes_serial(
    wm: WhisperModel,
    audios: list[mx.array],
    lanes: list[Lane],
    languages: list[str | None],
    options: TranscribeOptions,
    progress: ProgressHook | None = None,
) -> list[list[Segment]]:
    """Decode every lane window by window, the lanes' windows batched; segments per input."""
    out: list[list[Segment]] = [[] for _ in audios]
    total, done = sum(a.shape[0] for a in audios), 0
    while active := [lane for lane in lanes if lane.active]:
        quiet = [ln for ln in active if is_quiet(audios[ln.region.source], ln.pos, ln.region.end)]
        done += sum(lane.advance(N_SAMPLES) for lane in quiet)
        if not (active := [ln for ln in active if ln not in quiet]):
            continue
        mels = [
            window_mel(audios[ln.region.source], ln.pos, ln.region.end, wm.dims.n_mels)
            for ln in active
        ]
        results = decode_with_fallback(
            wm,
            encode(wm, mx.stack(mels)),
            options,
            [languages[ln.region.source] for ln in active],
            _contexts(wm, active, options),
        )
        for lane, result in zip(active, results, strict=True):
            done += lane.advance(_route(wm, lane, result, options, out))
        if progress is not None:
            progress("transcribe", completed=min(done, total), total=total)
    return out


def transcribe(
    inputs: AudioInput | Sequence[AudioInput],
    model: str | WhisperModel = "base",
    options: TranscribeOptions | None = None,
    progress: ProgressHook | None = None,
    vad: Vad | None = None,
) -> Result | list[Result]:
    """Transcribe one input (path or 16 kHz mono array) or a list of them, batched together;
    with a `vad`, only the speech it finds.

    Returns a `Result` for one input, a list of `Result` for a list. Raises `AudioError` for an
    input that cannot be loaded.
    """
    wm = model if isinstance(model, WhisperModel) else load_model(model)
    items: list[AudioInput] = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]  # type: ignore[list-item]
    audios = [load_audio(item) for item in items]
    names = [str(i) if isinstance(i, (str, Path)) else "<array>" for i in items]
    results = transcribe_arrays(wm, audios, options, names, progress, vad)
    return results if isinstance(inputs, (list, tuple)) else results[0]
