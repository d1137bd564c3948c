"""Voice activity detection in MLX: energy, Silero and pyannote-segmentation ports."""

from mlxwx.vad.base import SAMPLE_RATE, SpeechProbs, SpeechRegion, Vad
from mlxwx.vad.regions import Chunk, VadOptions, binarize, chunk_audio, merge_chunks
from mlxwx.vad.silero import SileroOptions, SileroVad, load_silero

__all__ = [
    "SAMPLE_RATE",
    "Chunk",
    "SileroOptions",
    "SileroVad",
    "SpeechProbs",
    "SpeechRegion",
    "Vad",
    "VadOptions",
    "binarize",
    "chunk_audio",
    "load_silero",
    "merge_chunks",
]
