"""pyannote segmentation v2 as a VAD, run the way WhisperX runs it (its default VAD).

WhisperX builds pyannote.audio's `VoiceActivityDetection` pipeline around the checkpoint and keeps
only its `Inference` output:
- 5 s windows (the model's training duration) every 0.5 s (10 % of it); the last, incomplete
  window is zero-padded;
- per window and frame, the max over the 3 speaker outputs (the pipeline's pre-aggregation hook);
- overlapping windows are averaged frame by frame with a Hamming window over each window's 293
  frames (overlap-add); a window's frames land at the frame closest to the window start;
- the result is cropped to the audio's duration (only when the last window was padded).
Frames follow the model's receptive field: a hop of 270 samples (16.875 ms), 991 samples wide.

Here the windows run in batches through the MLX port (`mlxwx.models.pyannote_seg`), and the
overlap-add is a scatter-add, so everything stays on the device.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import mlx.core as mx
import numpy as np

from ..models.pyannote_seg import PyanNet
from ..weights.pyannote import default_folder, load_folder
from .base import SAMPLE_RATE, SpeechProbs


@dataclass(frozen=True)
class PyannoteOptions:
    """Attributes:
    step: seconds between window starts (pyannote/WhisperX: 10 % of the 5 s window).
    batch_size: windows per forward pass; larger batches amortise the LSTM's sequential steps.
    """

    step: float = 0.5
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not self.step > 0:
            raise ValueError(f"step must be > 0 seconds, got {self.step}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class Layout:
    """Where windows and frames fall for an input of `num_samples` samples, with pyannote's own
    arithmetic (`Inference.slide` / `Inference.aggregate`, `SlidingWindow.closest_frame`)."""

    num_samples: int
    window: int  # samples per window
    step: int  # samples between window starts
    frame_start: float  # receptive field of frame 0: start, duration; hop between frames (s)
    frame_duration: float
    frame_step: float
    frames_per_window: int
    window_starts: list[int] = field(default_factory=list)  # samples
    start_frames: list[int] = field(default_factory=list)  # first output frame of each window
    num_frames: int = 0  # frames after overlap-add
    out_frames: int = 0  # frames kept (cropped to the audio's duration)

    @classmethod
    def of(cls, model: PyanNet, num_samples: int, step: float) -> Layout:
        cfg = model.cfg
        duration = cfg.duration
        window, hop = round(duration * SAMPLE_RATE), round(step * SAMPLE_RATE)
        if step > duration:
            raise ValueError(f"step {step:g}s leaves gaps between {duration:g}s windows")
        start, width, fstep = cfg.receptive_field()
        full = (num_samples - window) // hop + 1 if num_samples >= window else 0
        padded = num_samples < window or (num_samples - window) % hop > 0
        count = full + int(padded)

        def closest(t: float) -> int:  # aggregated frames start where the windows start (0)
            return int(np.rint((t - 0.5 * width) / fstep))

        start_frames = [closest(c * step + 0.5 * width) for c in range(count)]
        num_frames = closest(duration + (count - 1) * step + 0.5 * width) + 1
        out = num_frames
        if padded:  # crop "loose": frames that start before the audio ends
            out = min(math.floor((num_samples / SAMPLE_RATE) / fstep) + 1, num_frames)
        return cls(
            num_samples, window, hop, start, width, fstep, cfg.num_frames(window),
            [c * hop for c in range(count)], start_frames, num_frames, out,
        )  # fmt: skip


def hamming(n: int) -> mx.array:
    return mx.array(np.hamming(n).astype(np.float32))


def overlap_add(scores: mx.array, layout: Layout) -> mx.array:
    """Average (windows, frames_per_window) scores into (out_frames,) frames, each window
    weighted by a Hamming window; frames no window covers are 0 (pyannote's `missing`)."""
    n, f = scores.shape
    idx = mx.array(layout.start_frames, dtype=mx.int32)[:, None] + mx.arange(f, dtype=mx.int32)
    weight = mx.broadcast_to(hamming(f), (n, f))
    zeros = mx.zeros((layout.num_frames,), dtype=mx.float32)
    total = zeros.at[idx].add(scores * weight)
    count = zeros.at[idx].add(weight)
    average = mx.where(count > 0, total / mx.maximum(count, 1e-12), 0.0)
    return average[: layout.out_frames]


class PyannoteVad:
    """WhisperX's default VAD: pyannote segmentation v2 frame scores, max over speakers."""

    method: ClassVar[str] = "pyannote"  # its name in mlxwx.vad.METHODS

    def __init__(self, model: PyanNet, options: PyannoteOptions | None = None) -> None:
        self.model = model
        self.options = options or PyannoteOptions()

    @classmethod
    def load(
        cls, path: str | Path | None = None, options: PyannoteOptions | None = None
    ) -> PyannoteVad:
        """From a converted folder, or the cached default (fetched and converted on first use)."""
        return cls(load_folder(path if path is not None else default_folder()), options)

    def layout(self, num_samples: int) -> Layout:
        return Layout.of(self.model, num_samples, self.options.step)

    def windows(self, audio: mx.array, layout: Layout) -> mx.array:
        """(windows, window) view of the zero-padded audio."""
        if audio.ndim != 1:
            raise ValueError(f"expected mono audio of shape (samples,), got {audio.shape}")
        count = len(layout.window_starts)
        need = (count - 1) * layout.step + layout.window
        padded = mx.pad(audio.astype(mx.float32), (0, max(need - audio.shape[0], 0)))
        return mx.as_strided(padded, (count, layout.window), (layout.step, 1))

    def window_scores(self, audio: mx.array) -> mx.array:
        """Raw model output per window: (windows, frames_per_window, speakers) in [0, 1]."""
        layout = self.layout(int(audio.shape[0]))
        return mx.concatenate(list(self._batches(self.windows(audio, layout))), axis=0)

    def _batches(self, windows: mx.array) -> Iterator[mx.array]:
        size = self.options.batch_size
        for b in range(0, windows.shape[0], size):
            out = self.model(windows[b : b + size])
            mx.async_eval(out)
            yield out

    def __call__(self, audio: mx.array) -> SpeechProbs:
        """Speech probability per model frame on the input's timeline.

        `offset + i * hop` is frame i's middle: WhisperX's Binarize timestamps frames by their
        middle, so thresholding at these times gives WhisperX's regions."""
        layout = self.layout(int(audio.shape[0]))
        windows = self.windows(audio, layout)
        scores = [mx.max(out, axis=-1) for out in self._batches(windows)]
        probs = overlap_add(mx.concatenate(scores, axis=0), layout)
        mx.eval(probs)
        return SpeechProbs(probs, hop=layout.frame_step, offset=0.5 * layout.frame_duration)
