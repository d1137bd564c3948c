"""Audio front end: decode any file to 16 kHz mono, and Whisper's log-mel spectrogram in MLX."""

from __future__ import annotations

import functools
import io
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import av
import mlx.core as mx
import numpy as np

from .errors import MlxwxError
from .types import SAMPLE_RATE

# Whisper's fixed audio hyperparameters (SAMPLE_RATE, 16 kHz, is every stage's rate: mlxwx.types).
N_FFT = 400  # 25 ms analysis window
HOP_LENGTH = 160  # 10 ms between frames
CHUNK_LENGTH = 30  # seconds in one encoder window
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30 s window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a 30 s window
N_SAMPLES_PER_TOKEN = HOP_LENGTH * 2  # 320: the encoder's conv stem has stride 2
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100: 10 ms per mel frame
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 50: 20 ms per audio token

_BLOCK = 1 << 16  # samples per frame handed to the resampler for array input
# A file that decodes without error but this much shorter than its header says is reported
_SHORT_SECONDS, _SHORT_FRACTION = 1.0, 0.05

AudioSource = str | os.PathLike | bytes | bytearray | BinaryIO | np.ndarray | mx.array

logger = logging.getLogger(__name__)


class AudioError(MlxwxError, ValueError):
    """Audio that cannot be loaded; the message is one line naming the file (or the array)."""


def _one_line(message: object, limit: int = 200) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_audio(source: AudioSource, sample_rate: int | None = None) -> mx.array:
    """`read_audio` as an `mx.array`: (n_samples,) float32 at 16 kHz."""
    return mx.array(read_audio(source, sample_rate))


def read_audio(source: AudioSource, sample_rate: int | None = None) -> np.ndarray:
    """Load audio as a 1-D float32 mono waveform at SAMPLE_RATE (16 kHz), nominally in [-1, 1].

    Args:
        source: a file path (any container/codec FFmpeg reads: wav, flac, ogg, mp3, m4a, mp4,
            webm, ...; decoded in-process with PyAV, first audio stream); the bytes of such a
            file, or a binary file object open for reading (`io.BytesIO`, `sys.stdin.buffer`;
            read to its end, into memory first when it cannot seek); or samples as a numpy
            or mx array: shape (samples,), (channels, samples) or (samples, channels); channels
            (the smaller axis) are averaged. Float samples are taken as is, signed integers
            are scaled to [-1, 1).
        sample_rate: rate of array input in Hz (default SAMPLE_RATE); resampled with an
            anti-aliasing filter when it differs. Files carry their own rate: leave it None.

    Returns:
        (n_samples,) float32 at 16 kHz. A file that stops decoding part-way (cut short or
        corrupt) gives the samples decoded up to there, with a warning logged.

    Raises:
        AudioError: a missing, unreadable, corrupt, empty (zero samples) or audio-less
            file, or a malformed array; the message is one line.
    """
    if isinstance(source, (np.ndarray, mx.array)) or not _encoded(source):
        return _from_array(source, SAMPLE_RATE if sample_rate is None else sample_rate)
    if sample_rate is not None:
        raise ValueError("sample_rate applies to array input only; files carry their own rate")
    if isinstance(source, (str, os.PathLike)):
        return _decode_file(Path(source))
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise AudioError("audio data is empty (0 bytes)")
        return _decode(io.BytesIO(source), "<bytes>")
    name = str(getattr(source, "name", "<stream>"))
    return _decode(_seekable(source, name), name)


def _encoded(source: object) -> bool:
    """Whether `source` is an encoded file (path, bytes or file object) rather than samples."""
    return isinstance(source, (str, os.PathLike, bytes, bytearray)) or hasattr(source, "read")


def _seekable(file: BinaryIO, name: str) -> BinaryIO:
    """`file`, or its remaining bytes in memory when it cannot seek (a pipe): some containers
    (mp4 with its index at the end) need to seek."""
    try:
        if file.seekable():
            return file
    except (AttributeError, OSError, ValueError):
        pass
    try:
        data = file.read()
    except (OSError, ValueError) as err:
        raise AudioError(f"cannot read audio from {name}: {_one_line(err)}") from err
    if not data:
        raise AudioError(f"audio data is empty (0 bytes): {name}")
    return io.BytesIO(data)


def _open(target: str | BinaryIO) -> Any:
    """`av.open(target)`, undecodable metadata ignored (PyAV before 19 needs to be told; PyAV 19
    dropped the option)."""
    try:
        return av.open(target, "r", metadata_errors="ignore")
    except TypeError:
        return av.open(target, "r")


def _decode_file(path: Path) -> np.ndarray:
    """Decode the first audio stream of `path` to (n,) float32 mono at 16 kHz."""
    if not path.exists():
        raise AudioError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioError(f"audio path is a directory, not a file: {path}")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file is empty (0 bytes): {path}")
    return _decode(str(path), str(path))


def _reason(err: BaseException) -> str:
    return _one_line(getattr(err, "strerror", None) or err)  # drop PyAV's errno and path


