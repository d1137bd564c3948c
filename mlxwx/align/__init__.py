"""The align stage: word timestamps for the segments of one finished input.

`align` runs on every finished input while the decoder works on the next ones. It receives the
input's `Result` (its `windows` hold the tokens, audio spans and, when the transcribe stage was
asked for them, Whisper's token times) and the input's audio, and returns the `Result` with a
start and an end on every word of every segment, and `word_segments`.

Methods: "whisper" times words by Whisper's own cross-attention (`mlxwx.align.whisper`; the
transcribe stage computes the token times, `TranscribeOptions.token_times`). "auto" (the
default) picks the best aligner available for the input and says which in the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..types import Result
from .whisper import align_whisper

logger = logging.getLogger(__name__)

METHODS = ("auto", "whisper")
RESOLUTIONS = ("sentence", "chunk")


@dataclass(frozen=True)
class AlignOptions:
    """Attributes:
    method: "auto" (the best aligner available), "whisper" (cross-attention), or None: no
        word alignment.
    segment_resolution: "sentence": segments cut at sentence ends found in the words (an
        offline rule: full stops, question and exclamation marks, not after abbreviations or
        initials); "chunk": the decoder's segments.
    """

    method: str | None = "auto"
    segment_resolution: str = "sentence"

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise ValueError(
                f"unknown alignment method {self.method!r}; choose from {', '.join(METHODS)}"
            )
        if self.segment_resolution not in RESOLUTIONS:
            raise ValueError(
                f"unknown segment resolution {self.segment_resolution!r}; "
                f"choose from {', '.join(RESOLUTIONS)}"
            )

    @property
    def token_times(self) -> bool:
        """Whether the transcribe stage must time tokens for this aligner."""
        return self.method in ("auto", "whisper")


def align(result: Result, audio: np.ndarray, options: AlignOptions | None = None) -> Result:
    """`result` with word timestamps from `audio` ((samples,) float32, 16 kHz); None or a
    method of None: `result` unchanged."""
    if options is None or options.method is None:
        return result
    if options.method == "auto":
        logger.debug("aligning %s with Whisper's cross-attention", result.source or "input")
    return align_whisper(result, sentences=options.segment_resolution == "sentence")
