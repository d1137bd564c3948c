"""Voice activity detection in MLX: energy, Silero and pyannote-segmentation ports.

`mlxwx.vad.evaluate` is the scoring function; its module is `mlxwx.vad.metrics`.
"""

from mlxwx.types import SAMPLE_RATE, SpanSeconds
from mlxwx.vad.base import SpeechProbs, Vad
from mlxwx.vad.energy import EnergyOptions, EnergyVad
from mlxwx.vad.methods import (
    DEFAULT_METHOD,
    METHODS,
    default_options,
    load_vad,
    speech_regions,
    transcribe_options,
)
from mlxwx.vad.metrics import SweepRow, VadMetrics, combine, evaluate, sweep
from mlxwx.vad.regions import Chunk, VadOptions, binarize, chunk_audio, merge_chunks
from mlxwx.vad.rttm import RttmError, read_rttm, write_rttm
from mlxwx.vad.silero import SileroOptions, SileroVad
from mlxwx.weights.silero import load_silero

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "SAMPLE_RATE",
    "Chunk",
    "EnergyOptions",
    "EnergyVad",
    "RttmError",
    "SileroOptions",
    "SileroVad",
    "SpanSeconds",
    "SpeechProbs",
    "SweepRow",
    "Vad",
    "VadMetrics",
    "VadOptions",
    "binarize",
    "chunk_audio",
    "combine",
    "default_options",
    "evaluate",
    "load_silero",
    "load_vad",
    "merge_chunks",
    "read_rttm",
    "speech_regions",
    "sweep",
    "transcribe_options",
    "write_rttm",
]
