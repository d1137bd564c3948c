"""The diarize stage: who spoke when in one finished input, and speakers onto its words.

`diarize` runs on every finished input after `align`, while the decoder works on the next ones.
It finds the input's speaker turns and hands them to `assign_speakers` (`mlxwx.diarize.assign`:
a speaker on every word and segment, segments cut where the speaker changes).

Methods:
- "pyannote": a pyannote.audio speaker diarization pipeline (`mlxwx.diarize.pyannote`, the
  `diarize` extra), default `pyannote/speaker-diarization-community-1`, or any pipeline repo or
  local pipeline folder; the audio is handed over from memory.
- "rttm": turns read from an RTTM file: those of the file id equal to the input's file name
  without extension, else, in an RTTM of one file id, that file's.
A diarization that cannot run (the extra missing, a gated model without a token, a model not
cached offline, a failure on one input) is one line in the log; the transcript is kept without
speakers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._callable import make_callable
from ..errors import LoadOnce, MlxwxError
from ..rttm import read_turns
from ..types import Result, Turn
from .assign import assign_speakers

if TYPE_CHECKING:
    from .pyannote import Diarizer, Speakers

logger = logging.getLogger(__name__)

METHODS = ("pyannote", "rttm")
DEFAULT_PIPELINE = "pyannote/speaker-diarization-community-1"

__all__ = ["DiarizeOptions", "Diarizers", "assign_speakers", "diarize", "speaker_turns"]


@dataclass(frozen=True)
class DiarizeOptions:
    """Attributes:
    method: "pyannote", "rttm" (see the module), or None: no diarization.
    model: the pyannote pipeline: a Hugging Face repo id or a local folder with config.yaml.
    token: Hugging Face token for a gated pipeline not yet cached (None: huggingface_hub's,
        e.g. the HF_TOKEN variable).
    num_speakers, min_speakers, max_speakers: what is known of the number of speakers.
    rttm: the RTTM file of the "rttm" method.
    fill_nearest: words that no turn overlaps take the nearest turn's speaker.
    embeddings: keep each speaker's embedding in the result (`speaker_embeddings`).
    """

    method: str | None = None
    model: str = DEFAULT_PIPELINE
    token: str | None = None
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    rttm: str | Path | None = None
    fill_nearest: bool = False
    embeddings: bool = False

    def __repr__(self) -> str:  # never print the token
        return f"DiarizeOptions(method={self.method!r}, model={self.model!r})"

    def __post_init__(self) -> None:
        if self.method not in (*METHODS, None):
            raise ValueError(
                f"unknown diarization method {self.method!r}; choose from {', '.join(METHODS)}"
            )
        if self.method == "rttm" and self.rttm is None:
            raise ValueError("the rttm diarization method needs an RTTM file")
        counts = (self.num_speakers, self.min_speakers, self.max_speakers)
        if any(c is not None and c < 1 for c in counts):
            raise ValueError("speaker counts must be >= 1")
        low, high = self.min_speakers, self.max_speakers
        if low is not None and high is not None and low > high:
            raise ValueError(f"--min-speakers {low} is more than --max-speakers {high}")
        n = self.num_speakers
        if n is not None and ((low is not None and n < low) or (high is not None and n > high)):
            raise ValueError(f"--num-speakers {n} is outside --min/--max-speakers")


class Diarizers:
    """What the diarize stage keeps between inputs: the pyannote pipeline (loaded on first use,
    a failure remembered and not tried again) and RTTM files read. Thread-safe."""

    def __init__(self) -> None:
        self.once = LoadOnce()

    def pipeline(self, options: DiarizeOptions) -> Diarizer:
        """The pyannote pipeline of `options`; raises the MlxwxError of one that cannot load."""
        from .pyannote import load_diarizer

        key = ("pipeline", options.model, options.token is not None)
        return self.once.get(key, lambda: load_diarizer(options.model, options.token))

    def rttm(self, path: str | Path) -> dict[str, list[Turn]]:
        """The turns of an RTTM file per file id; raises the RttmError of an unreadable one."""
        return self.once.get(("rttm", str(path)), lambda: read_turns(path))

    def check(self, options: DiarizeOptions | None) -> None:
        """Load what `options` need now (before any audio), raising a one-line MlxwxError."""
        if options is None or options.method is None:
            return
        if options.method == "rttm":
            assert options.rttm is not None
            if not self.rttm(options.rttm):
                raise MlxwxError(f"no SPEAKER lines in RTTM file {options.rttm}")
        else:
            self.pipeline(options)


def _rttm_turns(table: dict[str, list[Turn]], source: str, path: str | Path) -> list[Turn]:
    stem = Path(source).stem
    if stem in table:
        return table[stem]
    if len(table) == 1:
        return next(iter(table.values()))
    ids = ", ".join(sorted(table)[:5])
    raise MlxwxError(f"no turns for {stem!r} in {path} (its file ids: {ids})")


def speaker_turns(
    result: Result, audio: np.ndarray, options: DiarizeOptions, diarizers: Diarizers
) -> Speakers:
    """The speaker turns of one input (`result.source` names it for an RTTM)."""
    from .pyannote import Speakers

    if options.method == "rttm":
        assert options.rttm is not None
        table = diarizers.rttm(options.rttm)
        return Speakers(tuple(_rttm_turns(table, result.source, options.rttm)))
    return diarizers.pipeline(options)(
        audio, options.num_speakers, options.min_speakers, options.max_speakers, options.embeddings
    )


def diarize(
    result: Result,
    audio: np.ndarray,
    options: DiarizeOptions | None = None,
    diarizers: Diarizers | None = None,
) -> Result:
    """`result` with speakers on its words and segments, from `audio` ((samples,) float32,
    16 kHz); None or a method of None: `result` unchanged. `diarizers`: what is kept between
    inputs. A diarization that fails is logged (one line) and `result` comes back unchanged."""
    if options is None or options.method is None:
        return result
    name = result.source or "input"
    try:
        speakers = speaker_turns(result, audio, options, diarizers or Diarizers())
    except MlxwxError as err:
        logger.error("%s: %s; written without speakers", name, err)
        return result
    except Exception as err:  # a model's failure on one input never loses its transcript
        logger.error("%s: diarization failed (%s: %s); written without speakers",
                     name, type(err).__name__, str(err)[:200])  # fmt: skip
        return result
    embeddings = speakers.embeddings if options.embeddings else None
    return assign_speakers(result, speakers.turns, options.fill_nearest, embeddings)


make_callable(__name__, diarize)  # mlxwx.diarize(result, audio, options) runs the stage
