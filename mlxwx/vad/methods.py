"""VADs by name: load one, its default region options, speech regions of audio in one call.

Defaults per method (`default_options`), all with `max_speech` = `chunk_size` (30 s):
- "pyannote": WhisperX's default VAD. Hysteresis onset 0.500 / offset 0.363, no padding, no
  minimum durations, a region longer than `chunk_size` cut at its lowest score in its second half
  (`cut="min_score"`), chunks spanning their regions (`merge="span"`). pyannote's Binarize times a
  score at its frame's *middle*; `binarize` uses frame start times, so the pyannote VAD returns
  `SpeechProbs` whose `offset` is half a frame (see `mlxwx.vad.regions`).
- "silero": what WhisperX runs: `get_speech_timestamps(threshold=onset,
  max_speech_duration_s=chunk_size)` with silero-vad's other defaults (`VadOptions.silero`:
  min speech 250 ms, min silence 100 ms, pad 30 ms, offset = onset - 0.15, silence cut).
- "energy": the hysteresis measured in `mlxwx.vad.energy` (onset 0.5 / offset 0.363; its scores
  are already smoothed, so no minimum durations or padding), cut and merged as pyannote's.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from typing import Any

import mlx.core as mx

from ..errors import MlxwxError, ModelError
from .base import SAMPLE_RATE, SpanSeconds, Vad
from .energy import EnergyVad
from .regions import VadOptions, binarize
from .silero import SileroVad

METHODS = ("pyannote", "silero", "energy")
DEFAULT_METHOD = "pyannote"  # WhisperX's default
_PYANNOTE = ("mlxwx.vad.pyannote", "PyannoteVad")  # module and class, imported on first use

_DEFAULTS = {
    "pyannote": VadOptions(onset=0.5, offset=0.363),
    "silero": VadOptions.silero(),
    "energy": VadOptions(onset=0.5, offset=0.363),
}


def _check(method: str) -> None:
    if method not in METHODS:
        raise MlxwxError(f"unknown VAD method {method!r}; choose from {', '.join(METHODS)}")


def default_options(method: str, **changes: Any) -> VadOptions:
    """The region options `method` runs with by default, with `changes` (VadOptions fields).

    `max_speech` follows `chunk_size` unless `changes` sets it. Raises MlxwxError for an unknown
    method and ValueError for a bad value.
    """
    _check(method)
    base = _DEFAULTS[method]
    return replace(base, **{"max_speech": changes.get("chunk_size", base.chunk_size), **changes})


# Region options that differ when the regions feed Whisper (`transcribe_options`): silero's own
# 30 ms padding clips word onsets ("And Mr. John Dashwood" lost its "And", base beam 5); 100 ms
# gave the lowest corpus WER of 30/100/200/400 ms (bench/RESULTS.md, session 3).
_TRANSCRIBE: dict[str, dict[str, Any]] = {"silero": {"pad": 0.1}}


def transcribe_options(method: str, **changes: Any) -> VadOptions:
    """`default_options` for transcription (`mlxwx run`): the same, except Silero's regions grow
    by 100 ms on each side instead of 30 ms."""
    return default_options(method, **{**_TRANSCRIBE.get(method, {}), **changes})


def load_vad(method: str) -> Vad:
    """The VAD called `method` (one of METHODS), its weights loaded (converted on first use).

    Raises MlxwxError (one line) for an unknown method, ModelError when its weights or module
    cannot be found or read.
    """
    _check(method)
    if method == "energy":
        return EnergyVad()
    if method == "silero":
        return SileroVad()
    module, name = _PYANNOTE
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ModelError(f"the pyannote VAD is not available: {err}") from err
    try:
        return cls.load()  # type: ignore[no-any-return]
    except MlxwxError:
        raise
    except (ImportError, OSError, ValueError, RuntimeError) as err:
        raise ModelError(f"cannot load the pyannote VAD: {err}") from err


def speech_regions(
    audio: mx.array, method: str | Vad, options: VadOptions | None = None
) -> list[SpanSeconds]:
    """Speech regions (seconds, sorted, disjoint) of (samples,) float32 16 kHz mono `audio`.

    method: a name in METHODS (loaded for this call) or a loaded VAD. options: None means
    `default_options(method)` for a name, `VadOptions()` for a loaded VAD.
    """
    if options is None:
        options = default_options(method) if isinstance(method, str) else VadOptions()
    vad = load_vad(method) if isinstance(method, str) else method
    return binarize(vad(audio), options, audio.shape[0] / SAMPLE_RATE)
