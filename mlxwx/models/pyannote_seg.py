"""pyannote/segmentation (v2, "PyanNet") in MLX: architecture only.

SincNet (learned sinc band-pass filters on the raw waveform, then two plain convolutions, each
stage followed by max-pooling, instance norm and leaky ReLU) -> a multi-layer bidirectional LSTM
-> linear layers with leaky ReLU -> a classifier with a sigmoid per speaker (multi-label).

Layouts are MLX's: activations are (batch, time, channels) and conv weights (out, kernel, in).
Parameter names mirror pyannote.audio's module tree, so the converter is a short, explicit map.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from ..kernels import lstm_scan

MODEL_TYPE = "pyannote-segmentation"
POOL = 3  # every SincNet stage max-pools by 3 with stride 3
CONV_KERNEL = 5  # kernel of the two plain convolutions
EPS = 1e-5  # InstanceNorm1d's epsilon


@dataclass(frozen=True)
class PyanNetConfig:
    sample_rate: int = 16000
    sinc_filters: int = 80  # half cosine, half sine filters
    sinc_kernel: int = 251
    sinc_stride: int = 10
    min_low_hz: float = 50.0
    min_band_hz: float = 50.0
    conv_channels: int = 60
    lstm_hidden: int = 128
    lstm_layers: int = 4
    linear_hidden: int = 128
    linear_layers: int = 2
    num_classes: int = 3  # speakers, scored independently (sigmoid)
    duration: float = 5.0  # window (s) the model was trained on and is run on

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> PyanNetConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": MODEL_TYPE, **dataclasses.asdict(self)}

    def _layers(self) -> list[tuple[int, int]]:
        """(kernel, stride) of every convolution and pooling in order."""
        return [(self.sinc_kernel, self.sinc_stride), (POOL, POOL)] + [
            (CONV_KERNEL, 1),
            (POOL, POOL),
        ] * 2

    def num_frames(self, num_samples: int) -> int:
        """Output frames for a window of `num_samples` samples."""
        n = num_samples
        for kernel, stride in self._layers():
            n = (n - kernel) // stride + 1
        return n

    def receptive_field(self) -> tuple[float, float, float]:
        """(start, duration, step) in seconds of output frame 0 and the hop between frames,
        as pyannote's `Model.receptive_field` computes them (no padding anywhere)."""

        def size(frames: int) -> int:
            for kernel, stride in reversed(self._layers()):
                frames = kernel + (frames - 1) * stride
            return frames

        center = 0
        for kernel, stride in reversed(self._layers()):
            center = center * stride + (kernel - 1) // 2
        first, step = size(1), size(2) - size(1)
        start = center - (first - 1) / 2
        sr = self.sample_rate
        return start / sr, first / sr, step / sr


