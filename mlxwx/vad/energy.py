"""Energy VAD written from scratch in MLX: sub-band SNR over an adaptive noise floor.

Design (every step is an array op over the whole file; no Python loop over frames):

1. Frames: 25 ms Hann windows every 10 ms (`FRAME`, `HOP`), each centred on its 10 ms cell, so
   probability `i` covers `[i * 0.01, (i + 1) * 0.01)` seconds.
2. Spectrum of the speech band only: one matmul of the frames with a windowed DFT basis restricted
   to the bins between `low_hz` and `high_hz` (300-3400 Hz: 78 of 201 bins), cheaper than a full
   FFT and a plain matmul on every backend. Bin powers are averaged into `bands` mel-spaced
   sub-bands and smoothed over `smooth` seconds (a sliding sum made of sums within blocks of the
   window's width, never a running total over the file: in float32 that total grows with every
   loud frame, and the difference of two totals loses a quiet frame's power after speech, which
   made noise after speech score as speech); levels are in dB relative to unit-variance white
   noise (a full-scale white noise is 0 dB in every band) and clamped at `silence_db`, so digital
   silence and dither have a finite, flat level. Every later step is local too, so a frame's
   probability depends only on the audio within about 2 s of it.
3. Adaptive noise floor per sub-band, minimum statistics: the minimum level over the
   `floor_window` seconds before the frame and, separately, over the `floor_window` seconds after
   it; the floor is the larger of the two. Speech has pauses (or at least weak frames in each
   band) every second or so, so both minima fall to the noise between words; a stationary noise
   that starts after silence has its own level as the minimum after the onset, so its onset is not
   taken for speech. Near the file's ends, where a window is cut short, only the other one counts.
4. SNR per band = level - floor - `floor_bias` (the minimum of a noisy estimate sits below its
   mean), clipped to `[0, snr_cap]`; the frame score is the mean SNR of its `top_bands` best bands,
   so speech needs several bands above their floors (one band alone adds at most
   `snr_cap / top_bands` = 3.75 dB, under `snr_mid`), while stationary noise of any colour, hum and
   silence score about 0 dB because every band sits at its own floor.
5. Time smoothing of the score (morphological, so region edges do not move): a closing of
   `fill_gaps` seconds bridges the dips between words, an opening of `drop_bursts` seconds removes
   clicks and transients.
6. Probability = logistic((score - `snr_mid`) / `snr_scale`): 0.5 at `snr_mid` dB, so the shared
   hysteresis binarization (onset/offset) applies as to the neural VADs.

Spectra are computed in blocks of `block_seconds` (bounded memory); the floor and smoothing run on
the (frames, bands) levels of the whole file at once (speed: bench/bench_vad.py).

The defaults were tuned on the speech clips of the test set (sample.wav, synthconv.wav, LibriVox,
JFK) and on white/pink/brown noise and 50 Hz hum, alone and mixed with that speech, with
hysteresis onset 0.5 / offset 0.363 (`python bench/eval_vad.py --noise`; the detection error rates
are in bench/RESULTS.md). Stationary noise alone scores low and yields no region. Limits: it
cannot tell speech from other non-stationary sounds (music, keyboard, background voices, a door),
and speech close to broadband noise is partly missed. `low_hz=150` takes in the voice's lowest
harmonics and finds more of that speech but also takes low-frequency bumps, which 300 Hz keeps
out.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import mlx.core as mx
import numpy as np

from mlxwx.vad.base import SAMPLE_RATE, SpeechProbs, check_bounds

FRAME = 400  # samples in one analysis window: 25 ms
HOP = 160  # samples between frames: 10 ms
FRAMES_PER_SECOND = SAMPLE_RATE // HOP  # 100
BIN_HZ = SAMPLE_RATE / FRAME  # 40 Hz between DFT bins


@dataclass(frozen=True)
class EnergyOptions:
    """Parameters of the energy VAD (seconds, Hz and dB).

    Attributes:
        low_hz: lower edge of the analysed band.
        high_hz: upper edge of the analysed band (at most 8000).
        bands: mel-spaced sub-bands between `low_hz` and `high_hz`.
        top_bands: the frame score is the mean SNR of this many best sub-bands.
        smooth: seconds of moving average of the band powers (lowers the noise estimate's variance).
        floor_window: seconds of each minimum-statistics window (before and after the frame).
        floor_bias: dB subtracted from every band's SNR (the minimum sits below the noise mean).
        silence_db: band level taken as silence; lower levels are clamped to it.
        snr_cap: dB at which a band's SNR stops counting (one very loud band cannot decide alone).
        snr_mid: frame score in dB that maps to probability 0.5.
        snr_scale: dB per unit of the logistic's argument (smaller = steeper).
        fill_gaps: seconds: dips in the score shorter than this are filled (closing).
        drop_bursts: seconds: peaks in the score shorter than this are removed (opening).
        block_seconds: audio per block for the spectra (memory bound).
    """

    low_hz: float = 300.0
    high_hz: float = 3400.0
    bands: int = 12
    top_bands: int = 4
    smooth: float = 0.05
    floor_window: float = 1.5
    floor_bias: float = 3.0
    silence_db: float = -90.0
    snr_cap: float = 15.0
    snr_mid: float = 5.0
    snr_scale: float = 1.5
    fill_gaps: float = 0.3
    drop_bursts: float = 0.1
    block_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.low_hz < self.high_hz <= SAMPLE_RATE / 2:
            raise ValueError(f"need 0 <= low_hz < high_hz <= 8000: {self.low_hz}, {self.high_hz}")
        bins = math.floor(self.high_hz / BIN_HZ) - math.ceil(self.low_hz / BIN_HZ) + 1
        if not 1 <= self.bands <= bins:
            raise ValueError(f"bands must be in [1, {bins}] for this band, got {self.bands}")
        if not 1 <= self.top_bands <= self.bands:
            raise ValueError(f"top_bands must be in [1, bands={self.bands}], got {self.top_bands}")
        check_bounds(self, ("smooth", "fill_gaps", "drop_bursts", "floor_bias", "snr_cap"), 0)
        check_bounds(self, ("floor_window", "snr_scale", "block_seconds"), 0, strict=True)


@dataclass(frozen=True)
class EnergyFeatures:
    """Intermediate values of the energy VAD, for plots and experiments."""

    level: mx.array  # (frames, bands) float32 band levels, dB
    floor: mx.array  # (frames, bands) float32 noise floor, dB
    score: mx.array  # (frames,) float32 smoothed frame score, dB above the floor
    probs: mx.array  # (frames,) float32 speech probability


@functools.lru_cache(maxsize=8)
def _band_basis(low_hz: float, high_hz: float, bands: int) -> tuple[mx.array, mx.array]:
    """A Hann-windowed DFT basis (FRAME, 2K), cos then sin, for the K bins in [low_hz, high_hz],
    scaled so unit-variance white noise has unit mean bin power; and the (K, bands) matrix that
    averages bins into mel-spaced bands."""
    k = np.arange(math.ceil(low_hz / BIN_HZ), math.floor(high_hz / BIN_HZ) + 1)
    n = np.arange(FRAME)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / FRAME)  # periodic Hann
    phase = 2 * np.pi * np.outer(n, k) / FRAME
    scaled = window[:, None] / np.sqrt((window**2).sum())
    basis = np.concatenate([np.cos(phase) * scaled, np.sin(phase) * scaled], axis=1)

    def mel(hz: np.ndarray) -> np.ndarray:
        return 2595 * np.log10(1 + hz / 700)

    edges = mel(np.array([k[0] - 0.5, k[-1] + 0.5]) * BIN_HZ)
    position = (mel(k * BIN_HZ) - edges[0]) / (edges[1] - edges[0])
    band = np.minimum((position * bands).astype(int), bands - 1)
    average = np.zeros((k.size, bands))
    average[np.arange(k.size), band] = 1
    average /= np.maximum(average.sum(axis=0, keepdims=True), 1)
    return mx.array(basis.astype(np.float32)), mx.array(average.astype(np.float32))


def _reflect_pad(audio: mx.array, length: int) -> mx.array:
    """Pad to `length` samples, (FRAME - HOP) // 2 before, so window i is centred on the middle
    of its 10 ms cell; mirrored (no step at the edges: a recording that starts mid-noise must
    not start with a click), zeros for audio shorter than the padding."""
    n = audio.shape[0]
    left = (FRAME - HOP) // 2
    right = length - left - n
    if n <= max(left, right):
        return mx.pad(audio, [(left, right)])
    return mx.concatenate([audio[1 : left + 1][::-1], audio, audio[n - right - 1 : n - 1][::-1]])


def band_power(audio: mx.array, options: EnergyOptions) -> mx.array:
    """(samples,) float32 16 kHz -> (ceil(samples / HOP), bands) float32 mean bin power per band."""
    basis, average = _band_basis(options.low_hz, options.high_hz, options.bands)
    frames = -(-audio.shape[0] // HOP)
    padded = _reflect_pad(audio, frames * HOP + FRAME - HOP)
    block = max(1, round(options.block_seconds * FRAMES_PER_SECOND))
    half = basis.shape[1] // 2
    parts = []
    for first in range(0, frames, block):
        count = min(block, frames - first)
        span = padded[first * HOP : (first + count - 1) * HOP + FRAME]
        spectrum = mx.as_strided(span, (count, FRAME), (HOP, 1)) @ basis
        power = mx.square(spectrum[:, :half]) + mx.square(spectrum[:, half:])
        parts.append(power @ average)
        mx.eval(parts[-1])
    return mx.concatenate(parts, axis=0) if parts else mx.zeros((0, options.bands))


def _window_sum(x: mx.array, width: int) -> mx.array:
    """sum(x[t : t + width]) along axis 0, frames past the end count as 0. Prefix and suffix sums
    within blocks of `width` (as `_window_min`), so no partial sum spans more than one window: a
    running total over the whole file would make a quiet frame the difference of two large
    float32 totals after loud audio (4e-6 of noise power lost under the ulp of 340)."""
    n, rest = x.shape[0], x.shape[1:]
    blocks = -(-(n + width - 1) // width)
    pad = mx.zeros((blocks * width - n, *rest), dtype=x.dtype)
    y = mx.concatenate([x, pad], axis=0).reshape(blocks, width, *rest)
    prefix = mx.cumsum(y, axis=1).reshape(blocks * width, *rest)
    suffix = mx.cumsum(y, axis=1, reverse=True).reshape(blocks * width, *rest)
    # The window starting at t = k * width + j is the rest of block k plus the first j frames
    # of block k + 1 (none when j = 0: the window is block k).
    starts_block = (mx.arange(n) % width == 0).reshape(n, *([1] * len(rest)))
    return suffix[:n] + mx.where(starts_block, 0, prefix[width - 1 : width - 1 + n])


def _moving_average(x: mx.array, width: int) -> mx.array:
    """Centred moving average over axis 0 (edges repeated)."""
    if width <= 1 or x.shape[0] == 0:
        return x
    left = (width - 1) // 2
    padded = mx.pad(x, [(left, width - 1 - left)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    return _window_sum(padded, width)[: x.shape[0]] / width


def _window_min(x: mx.array, width: int) -> mx.array:
    """min(x[t : t + width]) along axis 0, frames past the end ignored (van Herk / Gil-Werman:
    prefix and suffix minima within blocks of `width`, O(n) whatever the width)."""
    n, rest = x.shape[0], x.shape[1:]
    blocks = -(-(n + width - 1) // width)
    pad = mx.full((blocks * width - n, *rest), float("inf"), dtype=x.dtype)
    y = mx.concatenate([x, pad], axis=0).reshape(blocks, width, *rest)
    prefix = mx.cummin(y, axis=1).reshape(blocks * width, *rest)
    suffix = mx.cummin(y, axis=1, reverse=True).reshape(blocks * width, *rest)
    return mx.minimum(suffix[:n], prefix[width - 1 : width - 1 + n])


def _centred_min(x: mx.array, width: int) -> mx.array:
    left = (width - 1) // 2
    pad = mx.full((left, *x.shape[1:]), float("inf"), dtype=x.dtype)
    return _window_min(mx.concatenate([pad, x], axis=0), width)[: x.shape[0]]


def closing(x: mx.array, width: int) -> mx.array:
    """Morphological closing of a (frames,) score >= 0: fills dips narrower than `width` frames.
    Outside the file counts as 0 (no speech), so a peak at an edge is not stretched."""
    if width <= 1:
        return x
    padded = mx.pad(x, [(width, width)])
    return _centred_min(-_centred_min(-padded, width), width)[width:-width]


def opening(x: mx.array, width: int) -> mx.array:
    """Morphological opening of a (frames,) score >= 0: removes peaks narrower than `width` frames
    (outside the file counts as 0)."""
    if width <= 1:
        return x
    padded = mx.pad(x, [(width, width)])
    return -_centred_min(-_centred_min(padded, width), width)[width:-width]


def noise_floor(level: mx.array, width: int) -> mx.array:
    """(frames, bands) dB -> the larger of the minima over the `width` frames ending at and
    starting at each frame; where one window is cut short by the file's edge, the other alone."""
    n = level.shape[0]
    future = _window_min(level, width)
    past = _window_min(level[::-1], width)[::-1]
    t = mx.arange(n)[:, None]
    has_past, has_future = t >= width - 1, t <= n - width
    floor = mx.maximum(
        mx.where(has_past, past, -float("inf")), mx.where(has_future, future, -float("inf"))
    )
    return mx.where(has_past | has_future, floor, mx.minimum(past, future))


def energy_features(audio: mx.array, options: EnergyOptions) -> EnergyFeatures:
    """Band levels, noise floor, frame score and speech probability of 16 kHz mono audio."""
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D (samples,) at 16 kHz, got shape {audio.shape}")
    power = _moving_average(band_power(audio.astype(mx.float32), options), _frames(options.smooth))
    level = 10 * mx.log10(mx.maximum(power, 10 ** (options.silence_db / 10)))
    floor = noise_floor(level, _frames(options.floor_window))
    snr = mx.clip(level - floor - options.floor_bias, 0, options.snr_cap)
    score = top_mean(snr, options.top_bands)
    score = opening(closing(score, _frames(options.fill_gaps)), _frames(options.drop_bursts))
    probs = mx.sigmoid((score - options.snr_mid) / options.snr_scale)
    return EnergyFeatures(level, floor, score, probs)


SORT_ROWS = 32768  # rows per sort call; see top_mean


def top_mean(x: mx.array, k: int) -> mx.array:
    """(frames, bands) -> (frames,) mean of each frame's `k` largest values. Sorted in blocks of
    SORT_ROWS frames: MLX's CUDA sort gives each row a grid row, and more than 65535 of them (an
    hour is 360,000 frames) fails to launch (cudaGraphAddKernelNode: invalid argument)."""
    parts = [
        mx.sort(x[i : i + SORT_ROWS], axis=1)[:, -k:].mean(axis=1)
        for i in range(0, x.shape[0], SORT_ROWS)
    ]
    return mx.concatenate(parts) if parts else mx.zeros((0,), x.dtype)


def _frames(seconds: float) -> int:
    return max(1, round(seconds * FRAMES_PER_SECOND))


class EnergyVad:
    """Energy VAD (see the module docstring): `vad(audio)` -> per-10 ms speech probabilities."""

    method: ClassVar[str] = "energy"  # its name in mlxwx.vad.METHODS

    def __init__(self, options: EnergyOptions | None = None) -> None:
        self.options = options if options is not None else EnergyOptions()

    def __call__(self, audio: mx.array) -> SpeechProbs:
        """(samples,) float32 16 kHz mono -> SpeechProbs with hop 0.01 s, frame i at i * 0.01 s."""
        probs = energy_features(audio, self.options).probs
        mx.eval(probs)
        return SpeechProbs(probs=probs, hop=HOP / SAMPLE_RATE)
