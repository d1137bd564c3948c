"""Silero VAD v5/v6, 16 kHz network (architecture only).

One step scores a 512-sample window (32 ms) seen with the 64 samples before it:
  (576,) --reflect-pad 64 on the right--> (640,) --STFT as a conv (256 taps, hop 128)-->
  |X| (4, 129) --4 convs + ReLU (strides 1, 2, 2, 1)--> (1, 128) --LSTM cell (128)--> h
  --ReLU, 1x1 conv, sigmoid--> speech probability.
The encoder (everything before the LSTM) sees only its own window, so all windows of a file are
encoded as one batch; only the LSTM is sequential. MLX convs are channels-last: weights are
`(out, kernel, in)`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from mlxwx.kernels import lstm_scan


@dataclass(frozen=True)
class SileroConfig:
    sample_rate: int = 16000
    window: int = 512  # samples scored per step (32 ms)
    context: int = 64  # samples of the previous window seen again
    n_fft: int = 256  # STFT frame; its conv holds cos and sin rows for n_fft // 2 + 1 bins
    stft_hop: int = 128
    hidden: int = 128  # encoder width and LSTM size

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SileroConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model_type": "silero_vad"}

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1


class LSTMCell(nn.Module):
    """Parameters of a PyTorch `nn.LSTMCell` (gate order i, f, g, o)."""

    def __init__(self, dims: int, hidden: int):
        super().__init__()
        self.weight_ih = mx.zeros((4 * hidden, dims))
        self.weight_hh = mx.zeros((4 * hidden, hidden))
        self.bias_ih = mx.zeros((4 * hidden,))
        self.bias_hh = mx.zeros((4 * hidden,))

    def project(self, x: mx.array) -> mx.array:
        """(..., dims) -> (..., 4 * hidden): the input part of every step, both biases added."""
        return x @ self.weight_ih.T + (self.bias_ih + self.bias_hh)

    def scan(self, xw: mx.array, h: mx.array, c: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        """xw: (B, T, 4H) from `project`; h, c: (B, H). Returns (B, T, H) and the final h, c."""
        return lstm_scan(xw, self.weight_hh, h, c)


class SileroVadNet(nn.Module):
    def __init__(self, config: SileroConfig):
        super().__init__()
        self.config = config
        c, width = config, config.hidden
        self.stft_conv = nn.Conv1d(1, 2 * c.bins, c.n_fft, stride=c.stft_hop, bias=False)
        self.conv1 = nn.Conv1d(c.bins, width, 3, padding=1)
        self.conv2 = nn.Conv1d(width, width // 2, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(width // 2, width // 2, 3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(width // 2, width, 3, padding=1)
        self.lstm_cell = LSTMCell(width, width)
        self.final_conv = nn.Conv1d(width, 1, 1)

    def encode(self, windows: mx.array) -> mx.array:
        """(N, context + window) float32 samples -> (N, hidden) features, windows independent."""
        pad = self.config.context
        # reflect padding on the right: x[L-2], x[L-3], ..., x[L-1-pad]
        tail = windows[:, -pad - 1 : -1][:, ::-1]
        x = mx.concatenate([windows, tail], axis=1)[:, :, None]  # (N, L + pad, 1)
        x = self.stft_conv(x)  # (N, frames, 2 * bins): real rows, then imaginary rows
        bins = self.config.bins
        x = mx.sqrt(mx.square(x[..., :bins]) + mx.square(x[..., bins:]))
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = nn.relu(conv(x))
        return x[:, -1]  # one frame is left after the two stride-2 convs

    def decode(self, h: mx.array) -> mx.array:
        """(..., hidden) LSTM outputs -> (...) speech probabilities."""
        return mx.sigmoid(self.final_conv(nn.relu(h))[..., 0])

    def __call__(
        self, windows: mx.array, h: mx.array, c: mx.array
    ) -> tuple[mx.array, mx.array, mx.array]:
        """windows: (B, T, context + window) consecutive windows of B streams; h, c: (B, hidden).

        Returns probabilities (B, T) and the final (h, c).
        """
        b, t, n = windows.shape
        xw = self.lstm_cell.project(self.encode(windows.reshape(b * t, n)))
        hs, h, c = self.lstm_cell.scan(xw.reshape(b, t, -1), h, c)
        return self.decode(hs), h, c