def _decode(target: str | BinaryIO, name: str) -> np.ndarray:
    """Decode the first audio stream of `target` (a path or file object; `name` in messages) to
    (n,) float32 mono at 16 kHz, keeping what decoded before an error."""
    errors: list[Exception] = []
    try:
        with _open(target) as container:
            if not container.streams.audio:
                raise AudioError(f"no audio stream in file: {name}")
            stream = container.streams.audio[0]
            samples = _resample(_until_error(container.decode(stream), errors))
            declared = _declared_seconds(container, stream)
    except (av.FFmpegError, OSError) as err:
        raise AudioError(f"cannot decode audio file {name}: {_reason(err)}") from err
    if errors and samples.size == 0:
        raise AudioError(f"cannot decode audio file {name}: {_reason(errors[0])}")
    if samples.size == 0:
        raise AudioError(f"no audio samples in file: {name}")
    _warn_if_partial(name, samples.size / SAMPLE_RATE, declared, errors)
    return _zero_non_finite(samples, name)


def _zero_non_finite(samples: np.ndarray, name: str) -> np.ndarray:
    """`samples` with NaN and infinite values (float PCM can hold them) set to 0, logged."""
    bad = ~np.isfinite(samples)
    if bad.any():
        logger.warning("%s: %d samples are NaN or infinite; using 0 for them", name, bad.sum())
        samples[bad] = 0.0
    return samples


def _until_error(
    frames: Iterator[av.AudioFrame], errors: list[Exception]
) -> Iterator[av.AudioFrame]:
    """`frames` up to the first decoding error, which is appended to `errors`."""
    try:
        yield from frames
    except (av.FFmpegError, OSError) as err:
        errors.append(err)


def _declared_seconds(container: Any, stream: Any) -> tuple[float | None, bool]:
    """The audio's duration by the file's headers, and whether it is the audio's own: the
    stream's, else the container's (its own only without video, which may run longer)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base), True
    if container.duration:
        return container.duration / av.time_base, not container.streams.video
    return None, False


def _warn_if_partial(
    name: str, decoded: float, declared: tuple[float | None, bool], errors: list[Exception]
) -> None:
    """Log a warning when decoding stopped at an error, or ended well short of the stream's
    own duration (a file cut short)."""
    total, of_stream = declared
    short = (
        of_stream
        and total is not None
        and total - decoded > max(_SHORT_SECONDS, _SHORT_FRACTION * total)
    )
    if not errors and not short:
        return
    of = f" of {_seconds(total)}" if total is not None and total > decoded else ""
    why = f": {_reason(errors[0])}" if errors else ""
    logger.warning(
        "%s: decoding stopped at %s%s (the rest is corrupt or missing%s); using the %s that "
        "decoded",
        name, _seconds(decoded), of, why, _seconds(decoded),
    )  # fmt: skip


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds:.2f} s"


def _resample(frames: Iterable[av.AudioFrame]) -> np.ndarray:
    """Resample decoded frames to 16 kHz with swresample and average channels: (n,) float32.

    Channels are averaged here, not by swresample: its float downmix sums stereo with
    1/sqrt(2) gains (3 dB louder than ffmpeg's s16 `-ac 1`, which openai-whisper uses). A
    change of rate, layout or sample format mid-stream starts a new resampler.
    """
    chunks: list[np.ndarray] = []
    resampler, setup = None, None
    for frame in frames:
        if (frame.format.name, frame.layout.name, frame.sample_rate) != setup:
            chunks += _mono(resampler, None)  # flush the previous filter's tail
            resampler = av.AudioResampler(format="fltp", layout=None, rate=SAMPLE_RATE)
            setup = (frame.format.name, frame.layout.name, frame.sample_rate)
        chunks += _mono(resampler, frame)
    chunks += _mono(resampler, None)
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def _mono(resampler: av.AudioResampler | None, frame: av.AudioFrame | None) -> list[np.ndarray]:
    """`frame` (None: the filter's tail) through `resampler`, channels averaged."""
    if resampler is None:
        return []
    with np.errstate(over="ignore", invalid="ignore"):  # float PCM may hold NaN or huge values
        return [
            out.to_ndarray().mean(axis=0, dtype=np.float32) for out in resampler.resample(frame)
        ]


def _array_frames(samples: np.ndarray, rate: int) -> Iterator[av.AudioFrame]:
    """Wrap (n,) float32 mono samples as PyAV frames of at most _BLOCK samples."""
    for start in range(0, samples.size, _BLOCK):
        frame = av.AudioFrame.from_ndarray(
            samples[None, start : start + _BLOCK], format="flt", layout="mono"
        )
        frame.sample_rate = rate
        yield frame


def _from_array(source: Any, rate: int) -> np.ndarray:
    """Validate, scale, downmix and resample array input (a numpy or mx array, or what
    `np.asarray` takes) to (n,) float32 mono at 16 kHz."""
    if isinstance(source, mx.array) and mx.issubdtype(source.dtype, mx.floating):
        source = source.astype(mx.float32)  # numpy cannot take bfloat16
    try:
        array = np.asarray(source)
    except (TypeError, ValueError, RuntimeError) as err:
        raise AudioError(f"audio array: cannot convert to numpy: {_one_line(err)}") from err
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32, copy=False)
    elif np.issubdtype(array.dtype, np.signedinteger):
        array = array.astype(np.float32) / np.float32(2 ** (8 * array.dtype.itemsize - 1))
    else:
        raise AudioError(f"audio array must hold float or signed-int samples, got {array.dtype}")
    if array.ndim not in (1, 2):
        raise AudioError(f"audio array must be 1-D or 2-D (channels), got shape {array.shape}")
    if array.size == 0:
        raise AudioError(f"audio array is empty (shape {array.shape})")
    if not np.isfinite(array).all():
        raise AudioError("audio array holds NaN or infinite values")
    if not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise AudioError(f"sample_rate must be a positive integer, got {rate!r}")
    if array.ndim == 2:
        array = array.mean(axis=int(np.argmin(array.shape)), dtype=np.float32)
    array = np.ascontiguousarray(array)
    return array if rate == SAMPLE_RATE else _resample(_array_frames(array, int(rate)))


@functools.cache
def mel_filters(n_mels: int) -> mx.array:
    """Slaney mel filterbank, (n_mels, N_FFT // 2 + 1) float32; treat the result as read-only.

    Equals librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels) (htk=False, norm="slaney"),
    which is what openai-whisper's mel_filters.npz stores for 80 and 128 mels.
    """
    if n_mels <= 0:
        raise ValueError(f"n_mels must be positive, got {n_mels}")
    fft_hz = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges_hz = _mel_to_hz(np.linspace(0.0, _hz_to_mel(SAMPLE_RATE / 2), n_mels + 2))
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]  # Slaney: equal area per band
    return mx.array(weights.astype(np.float32))


# Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_HZ_PER_MEL, _BREAK_HZ, _LOG_STEP = 200.0 / 3.0, 1000.0, np.log(6.4) / 27.0
_BREAK_MEL = _BREAK_HZ / _HZ_PER_MEL


def _hz_to_mel(hz: float) -> float:
    if hz < _BREAK_HZ:
        return hz / _HZ_PER_MEL
    return float(_BREAK_MEL + np.log(hz / _BREAK_HZ) / _LOG_STEP)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    log_part = _BREAK_HZ * np.exp(_LOG_STEP * (mels - _BREAK_MEL))
    return np.where(mels >= _BREAK_MEL, log_part, mels * _HZ_PER_MEL)


@functools.cache
def _hann_window(size: int) -> mx.array:
    """Periodic Hann window (torch.hann_window's default), (size,) float32."""
    return mx.array(np.hanning(size + 1)[:-1].astype(np.float32))


def _power_spectrum(audio: mx.array) -> mx.array:
    """|STFT|^2 as torch.stft(center=True, pad_mode="reflect") minus the last frame.

    (n,) float32 -> (n // HOP_LENGTH, N_FFT // 2 + 1) float32.
    """
    n_frames = audio.size // HOP_LENGTH  # torch gives 1 + n // hop frames; Whisper drops the last
    padded = mx.pad(audio, N_FFT // 2, mode="reflect")
    frames = mx.as_strided(padded, shape=(n_frames, N_FFT), strides=(HOP_LENGTH, 1))
    spectrum = mx.fft.rfft(frames * _hann_window(N_FFT))
    return mx.square(spectrum.real) + mx.square(spectrum.imag)


def log_mel_spectrogram(audio: mx.array, n_mels: int = 80, padding: int = 0) -> mx.array:
    """Whisper's log-mel spectrogram (same numbers as openai-whisper's), computed in MLX.

    Args:
        audio: (n_samples,) waveform at 16 kHz (mx or numpy array; cast to float32).
        n_mels: mel bands, 80 (most Whisper models) or 128 (large-v3).
        padding: zero samples appended on the right before the STFT.

    Returns:
        ((n_samples + padding) // HOP_LENGTH, n_mels) float32, roughly in [-1, 1.5]; N_SAMPLES
        samples give N_FRAMES (3000) frames. Clamped to 8 decades (80 dB) below its own maximum.
    """
    audio = mx.array(audio) if not isinstance(audio, mx.array) else audio
    if audio.ndim != 1:
        raise AudioError(f"log_mel_spectrogram takes 1-D audio, got shape {audio.shape}")
    audio = audio.astype(mx.float32)
    if padding > 0:
        audio = mx.pad(audio, (0, padding))
    if audio.size <= N_FFT // 2:
        raise AudioError(f"audio too short for a spectrogram: {audio.size} samples")
    mel = _power_spectrum(audio) @ mel_filters(n_mels).T
    log_spec = mx.log10(mx.maximum(mel, 1e-10))
    log_spec = mx.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def pad_or_trim(array: mx.array, length: int = N_SAMPLES, axis: int = -1) -> mx.array:
    """Zero-pad on the right or cut `array` along `axis` to `length` (default N_SAMPLES)."""
    size = array.shape[axis]
    if size > length:
        index = [slice(None)] * array.ndim
        index[axis] = slice(0, length)
        return array[tuple(index)]
    if size < length:
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, length - size)
        return mx.pad(array, widths)
    return array


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