def time_mean(x: mx.array, block: int = 256) -> mx.array:
    """Mean over axis 1 of (B, T, C), summed in blocks: MLX's CPU reduction adds sequentially
    in float32, which loses ~3e-4 relative on the 80000-sample waveform variance."""
    b, t, c = x.shape
    n = -(-t // block)
    padded = mx.pad(x, [(0, 0), (0, n * block - t), (0, 0)])
    partial = mx.sum(padded.reshape(b, n, block, c), axis=2)
    return mx.sum(partial, axis=1, keepdims=True) / t


def instance_norm(x: mx.array, weight: mx.array, bias: mx.array) -> mx.array:
    """InstanceNorm1d(affine=True) over time: x (B, T, C), statistics per (batch, channel)."""
    centered = x - time_mean(x)
    var = time_mean(mx.square(centered))
    return centered * mx.rsqrt(var + EPS) * weight + bias


def max_pool(x: mx.array, size: int = POOL) -> mx.array:
    """MaxPool1d(size, stride=size) over time of (B, T, C); drops the incomplete tail."""
    b, t, c = x.shape
    n = t // size
    return mx.max(x[:, : n * size].reshape(b, n, size, c), axis=2)


class Norm(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = mx.ones((channels,))
        self.bias = mx.zeros((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        return instance_norm(x, self.weight, self.bias)


class SincFilters(nn.Module):
    """asteroid-filterbanks' ParamSincFB: per band a learned low cut-off and band width; the
    first half of the filters are even (cosine) band-pass filters, the second half odd (sine)."""

    def __init__(self, cfg: PyanNetConfig) -> None:
        super().__init__()
        half, taps = cfg.sinc_filters // 2, cfg.sinc_kernel // 2
        self.cfg = cfg
        self.low_hz = mx.zeros((half, 1))
        self.band_hz = mx.zeros((half, 1))
        self.window = mx.zeros((taps,))  # left half of a Hamming window
        self.n = mx.zeros((1, taps))  # 2 pi t / sample_rate for t = -taps .. -1

    def __call__(self) -> mx.array:
        """(filters, kernel, 1) conv weight."""
        cfg = self.cfg
        low = cfg.min_low_hz + mx.abs(self.low_hz)
        high = mx.clip(
            low + cfg.min_band_hz + mx.abs(self.band_hz), cfg.min_low_hz, cfg.sample_rate / 2
        )
        band = high - low  # (half, 1)
        ft_low, ft_high = low @ self.n, high @ self.n
        half_n = self.n / 2
        cos_left = (mx.sin(ft_high) - mx.sin(ft_low)) / half_n * self.window
        sin_left = (mx.cos(ft_low) - mx.cos(ft_high)) / half_n * self.window
        cos = mx.concatenate([cos_left, 2 * band, cos_left[:, ::-1]], axis=1)
        sin = mx.concatenate([sin_left, mx.zeros_like(band), -sin_left[:, ::-1]], axis=1)
        filters = mx.concatenate([cos, sin], axis=0) / mx.concatenate([2 * band, 2 * band])
        return filters[:, :, None]


class SincNet(nn.Module):
    def __init__(self, cfg: PyanNetConfig) -> None:
        super().__init__()
        c = cfg.conv_channels
        self.stride = cfg.sinc_stride
        self.wav_norm = Norm(1)
        self.sinc = SincFilters(cfg)
        self.convs = [nn.Conv1d(cfg.sinc_filters, c, CONV_KERNEL), nn.Conv1d(c, c, CONV_KERNEL)]
        self.norms = [Norm(cfg.sinc_filters), Norm(c), Norm(c)]

    def __call__(self, wav: mx.array) -> mx.array:
        """wav (B, samples) -> features (B, frames, conv_channels)."""
        x = self.wav_norm(wav[:, :, None])
        x = mx.abs(mx.conv1d(x, self.sinc(), stride=self.stride))
        x = nn.leaky_relu(self.norms[0](max_pool(x)))
        for conv, norm in zip(self.convs, self.norms[1:], strict=True):
            x = nn.leaky_relu(norm(max_pool(conv(x))))
        return x


class LSTMDirection(nn.Module):
    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        scale = 1 / math.sqrt(hidden)
        self.w_ih = mx.random.uniform(-scale, scale, (4 * hidden, inputs))
        self.w_hh = mx.random.uniform(-scale, scale, (4 * hidden, hidden))
        self.b_ih = mx.zeros((4 * hidden,))
        self.b_hh = mx.zeros((4 * hidden,))

    def __call__(self, x: mx.array) -> mx.array:
        """x (B, T, inputs) -> hidden states (B, T, hidden), zero initial state."""
        xw = x @ self.w_ih.T + (self.b_ih + self.b_hh)
        h = mx.zeros((x.shape[0], self.w_hh.shape[1]), dtype=x.dtype)
        return lstm_scan(xw, self.w_hh, h, h)[0]


class BiLSTMLayer(nn.Module):
    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.fwd = LSTMDirection(inputs, hidden)
        self.bwd = LSTMDirection(inputs, hidden)

    def __call__(self, x: mx.array) -> mx.array:
        back = self.bwd(x[:, ::-1])[:, ::-1]
        return mx.concatenate([self.fwd(x), back], axis=-1)


class PyanNet(nn.Module):
    def __init__(self, cfg: PyanNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.lstm_hidden
        self.sincnet = SincNet(cfg)
        self.lstm = [
            BiLSTMLayer(cfg.conv_channels if i == 0 else 2 * h, h) for i in range(cfg.lstm_layers)
        ]
        dims = [2 * h] + [cfg.linear_hidden] * cfg.linear_layers
        self.linear = [nn.Linear(a, b) for a, b in itertools.pairwise(dims)]
        self.classifier = nn.Linear(dims[-1], cfg.num_classes)

    def __call__(self, wav: mx.array) -> mx.array:
        """wav (B, samples) float32 at 16 kHz -> speaker activity (B, frames, num_classes)
        in [0, 1]; frames = cfg.num_frames(samples) (293 for 5 s)."""
        x = self.sincnet(wav)
        for layer in self.lstm:
            x = layer(x)
        for linear in self.linear:
            x = nn.leaky_relu(linear(x))
        return mx.sigmoid(self.classifier(x))
