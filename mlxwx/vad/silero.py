"""Silero VAD (v6, 16 kHz) in MLX: the `Vad` that runs the network over a file.

Weights: `mlxwx.weights.silero` (silero-vad 6.2.3's, converted, shipped inside mlxwx).

Running: every 512-sample window is encoded at once (the encoder sees one window and its 64
context samples); the LSTM runs as parallel streams over blocks of windows, each block starting
`warmup` windows early so that its state has settled when its own windows begin, or as one
sequential stream (exactly silero's order of operations).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import mlx.core as mx

from ..audio import SAMPLE_RATE
from ..models.silero import SileroVadNet
from ..weights.silero import load_silero
from .base import SpeechProbs, check_bounds


@dataclass(frozen=True)
class SileroOptions:
    """How the LSTM runs over a file.

    Attributes:
      sequential: True: one stream over the whole file, window after window, as silero runs it.
        False: files longer than `warmup + block` windows run as parallel streams. None: streams
        on a GPU, where a step costs the same for one stream or many; one stream on CPU, where
        a step's cost grows with the streams (bench/bench_silero.py).
      block: windows (32 ms each) each stream scores.
      warmup: windows each stream runs before its block, to settle its state (discarded).
        silero's LSTM remembers for minutes; with 6144 windows (197 s) the streamed
        probabilities stay within 1e-5 of the sequential ones (bench/RESULTS.md).
      streams: streams run side by side (bounds memory: about (streams * block + warmup) * 2 KB).
      encode_windows: windows encoded per call (bounds the encoder's memory).
      scan_steps: LSTM steps per evaluated graph.
    """

    sequential: bool | None = None
    block: int = 4096
    warmup: int = 6144
    streams: int = 16
    encode_windows: int = 1024
    scan_steps: int = 512

    def __post_init__(self) -> None:
        check_bounds(self, ("block", "streams", "encode_windows", "scan_steps"), 1)
        check_bounds(self, ("warmup",), 0)


class SileroVad:
    """Silero VAD: speech probability of every 512-sample window (hop 32 ms) of 16 kHz audio."""

    method: ClassVar[str] = "silero"  # its name in mlxwx.vad.METHODS

    def __init__(self, model: SileroVadNet | None = None, options: SileroOptions | None = None):
        self.model = model if model is not None else load_silero()
        self.options = options or SileroOptions()
        self.window = self.model.config.window
        self.context = self.model.config.context

    @property
    def hop(self) -> float:
        return self.window / SAMPLE_RATE

    def __call__(self, audio: mx.array) -> SpeechProbs:
        """audio: (samples,) float32 at 16 kHz -> probabilities of ceil(samples / 512) windows,
        the last one zero-padded, as silero scores them."""
        audio = audio.astype(mx.float32).reshape(-1)
        n = -(-audio.shape[0] // self.window)
        if n == 0:
            return SpeechProbs(mx.zeros((0,), mx.float32), self.hop)
        o = self.options
        sequential = o.sequential if o.sequential is not None else mx.default_device() == mx.cpu
        streamed = not sequential and n > o.warmup + o.block
        probs = mx.concatenate(list((self._streamed if streamed else self._sequential)(audio, n)))
        return SpeechProbs(probs, self.hop)

    def _windows(self, audio: mx.array, a: int, b: int) -> mx.array:
        """Windows a..b-1 with their context: (b - a, context + window); zeros past the ends."""
        w, ctx = self.window, self.context
        main = audio[a * w : b * w]
        if main.shape[0] < (b - a) * w:
            main = mx.pad(main, (0, (b - a) * w - main.shape[0]))
        main = main.reshape(b - a, w)
        first = audio[a * w - ctx : a * w] if a > 0 else mx.zeros((ctx,), audio.dtype)
        context = mx.concatenate([first[None], main[:-1, -ctx:]], axis=0)
        return mx.concatenate([context, main], axis=1)

    def _project(self, audio: mx.array, a: int, b: int) -> mx.array:
        """LSTM inputs (b - a, 4H) of windows a..b-1, encoded `encode_windows` at a time."""
        parts = []
        for s in range(a, b, self.options.encode_windows):
            e = min(b, s + self.options.encode_windows)
            part = self.model.lstm_cell.project(self.model.encode(self._windows(audio, s, e)))
            mx.eval(part)
            parts.append(part)
        return mx.concatenate(parts) if len(parts) > 1 else parts[0]

    def _sequential(self, audio: mx.array, n: int) -> Iterator[mx.array]:
        h = c = mx.zeros((1, self.model.config.hidden), mx.float32)
        step = self.options.scan_steps
        for a in range(0, n, self.options.encode_windows):
            xw = self._project(audio, a, min(n, a + self.options.encode_windows))
            for t in range(0, xw.shape[0], step):
                hs, h, c = self.model.lstm_cell.scan(xw[None, t : t + step], h, c)
                probs = self.model.decode(hs)[0]
                mx.eval(probs, h, c)
                yield probs

    def _streamed(self, audio: mx.array, n: int) -> Iterator[mx.array]:
        o = self.options
        for r0 in range(0, -(-n // o.block), o.streams):
            a, b = r0 * o.block, min(n, (r0 + o.streams) * o.block)
            rows = -(-(b - a) // o.block)
            xw = self._project(audio, max(0, a - o.warmup), b)
            if a < o.warmup:  # before the file: inputs that keep the state exactly zero
                xw = mx.concatenate([_zero_state_inputs(o.warmup - a, xw.shape[1]), xw])
            xw = mx.pad(xw, [(0, o.warmup + rows * o.block - xw.shape[0]), (0, 0)])
            yield self._scan_rows(xw, rows).reshape(-1)[: b - a]

    def _scan_rows(self, xw: mx.array, rows: int) -> mx.array:
        """Row r runs inputs r * block .. r * block + warmup + block - 1 of `xw`; returns the
        probabilities of each row's last `block` steps, (rows, block)."""
        o = self.options
        h = c = mx.zeros((rows, self.model.config.hidden), mx.float32)
        starts = (mx.arange(rows) * o.block)[:, None]
        kept = []
        for t in range(0, o.warmup + o.block, o.scan_steps):
            steps = mx.arange(t, min(t + o.scan_steps, o.warmup + o.block))
            hs, h, c = self.model.lstm_cell.scan(xw[starts + steps[None]], h, c)
            if t + hs.shape[1] > o.warmup:
                probs = self.model.decode(hs[:, max(0, o.warmup - t) :])
                mx.eval(probs, h, c)
                kept.append(probs)
            else:
                mx.eval(h, c)
        return mx.concatenate(kept, axis=1)


def _zero_state_inputs(steps: int, width: int) -> mx.array:
    """LSTM inputs that hold a zero state at zero: the input gate is shut (sigmoid(-1e4) = 0),
    so c = f * 0 + 0 * g = 0 and h = o * tanh(0) = 0."""
    gate = width // 4
    row = mx.concatenate([mx.full((gate,), -1e4), mx.zeros((width - gate,))])
    return mx.broadcast_to(row, (steps, width))
