"""mlxwx: WhisperX rebuilt MLX-native.

import mlxwx
result = mlxwx.transcribe("talk.flac", model="base")
print(result.text)
"""

from . import _blas

_blas.preload()  # before anything imports mlx.core: fast matmuls on Linux CPUs
_blas.warn_if_slow()

from . import align, diarize  # noqa: E402  (callable: each runs its stage)
from .align import AlignOptions  # noqa: E402
from .asr.decoding import DecodingOptions  # noqa: E402
from .asr.engine import TranscribeOptions  # noqa: E402
from .asr.model import WhisperModel  # noqa: E402
from .device import use_device  # noqa: E402
from .diarize import DiarizeOptions, assign_speakers  # noqa: E402
from .errors import MlxwxError, ModelError  # noqa: E402
from .pipeline import (  # noqa: E402
    DEFAULT_MODEL,
    Pipeline,
    PipelineOptions,
    detect_speech,
    load,
    transcribe,
)
from .pipeline import load_pipeline as load_model  # noqa: E402
from .rttm import read_turns  # noqa: E402
from .types import (  # noqa: E402
    AudioChunk,
    Result,
    Segment,
    SpanSamples,
    SpanSeconds,
    Turn,
    Window,
    Word,
)

__all__ = [
    "DEFAULT_MODEL",
    "AlignOptions",
    "AudioChunk",
    "DecodingOptions",
    "DiarizeOptions",
    "MlxwxError",
    "ModelError",
    "Pipeline",
    "PipelineOptions",
    "Result",
    "Segment",
    "SpanSamples",
    "SpanSeconds",
    "TranscribeOptions",
    "Turn",
    "WhisperModel",
    "Window",
    "Word",
    "align",
    "assign_speakers",
    "detect_speech",
    "diarize",
    "load",
    "load_model",
    "read_turns",
    "transcribe",
    "use_device",
]
__version__ = "0.1.0"
