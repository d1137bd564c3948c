"""The diarize stage: speaker turns of one finished input, and speakers onto its segments.

Not built yet (a later issue): `diarize` is the slot the pipeline already runs on every finished
input, after `align`, while the decoder works on the next ones, with the signature the diarizers
will fill. With no method it returns the result unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MlxwxError
from ..types import Result


@dataclass(frozen=True)
class DiarizeOptions:
    """Attributes:
    method: the diarizer; None: no diarization (the only choice today).
    """

    method: str | None = None


def diarize(result: Result, audio: np.ndarray, options: DiarizeOptions | None = None) -> Result:
    """`result` with speakers, from `audio` ((samples,) float32, 16 kHz)."""
    if options is None or options.method is None:
        return result
    raise MlxwxError(f"diarization method {options.method!r} is not available in this version")
