"""Speaker turns from a pyannote.audio speaker diarization pipeline (the `diarize` extra).

torch and pyannote.audio are imported inside the functions that need them. The pipeline is a
local folder (its `config.yaml` and the models it names) or a Hugging Face repo, taken from the
cache first and downloaded only when missing, with a token for gated repos. Each input's audio is
handed over from memory as a (1, samples) tensor, once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..device import check_cudnn, torch_device
from ..errors import ModelError
from ..types import SAMPLE_RATE, Turn
from ..weights import hub

logger = logging.getLogger(__name__)

EXTRA_HINT = "speaker diarization needs the diarize extra: pip install 'mlxwx[diarize]'"
DEFAULT_PIPELINE = "pyannote/speaker-diarization-community-1"
CONFIG = "config.yaml"


@dataclass(frozen=True)
class Speakers:
    """An input's speaker turns and, if asked, one embedding per speaker."""

    turns: tuple[Turn, ...]
    embeddings: dict[str, tuple[float, ...]] | None = None


def _imports() -> tuple[Any, Any]:
    """torch and pyannote.audio's Pipeline, or a one-line ModelError naming the extra.
    pyannote.audio 4 sends usage metrics to its authors by default: off unless the user set
    `PYANNOTE_METRICS_ENABLED` (an offline run would also wait on the network for them)."""
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    try:
        import torch
        from pyannote.audio import Pipeline
    except ImportError as err:
        raise ModelError(EXTRA_HINT) from err
    return torch, Pipeline


def installed() -> bool:
    """Whether the `diarize` extra (torch and pyannote.audio) is importable."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(m) is not None for m in ("torch", "pyannote.audio"))
    except (ImportError, ValueError):  # a parent package that cannot be imported
        return False


def pipeline_folder(name: str, token: str | None, offline: bool) -> Path:
    """The folder of pipeline `name`: a local folder (or its config.yaml) as is, a Hugging Face
    repo from the cache, else downloaded unless `offline`."""
    path = Path(name).expanduser()
    if path.is_file() and path.name == CONFIG:
        path = path.parent
    if path.is_dir():
        if not (path / CONFIG).is_file():
            raise ModelError(f"diarization pipeline folder {name} has no {CONFIG}")
        return path
    if name.startswith((".", "/", "~")) or path.exists() or name.count("/") != 1:
        raise ModelError(
            f"diarization pipeline not found: {name} (a folder with {CONFIG}, or a Hugging "
            "Face repo id such as pyannote/speaker-diarization-community-1)"
        )
    hint = "; pass a local pipeline folder with --diarize-model"
    return hub.download(name, hint, None, local_only=offline, token=token)


class Diarizer:
    """A loaded pyannote pipeline on its device."""

    def __init__(self, pipeline: Any, device: str, name: str):
        self.pipeline, self.device, self.name = pipeline, device, name

    def __call__(
        self,
        audio: np.ndarray,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        embeddings: bool = False,
    ) -> Speakers:
        """The speaker turns of `audio` ((samples,) float32, 16 kHz)."""
        import torch

        waveform = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)[None, :])
        output = self.pipeline(
            {"waveform": waveform, "sample_rate": SAMPLE_RATE},
            num_speakers=num_speakers,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
        )
        annotation = getattr(output, "speaker_diarization", output)
        turns = tuple(
            Turn(float(seg.start), float(seg.end), str(label))
            for seg, _, label in annotation.itertracks(yield_label=True)
        )
        vectors = getattr(output, "speaker_embeddings", None)
        if not embeddings or vectors is None:
            return Speakers(turns)
        labels = annotation.labels()
        table = {str(s): tuple(float(x) for x in vectors[i]) for i, s in enumerate(labels)}
        return Speakers(turns, table)


def load_diarizer(
    name: str = DEFAULT_PIPELINE,
    token: str | None = None,
    device: str | None = None,
    *,
    local_files_only: bool = False,
) -> Diarizer:
    """The pyannote pipeline `name` (a local folder or a Hugging Face repo id) on `device`
    (None: cuda, mps or cpu, as the run). The hub is not asked with `local_files_only` or
    `HF_HUB_OFFLINE=1`. Raises a one-line ModelError for a pipeline that cannot be loaded, a
    gated one without a token, or a missing `diarize` extra."""
    if not installed():
        raise ModelError(EXTRA_HINT)
    from huggingface_hub import constants

    offline = local_files_only or bool(constants.HF_HUB_OFFLINE)
    folder = pipeline_folder(name, token, offline)
    torch, pipeline_class = _imports()
    try:
        pipeline = pipeline_class.from_pretrained(folder, token=token)
    except Exception as err:  # pyannote raises many kinds for a bad folder
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise ModelError(f"cannot load the diarization pipeline {name!r} ({reason})") from None
    if pipeline is None:
        raise ModelError(f"cannot load the diarization pipeline {name!r}")
    device = device or torch_device(torch)
    check_cudnn(torch, device, "diarizing")
    pipeline.to(torch.device(device))
    logger.info("diarizing with %s on %s", name, device)
    return Diarizer(pipeline, device, name)
