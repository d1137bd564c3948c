"""The align stage: word timestamps for the segments of one finished input.

Not built yet (the next issue): `align` is the slot the pipeline already runs on every finished
input while the decoder works on the next ones, with the signature the aligners will fill. It
receives the input's `Result` (its `windows` hold the tokens and audio spans an aligner needs)
and the input's audio, and returns the `Result` with word times. With no method it returns the
result unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MlxwxError
from ..types import Result


@dataclass(frozen=True)
class AlignOptions:
    """Attributes:
    method: the aligner; None: no alignment (the only choice today).
    """

    method: str | None = None


def align(result: Result, audio: np.ndarray, options: AlignOptions | None = None) -> Result:
    """`result` with word timestamps from `audio` ((samples,) float32, 16 kHz)."""
    if options is None or options.method is None:
        return result
    raise MlxwxError(f"alignment method {options.method!r} is not available in this version")
