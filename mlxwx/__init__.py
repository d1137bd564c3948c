"""mlxwx: WhisperX rebuilt MLX-native.

import mlxwx
result = mlxwx.transcribe("talk.flac", model="base")
print(result.text)
"""

from . import _blas

_blas.preload()  # before anything imports mlx.core: fast matmuls on Linux CPUs
_blas.warn_if_slow()

from .decoding import DecodingOptions  # noqa: E402
from .device import use_device  # noqa: E402
from .engine import TranscribeOptions, transcribe  # noqa: E402
from .errors import MlxwxError, ModelError  # noqa: E402
from .load import WhisperModel, load_model  # noqa: E402
from .types import Result, Segment, Word  # noqa: E402

__all__ = [
    "DecodingOptions",
    "MlxwxError",
    "ModelError",
    "Result",
    "Segment",
    "TranscribeOptions",
    "WhisperModel",
    "Word",
    "load_model",
    "transcribe",
    "use_device",
]
__version__ = "0.1.0"
