"""The Ray Data operators of a distributed run, over rows (dicts or pandas batches):

    prepare (CPU tasks)       {index, path, name[, bytes]} -> + audio, speech (load, detect_speech)
    Transcriber (actor pool)  chunks of many inputs decoded together -> + result (transcribe)
    Finisher (actor pool)     align, diarize, write -> {index, path, error, seconds}

An input that fails carries its `error` through the later operators untouched.
"""

from __future__ import annotations

import functools
import pickle
from typing import Any

import numpy as np

from ..align import Aligners
from ..device import use_device
from ..diarize import Diarizers
from ..errors import MlxwxError
from ..pipeline import PipelineOptions, finishing_stages, load_pipeline, speech_files
from ..types import SAMPLE_RATE, Result
from ..vad.methods import load_vad
from ..writers import SubtitleOptions, render
from .storage import Destination

_vad = functools.cache(load_vad)  # one VAD per method in each task process


def prepare(row: dict, options: PipelineOptions) -> dict:
    """The load and detect_speech stages of one input, on the CPU: its samples and its speech
    chunks (a pickled `SpeechFile` keyed by the input's position), or its error."""
    from ..asr.pool import to_host
    from ..audio import read_audio

    use_device("cpu")
    data = row.get("bytes")
    out = {k: row[k] for k in ("index", "path", "name")}
    out.update(audio=np.zeros(0, np.float32), speech=b"", result=b"", error="")
    try:
        audio = read_audio(bytes(data) if data is not None else row["path"])
        vad = _vad(options.vad) if options.vad is not None else None
        [speech] = list(speech_files(vad, options, [(int(row["index"]), audio)]))
    except MlxwxError as err:
        return {**out, "error": str(err)}
    except Exception as err:  # one input's failure never sinks the run
        return {**out, "error": f"{type(err).__name__}: {err}"}
    return {**out, "audio": audio, "speech": pickle.dumps(to_host(speech))}


class Transcriber:
    """An actor holding the loaded model: the inputs of each batch are decoded together in its
    lanes (as in one `mlxwx run` process); each row leaves with its pickled `Result`."""

    def __init__(self, model: str, options: PipelineOptions, device: str = "auto"):
        use_device(device)
        self.whisper = load_pipeline(model, options).whisper
        self.options = options

    def __call__(self, batch: Any) -> Any:
        from ..asr.engine import transcribe_stream
        from ..asr.pool import to_device

        rows = {int(r["index"]): r for r in batch.to_dict("records")}
        files = [to_device(pickle.loads(r["speech"])) for r in rows.values() if not r["error"]]
        for transcript in transcribe_stream(self.whisper, files, self.options.transcribe):
            row = rows[transcript.file]
            seconds = np.asarray(row["audio"]).size / SAMPLE_RATE
            result = Result.from_windows(
                transcript.windows, transcript.language, seconds, row["path"]
            )
            row.update(result=pickle.dumps(result), speech=b"")
        for row in rows.values():  # every input gets a Transcript; kept honest if one did not
            if not row["error"] and not row["result"]:
                row["error"] = "not transcribed"
        return _frame(list(rows.values()))


class Finisher:
    """An actor running the per-input stages after transcribe (align, diarize: their models
    loaded once, on first use) and writing each input's outputs."""

    def __init__(
        self, options: PipelineOptions, output: tuple[str, list[str], SubtitleOptions | None]
    ):
        self.stages = finishing_stages(options, Aligners(), Diarizers())
        url, self.formats, self.subtitles = output
        self.destination = Destination(url)

    def __call__(self, batch: Any) -> Any:
        return _frame([self._finish(row) for row in batch.to_dict("records")])

    def _finish(self, row: dict) -> dict:
        outcome = {"index": int(row["index"]), "path": row["path"], "error": row["error"]}
        if row["error"]:
            return {**outcome, "seconds": 0.0}
        audio = np.asarray(row["audio"], np.float32)
        try:
            result = pickle.loads(row["result"])
            for stage in self.stages:
                result = stage(result, audio)
            for fmt, text in render(result, self.formats, self.subtitles).items():
                self.destination.write(f"{row['name']}.{fmt}", text)
        except Exception as err:  # one input's failure never sinks the run
            return {**outcome, "error": f"{type(err).__name__}: {err}", "seconds": 0.0}
        return {**outcome, "seconds": audio.size / SAMPLE_RATE}


def _frame(rows: list[dict]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows)
