"""Voice activity detection in MLX: energy, Silero and pyannote-segmentation ports."""

from mlxwx.vad.base import SAMPLE_RATE, SpeechProbs, SpeechRegion, Vad

__all__ = ["SAMPLE_RATE", "SpeechProbs", "SpeechRegion", "Vad"]
