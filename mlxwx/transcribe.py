"""Transcribe audio: consecutive 30 s windows, each decoded with timestamps, split into segments.

The window advances to the last complete segment's end (openai-whisper's seek rule), so speech
cut by a window edge is decoded again whole in the next window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import mlx.core as mx
import numpy as np

from .audio import HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE, load_audio, log_mel_spectrogram
from .decoding import TIME_PRECISION, DecodingOptions, DecodingResult, decode
from .load import WhisperModel, load_model
from .types import Result, Segment

logger = logging.getLogger(__name__)
FRAMES_PER_TOKEN = round(TIME_PRECISION * SAMPLE_RATE / HOP_LENGTH)  # 2 mel frames per 0.02 s

AudioInput = str | Path | np.ndarray | mx.array
ProgressHook = Callable[..., None]


@dataclass(frozen=True)
class TranscribeOptions:
    """Options of the transcription stage.

    Attributes:
        decoding: options of each window's decoding pass.
        no_speech_threshold: a window whose no-speech probability exceeds this...
        logprob_threshold: ...and whose average log-probability is below this is silence.
    """

    decoding: DecodingOptions = field(default_factory=DecodingOptions)
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0


def window_mel(audio: mx.array, start_frame: int, n_mels: int) -> mx.array:
    """(N_FRAMES, n_mels) log-mel of the 30 s window starting at `start_frame`, zero-padded."""
    start = start_frame * HOP_LENGTH
    chunk = audio[start : start + N_SAMPLES]
    return log_mel_spectrogram(chunk, n_mels=n_mels, padding=N_SAMPLES - chunk.shape[0])[:N_FRAMES]


def split_segments(
    result: DecodingResult, wm: WhisperModel, offset: float, window: float
) -> tuple[list[Segment], int]:
    """Segments of one window's tokens and how many mel frames to advance."""
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


def transcribe_array(
    wm: WhisperModel,
    audio: mx.array,
    options: TranscribeOptions,
    source: str = "",
    progress: ProgressHook | None = None,
) -> Result:
    """Transcribe 16 kHz mono `audio` (n_samples,) window by window."""
    n_frames = audio.shape[0] // HOP_LENGTH
    duration = audio.shape[0] / SAMPLE_RATE
    seek, segments, language = 0, [], options.decoding.language
    while seek < n_frames:
        window = min(N_FRAMES, n_frames - seek) * HOP_LENGTH / SAMPLE_RATE
        mel = window_mel(audio, seek, wm.dims.n_mels)[None]
        opts = replace(options.decoding, language=language)
        result = decode(wm, mel, opts)[0]
        language = language or result.language
        offset = seek * HOP_LENGTH / SAMPLE_RATE
        silent = (
            result.no_speech_prob > options.no_speech_threshold
            and result.avg_logprob < options.logprob_threshold
        )
        if silent:
            seek += N_FRAMES
            continue
        found, advance = split_segments(result, wm, offset, window)
        segments += [s for s in found if s.text.strip()]
        seek += advance
        if progress is not None:
            progress("transcribe", source, completed=min(seek, n_frames), total=n_frames)
    segments = [replace(s, end=min(s.end, duration)) for s in segments]
    return Result(tuple(segments), language, duration, source)


def transcribe(
    inputs: AudioInput | Sequence[AudioInput],
    model: str | WhisperModel = "base",
    options: TranscribeOptions | None = None,
    progress: ProgressHook | None = None,
) -> Result | list[Result]:
    """Transcribe one input (path or 16 kHz array) or a list of them.

    Returns a `Result` for one input, a list of `Result` for a list.
    """
    wm = model if isinstance(model, WhisperModel) else load_model(model)
    options = options or TranscribeOptions()
    many = isinstance(inputs, (list, tuple))
    items: list[AudioInput] = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]  # type: ignore[list-item]
    results = []
    for item in items:
        source = str(item) if isinstance(item, (str, Path)) else "<array>"
        audio = load_audio(item)  # type: ignore[arg-type]
        results.append(transcribe_array(wm, audio, options, source, progress))
    return results if many else results[0]
