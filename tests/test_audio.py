"""Tests for mlxwx.audio: decoding, resampling, mel filterbank and log-mel parity with openai."""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import threading
from fractions import Fraction
from pathlib import Path

import av
import mlx.core as mx
import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from mlxwx.audio import (
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    N_FFT,
    N_FRAMES,
    N_SAMPLES,
    N_SAMPLES_PER_TOKEN,
    SAMPLE_RATE,
    TOKENS_PER_SECOND,
    AudioError,
    load_audio,
    log_mel_spectrogram,
    mel_filters,
    pad_or_trim,
    read_audio,
)

JFK = Path(__file__).parent / "data" / "jfk.flac"
JFK_SECONDS = 11.0


def openai_filters(n_mels: int) -> np.ndarray:
    """openai-whisper's mel_filters.npz, as shipped inside mlx_whisper (a dev dependency)."""
    spec = importlib.util.find_spec("mlx_whisper")
    assert spec is not None and spec.origin is not None, "mlx-whisper (dev extra) is required"
    with np.load(Path(spec.origin).parent / "assets" / "mel_filters.npz") as npz:
        return npz[f"mel_{n_mels}"]


def reference_log_mel(audio: np.ndarray, n_mels: int) -> np.ndarray:
    """openai-whisper's log_mel_spectrogram in float64 numpy/scipy: (n_frames, n_mels)."""
    padded = np.pad(audio.astype(np.float64), N_FFT // 2, mode="reflect")
    window = scipy.signal.get_window("hann", N_FFT, fftbins=True)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    mel = power[:-1] @ openai_filters(n_mels).astype(np.float64).T  # openai drops the last frame
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return np.array(load_audio(JFK))


def sine(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def encode(
    path: Path, samples: np.ndarray, codec: str, layout: str = "mono", **options: str
) -> Path:
    """Encode (channels, n) float32 16 kHz samples with PyAV; pts=0 so the muxer records priming.
    `options`: the muxer's (movflags=...)."""
    with av.open(str(path), "w", options=options) as out:
        options = {"strict": "experimental"} if codec == "vorbis" else {}  # FFmpeg's own vorbis
        stream = out.add_stream(codec, rate=SAMPLE_RATE, layout=layout, options=options)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, 0, Fraction(1, SAMPLE_RATE)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


# --- constants and filterbank -------------------------------------------------------------


def test_constants():
    assert (N_SAMPLES, N_FRAMES, N_SAMPLES_PER_TOKEN) == (480_000, 3000, 320)
    assert (FRAMES_PER_SECOND, TOKENS_PER_SECOND) == (100, 50)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_openai(n_mels):
    ours = mel_filters(n_mels)
    assert ours.shape == (n_mels, N_FFT // 2 + 1) and ours.dtype == mx.float32
    np.testing.assert_allclose(np.array(ours), openai_filters(n_mels), rtol=0, atol=1e-6)


# --- log-mel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("window", ["speech", "padded_30s"])
def test_log_mel_matches_reference(jfk, n_mels, window):
    audio = jfk if window == "speech" else np.array(pad_or_trim(mx.array(jfk)))
    ours = log_mel_spectrogram(mx.array(audio), n_mels=n_mels)
    assert ours.dtype == mx.float32
    expected = reference_log_mel(audio, n_mels)
    assert ours.shape == expected.shape == (audio.size // HOP_LENGTH, n_mels)
    assert np.abs(np.array(ours) - expected).max() <= 1e-3


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_shapes(n_mels):
    noise = mx.random.normal((N_SAMPLES,), key=mx.random.key(0)) * 0.1
    assert log_mel_spectrogram(noise, n_mels).shape == (N_FRAMES, n_mels)
    padded = log_mel_spectrogram(noise[:16000], n_mels, padding=N_SAMPLES)
    assert padded.shape == ((16000 + N_SAMPLES) // HOP_LENGTH, n_mels)


def test_log_mel_padding_equals_explicit_zeros(jfk):
    explicit = log_mel_spectrogram(mx.pad(mx.array(jfk), (0, 8000)))
    assert mx.array_equal(log_mel_spectrogram(mx.array(jfk), padding=8000), explicit)


def test_log_mel_rejects_bad_input():
    with pytest.raises(AudioError):
        log_mel_spectrogram(mx.zeros((2, 16000)))
    with pytest.raises(AudioError):
        log_mel_spectrogram(mx.zeros((100,)))


def test_pad_or_trim():
    x = mx.arange(10, dtype=mx.float32)
    assert pad_or_trim(x, 4).tolist() == [0, 1, 2, 3]
    assert pad_or_trim(x, 12).tolist() == [*range(10), 0, 0]
    assert pad_or_trim(x, 10) is x
    assert pad_or_trim(mx.ones((3, 2)), 5, axis=0).shape == (5, 2)
    assert pad_or_trim(mx.ones((3, 2)), 1, axis=1).shape == (3, 1)
    assert pad_or_trim(mx.ones(5)).shape == (N_SAMPLES,)


# --- loading files -----------------------------------------------------------------------------


def test_load_flac_matches_scipy_resample(jfk):
    assert jfk.dtype == np.float32 and jfk.ndim == 1
    assert jfk.size == round(JFK_SECONDS * SAMPLE_RATE)
    native, rate = sf.read(JFK, dtype="float64")  # (n, 2) at 44.1 kHz
    expected = scipy.signal.resample_poly(native.mean(axis=1), SAMPLE_RATE, rate)
    assert np.corrcoef(jfk, expected)[0, 1] > 0.999
    assert abs(rms(jfk) / rms(expected) - 1) < 0.01


@pytest.mark.parametrize("rate", [16000, 44100])
def test_load_wav(tmp_path, jfk, rate):
    path = tmp_path / f"jfk_{rate}.wav"
    data = jfk if rate == SAMPLE_RATE else scipy.signal.resample_poly(jfk, 441, 160)
    sf.write(path, data, rate, subtype="PCM_16")
    loaded = np.array(load_audio(path))
    assert abs(loaded.size - jfk.size) <= 0.02 * SAMPLE_RATE
    n = min(loaded.size, jfk.size)
    assert np.corrcoef(loaded[:n], jfk[:n])[0, 1] > (0.9999 if rate == SAMPLE_RATE else 0.999)
    if rate == SAMPLE_RATE:  # no resampling: exact up to 16-bit quantisation
        np.testing.assert_allclose(loaded, jfk, atol=2 / 32768)


@pytest.mark.parametrize(
    ("name", "codec", "layout"),
    [
        ("jfk.ogg", "vorbis", "stereo"),
        ("jfk.mp3", "libmp3lame", "mono"),
        ("jfk.m4a", "aac", "mono"),
    ],
)
def test_load_lossy(tmp_path, jfk, name, codec, layout):
    channels = np.stack([jfk, jfk]) if layout == "stereo" else jfk[None]  # FFmpeg's vorbis: 2 ch
    loaded = np.array(load_audio(encode(tmp_path / name, channels, codec, layout)))
    assert abs(loaded.size - jfk.size) <= 0.02 * SAMPLE_RATE  # codec delay/priming removed
    n = min(loaded.size, jfk.size)
    assert np.corrcoef(loaded[:n], jfk[:n])[0, 1] > 0.98  # aligned: priming was trimmed
    assert abs(rms(loaded) / rms(jfk) - 1) < 0.05


def test_load_stereo_file_is_averaged(tmp_path):
    left, right = sine(440, SAMPLE_RATE), 0.5 * sine(1000, SAMPLE_RATE)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_allclose(np.array(load_audio(path)), (left + right) / 2, atol=1e-6)


def test_load_path_rejects_sample_rate():
    with pytest.raises(ValueError, match="array input only"):
        load_audio(JFK, sample_rate=44100)


# --- loading arrays ----------------------------------------------------------------------------


def test_array_downmix_and_types():
    left, right = sine(440, SAMPLE_RATE), sine(1000, SAMPLE_RATE)
    mono = (left + right) / 2
    for stereo in (np.stack([left, right]), np.stack([left, right], axis=1)):
        np.testing.assert_allclose(np.array(load_audio(stereo)), mono, atol=1e-6)
    out = load_audio(mx.array(np.stack([left, right]), dtype=mx.bfloat16))
    assert out.dtype == mx.float32 and out.shape == mono.shape
    assert load_audio(np.array([16384, -32768], np.int16)).tolist() == [0.5, -1.0]
    assert load_audio(np.array([2**30], np.int32)).tolist() == [0.5]
    assert load_audio(mx.array([0.25, -0.25])).tolist() == [0.25, -0.25]


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_array_resample_keeps_frequency(rate):
    out = np.array(load_audio(sine(1000, rate), sample_rate=rate))
    assert abs(out.size - SAMPLE_RATE) <= 2  # one second in, one second out
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / out.size
    assert abs(peak_hz - 1000) <= 2
    assert abs(rms(out) / rms(sine(1000, rate)) - 1) < 0.02


def test_array_resample_is_anti_aliased():
    tone = sine(10_000, 44_100)  # above the 8 kHz Nyquist of the output: must vanish, not alias
    assert rms(np.array(load_audio(tone, sample_rate=44_100))) < 0.05 * rms(tone)


# --- errors ------------------------------------------------------------------------------------


def assert_one_line_error(source: object, needle: str) -> str:
    with pytest.raises(AudioError) as info:
        load_audio(source)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and needle in message, message
    return message


def test_missing_and_directory(tmp_path):
    missing = tmp_path / "nope.wav"
    assert assert_one_line_error(missing, str(missing)).startswith("audio file not found")
    assert "directory" in assert_one_line_error(tmp_path, str(tmp_path))
    assert "directory" in assert_one_line_error(str(tmp_path), str(tmp_path))


def test_undecodable_files(tmp_path):
    noise = tmp_path / "noise.wav"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio\n" * 50)
    empty = tmp_path / "empty.wav"
    empty.touch()
    for path in (noise, text):
        assert "Invalid data" in assert_one_line_error(path, str(path))
    assert "0 bytes" in assert_one_line_error(empty, str(empty))


def test_zero_sample_wav(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE)
    assert "no audio samples" in assert_one_line_error(path, str(path))


def test_video_only_container(tmp_path):
    path = tmp_path / "video.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    assert "no audio stream" in assert_one_line_error(path, str(path))


@pytest.mark.parametrize(
    ("array", "needle"),
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros((2, 0)), "empty"),
        (np.zeros((2, 3, 4), np.float32), "1-D or 2-D"),
        (np.array([0.0, np.nan]), "NaN"),
        (np.array([0.0, np.inf]), "NaN"),
        (np.array(["a", "b"]), "float or signed-int"),
        (np.zeros(4, np.uint8), "float or signed-int"),
    ],
)
def test_bad_arrays(array, needle):
    assert_one_line_error(array, needle)


def test_bad_sample_rate():
    with pytest.raises(AudioError, match="sample_rate"):
        load_audio(np.zeros(100, np.float32), sample_rate=0)


# --- partly decodable files --------------------------------------------------------------------

# Containers PyAV encodes here: file name, codec, layout, muxer options, and whether a file cut
# short is detected (its header states the full length). A cut WAV or Ogg states the length that
# is left (FFmpeg clamps WAV's data size to the file; Ogg's length comes from its last page).
CONTAINERS = {
    "flac": ("jfk.flac", "flac", "mono", {}, True),
    "mp3": ("jfk.mp3", "libmp3lame", "mono", {}, True),
    "ogg": ("jfk.ogg", "vorbis", "stereo", {}, False),
    "wav": ("jfk.wav", "pcm_s16le", "mono", {}, False),
    "m4a": ("jfk.m4a", "aac", "mono", {"movflags": "faststart"}, True),  # index first
    "webm": ("jfk.webm", "libopus", "mono", {}, True),
}


def encode_container(folder: Path, samples: np.ndarray, container: str) -> Path:
    """(n,) float32 16 kHz samples as the file of `container` (a CONTAINERS key)."""
    name, codec, layout, options, _ = CONTAINERS[container]
    channels = np.stack([samples, samples]) if layout == "stereo" else samples[None]
    return encode(folder / name, channels, codec, layout, **options)


def cut(path: Path, fraction: float) -> Path:
    """A copy of `path` holding its first `fraction` of bytes."""
    data = path.read_bytes()
    out = path.with_name(f"cut-{path.name}")
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


@pytest.mark.parametrize("container", CONTAINERS)
def test_a_file_cut_in_half_gives_the_part_that_decodes(tmp_path, jfk, container, caplog):
    full_path = encode_container(tmp_path, jfk, container)
    full = read_audio(full_path)
    half = cut(full_path, 0.5)
    with caplog.at_level(logging.WARNING, logger="mlxwx.audio"):
        part = read_audio(half)
    assert part.dtype == np.float32 and part.ndim == 1
    assert 0.3 * full.size < part.size < 0.7 * full.size
    # a prefix of the whole, up to the resampler's tail (webm's Opus decodes at 48 kHz)
    np.testing.assert_allclose(part, full[: part.size], atol=1e-3)
    np.testing.assert_allclose(part[:-32], full[: part.size - 32], atol=1e-6)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if not CONTAINERS[container][4]:
        assert warnings == []
        return
    seconds = f"{part.size / SAMPLE_RATE:.1f} s"
    assert len(warnings) == 1, warnings
    head = f"{half}: decoding stopped at {seconds} of 11.0 s (the rest is corrupt or missing"
    assert warnings[0].startswith(head), warnings[0]
    assert warnings[0].endswith(f"; using the {seconds} that decoded")


def test_flac_stopped_by_an_error_names_it(tmp_path, jfk, caplog):
    with caplog.at_level(logging.WARNING, logger="mlxwx.audio"):
        read_audio(cut(encode_container(tmp_path, jfk, "flac"), 0.5))
    assert "(the rest is corrupt or missing: Invalid data" in caplog.text


def test_a_file_cut_before_any_audio_is_an_error(tmp_path, jfk):
    head = cut(encode_container(tmp_path, jfk, "flac"), 0.002)  # metadata only
    message = assert_one_line_error(head, str(head))
    assert message.startswith(f"cannot decode audio file {head}")


def test_a_whole_file_logs_nothing(tmp_path, jfk, caplog):
    with caplog.at_level(logging.WARNING, logger="mlxwx.audio"):
        for container in CONTAINERS:
            read_audio(encode_container(tmp_path, jfk, container))
    assert caplog.records == []


# --- encoded bytes and file objects ------------------------------------------------------------


@pytest.mark.parametrize("container", ["flac", "m4a"])
def test_bytes_and_file_objects_decode_like_the_file(tmp_path, jfk, container):
    path = encode_container(tmp_path, jfk, container)
    expected = read_audio(path)
    data = path.read_bytes()
    np.testing.assert_array_equal(read_audio(data), expected)
    np.testing.assert_array_equal(read_audio(bytearray(data)), expected)
    np.testing.assert_array_equal(read_audio(io.BytesIO(data)), expected)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(read_audio(f), expected)


def test_a_pipe_is_read_to_its_end(tmp_path, jfk):
    """A pipe cannot seek (stdin from another program); an mp4 needs to: read into memory."""
    data = encode_container(tmp_path, jfk, "m4a").read_bytes()
    read_end, write_end = os.pipe()

    def feed() -> None:
        with os.fdopen(write_end, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(read_end, "rb") as pipe:
        assert not pipe.seekable()
        samples = read_audio(pipe)
    writer.join()
    np.testing.assert_array_equal(samples, read_audio(data))
    empty_read, empty_write = os.pipe()
    os.close(empty_write)
    with os.fdopen(empty_read, "rb") as pipe:
        assert_one_line_error(pipe, "audio data is empty (0 bytes)")


def test_bad_bytes_are_one_line_errors():
    assert_one_line_error(b"", "audio data is empty (0 bytes)")
    assert_one_line_error(b"not audio at all" * 100, "cannot decode audio file <bytes>")
    assert_one_line_error(io.BytesIO(b"RIFF" + bytes(500)), "cannot decode audio file <stream>")
    with pytest.raises(ValueError, match="array input only"):
        read_audio(JFK.read_bytes(), sample_rate=16000)


def test_nan_and_infinite_samples_become_zero(tmp_path, caplog):
    """Float PCM can hold NaN and infinities: they are zeroed (with a warning), as the
    spectrogram of one NaN is NaN everywhere."""
    samples = sine(440, SAMPLE_RATE)
    samples[[10, 20, 30]] = [np.nan, np.inf, -np.inf]
    path = tmp_path / "nan.wav"
    sf.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="mlxwx.audio"):
        loaded = read_audio(path)
    expected = samples.copy()
    expected[[10, 20, 30]] = 0.0
    np.testing.assert_array_equal(loaded, expected)
    assert caplog.messages == [f"{path}: 3 samples are NaN or infinite; using 0 for them"]
