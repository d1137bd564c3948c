"""The contract every VAD in mlxwx follows.

A VAD maps 16 kHz mono audio (an `mx.array` of float32 samples) to per-frame speech
probabilities. Binarization times frame `i` at `offset + i * hop` seconds: the frame's start
for Silero and the energy VAD; the pyannote VAD sets `offset` to the middle of its first frame,
because WhisperX's Binarize times pyannote frames by their middles. One shared path
(`mlxwx.vad.regions`) turns probabilities into speech regions (`SpanSeconds`) and then into
<= `chunk_size` chunks for the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import mlx.core as mx

from ..types import SAMPLE_RATE, SpanSeconds

__all__ = ["SAMPLE_RATE", "SpanSeconds", "SpeechProbs", "Vad", "check_bounds"]


def check_bounds(
    options: object, names: tuple[str, ...], low: float, strict: bool = False, unit: str = ""
) -> None:
    """Raise ValueError unless each field `names` of `options` is >= `low` (> with `strict`);
    the option dataclasses' __post_init__ checks. NaN fails."""
    for name in names:
        value = getattr(options, name)
        if not (value > low if strict else value >= low):
            raise ValueError(f"{name} must be {'>' if strict else '>='} {low:g}{unit}, got {value}")


@dataclass(frozen=True)
class SpeechProbs:
    """Per-frame speech probabilities of one input."""

    probs: mx.array  # (frames,) float32 in [0, 1]
    hop: float  # seconds between consecutive frames
    offset: float = 0.0  # start time of frame 0, seconds

    @property
    def frames(self) -> int:
        return int(self.probs.shape[0])


class Vad(Protocol):
    """Anything that scores audio frame by frame."""

    def __call__(self, audio: mx.array) -> SpeechProbs: ...
