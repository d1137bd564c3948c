"""The align stage: word timestamps for the segments of one finished input.

`align` runs on every finished input while the decoder works on the next ones. It receives the
input's `Result` (its `windows` hold the tokens, audio spans and, when the transcribe stage was
asked for them, Whisper's token times) and the input's audio, and returns the `Result` with a
start and an end on every word of every segment, and `word_segments`.

Methods:
- "whisper": Whisper's own cross-attention (`mlxwx.align.whisper`; the transcribe stage computes
  the token times, `TranscribeOptions.token_times`). No torch.
- "wav2vec2": a wav2vec2 character CTC model (`mlxwx.align.wav2vec2`, the `align` extra):
  `model`, or the input's language's default (WhisperX's table), downloaded if need be.
- "auto" (the default): wav2vec2 where the extra is installed and the language's model is
  already on this machine (a folder, or the Hugging Face cache: a default run never downloads
  or waits on the network for it), else whisper; the log says which, once per language.
A failure to align (a model that cannot be loaded, a segment too short for its text) is one line
in the log; the words it leaves untimed get times by interpolation, flagged `interpolated`.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .._callable import make_callable
from ..errors import LoadOnce, MlxwxError
from ..types import Result
from .ctc import INTERPOLATIONS, PRECISIONS
from .whisper import align_whisper
from .words import split_sentences

if TYPE_CHECKING:
    from .wav2vec2 import Aligner

logger = logging.getLogger(__name__)

METHODS = ("auto", "whisper", "wav2vec2")
RESOLUTIONS = ("sentence", "chunk")


@dataclass(frozen=True)
class AlignOptions:
    """Attributes:
    method: "auto", "whisper", "wav2vec2" (see the module), or None: no word alignment.
    segment_resolution: "sentence": segments cut at sentence ends found in the words (an
        offline rule: full stops, question and exclamation marks, not after abbreviations or
        initials); "chunk": the decoder's segments.
    model: the wav2vec2 model (a Hugging Face repo id or a local folder); None: the language's
        default.
    interpolate: how wav2vec2 times words it cannot align: "nearest", "linear" (from the
        timed words around them) or "ignore" (left without times).
    return_char_alignments: wav2vec2: each segment's characters with their times (`chars`).
    batch_size: wav2vec2: segments run through the model together, at most (a batch also pads
        to at most 120 s of audio); None: 8 on the CPU, 64 on a GPU.
    precision: wav2vec2: "auto" (float16 on a GPU, float32 on the CPU), "float32", "float16"
        or "bfloat16" (the latter two under torch's autocast: matmuls and convolutions in half
        precision).
    """

    method: str | None = "auto"
    segment_resolution: str = "sentence"
    model: str | None = None
    interpolate: str = "nearest"
    return_char_alignments: bool = False
    batch_size: int | None = None
    precision: str = "auto"

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("alignment method", self.method, (*METHODS, None)),
            ("segment resolution", self.segment_resolution, RESOLUTIONS),
            ("interpolation method", self.interpolate, INTERPOLATIONS),
            ("precision", self.precision, PRECISIONS),
        ):
            if value not in allowed:
                choices = ", ".join(a for a in allowed if a is not None)
                raise ValueError(f"unknown {name} {value!r}; choose from {choices}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def token_times(self) -> bool:
        """Whether the transcribe stage must time tokens for this aligner."""
        return self.method in ("auto", "whisper")


def wav2vec2_installed() -> bool:
    """Whether the `align` extra (torch and transformers) is importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


class Aligners:
    """wav2vec2 models loaded on first use and kept, one per language (or the one `model`);
    a model that failed to load is not tried again. Thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.said: set[str] = set()
        self.once = LoadOnce()

    def say(self, message: str) -> None:
        """Log `message` (info) the first time only."""
        with self.lock:
            if message not in self.said:
                self.said.add(message)
                logger.info(message)

    def get(self, language: str | None, options: AlignOptions) -> Aligner:
        """The aligner for `language`; raises the `MlxwxError` of a model that cannot load.
        Under "auto" only a model already on this machine is loaded."""
        from .wav2vec2 import load_aligner

        local = options.method == "auto"
        key = (options.model, language if options.model is None else None, local, options.precision)

        def load() -> Aligner:
            try:
                aligner = load_aligner(
                    language, options.model, local_files_only=local, precision=options.precision
                )
            except MlxwxError as err:
                if local:
                    logger.info("%s; aligning with Whisper's cross-attention", err)
                raise
            logger.info("aligning %s with wav2vec2 (%s)", language, aligner.name)
            return aligner

        return self.once.get(key, load)


def align(
    result: Result,
    audio: np.ndarray,
    options: AlignOptions | None = None,
    aligners: Aligners | None = None,
    text_language: str | None = None,
) -> Result:
    """`result` with word timestamps from `audio` ((samples,) float32, 16 kHz); None or a
    method of None: `result` unchanged. `aligners`: wav2vec2 models kept between inputs.
    text_language: the language of the text when it is not the audio's (translations: "en")."""
    if options is None or options.method is None:
        return result
    if text_language is not None and text_language != result.language:
        aligned = align(replace(result, language=text_language), audio, options, aligners)
        return replace(aligned, language=result.language)
    sentences = options.segment_resolution == "sentence"
    use_ctc = options.method == "wav2vec2" or (options.method == "auto" and wav2vec2_installed())
    if options.method == "auto" and not use_ctc:
        (aligners or Aligners()).say("aligning with Whisper's cross-attention (wav2vec2 needs "
                                     "the align extra: pip install 'mlxwx[align]')")  # fmt: skip
    if not use_ctc or not result.segments:
        return align_whisper(result, sentences, audio)
    try:
        aligner = (aligners or Aligners()).get(result.language, options)
    except MlxwxError as err:
        if options.method == "wav2vec2":
            timed = any(w.token_times is not None for w in result.windows)
            then = "aligned with Whisper's cross-attention" if timed else "words interpolated"
            logger.error("%s: %s; %s", result.source or "input", err, then)
        return align_whisper(result, sentences, audio)
    return align_ctc(aligner, result, audio, options)


def align_ctc(aligner: Aligner, result: Result, audio: np.ndarray, options: AlignOptions) -> Result:
    """`result` with its words timed by a wav2vec2 `aligner`."""
    from .wav2vec2 import align_result

    segments = align_result(
        aligner, result, audio, options.interpolate, options.return_char_alignments,
        options.batch_size,
    )  # fmt: skip
    if options.segment_resolution == "sentence":
        segments = [p for s in segments for p in split_sentences(s)]
    words = tuple(w for s in segments for w in s.words)
    return replace(result, segments=tuple(segments), word_segments=words)


make_callable(__name__, align)  # mlxwx.align(result, audio, options) runs the stage
