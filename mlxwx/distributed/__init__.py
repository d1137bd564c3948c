"""A corpus across many machines on Ray: `mlxwx run`'s stages as Ray Data operators.

`transcribe(inputs, output_dir, ...)` reads each input and finds its speech in CPU tasks (the
load and detect_speech stages), then an actor pool transcribes: each actor holds the loaded
model and decodes the chunks of many inputs together in its lanes (`transcribe_stream`, as one
`mlxwx run` process does), runs the per-input stages (align, diarize) and writes each input's
outputs atomically as soon as it is done. Ray Data streams the inputs through with bounded
memory (no stage waits for the whole corpus), retries tasks and restarts actors that die.

Every input ends with exactly one complete set of outputs, or one line in
`output_dir/failures.tsv` (input, reason). Inputs whose outputs are all there are skipped, so a
rerun resumes. The run's seed is drawn once here and keys each window's sampling noise by the
input's position (`mlxwx.asr.noise`): outputs do not depend on which actor decoded what.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MlxwxError
from ..pipeline import PipelineOptions, load_pipeline, speech_files, with_token_times
from ..types import SAMPLE_RATE, Result
from ..writers import complete, output_stems, write_atomic, write_result

logger = logging.getLogger(__name__)
EXTRA_HINT = 'Ray is not installed: pip install "mlxwx[ray]"'
FAILURES_FILE = "failures.tsv"


def import_ray() -> Any:
    """The `ray` module, or MlxwxError naming the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise MlxwxError(EXTRA_HINT) from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """How the corpus is spread: `address` ("auto", "local" for a cluster on this machine, or a
    cluster's address), `actors` transcribing (each with its model), the CPU cores or GPUs
    each takes, and the inputs handed to an actor at a time (its lanes' supply)."""

    address: str = "auto"
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    files_per_batch: int = 8


@dataclass(frozen=True)
class Summary:
    done: int
    skipped: int
    failed: int
    audio_seconds: float
    wall_seconds: float

    def line(self) -> str:
        speed = self.audio_seconds / max(self.wall_seconds, 1e-9)
        return (
            f"{self.done} files done, {self.skipped} skipped, {self.failed} failed; "
            f"{self.audio_seconds / 3600:.2f} h of audio in {self.wall_seconds:.0f} s "
            f"({speed:.1f}x real time)"
        )


def transcribe(
    inputs: Sequence[str | Path],
    output_dir: str | Path,
    model: str = "large-v3-turbo",
    options: PipelineOptions | None = None,
    formats: Sequence[str] = ("json", "txt", "srt", "vtt", "tsv"),
    ray_options: RayOptions | None = None,
) -> Summary:
    """Transcribe `inputs` (paths) on a Ray cluster into `output_dir` (see the module)."""
    ray = import_ray()
    started = time.perf_counter()
    options, ray_options = _seeded(options or PipelineOptions()), ray_options or RayOptions()
    paths = [Path(p) for p in inputs]
    stems = output_stems(paths, Path(output_dir))
    todo = [i for i, stem in enumerate(stems) if not complete(stem, formats)]
    rows = [{"index": i, "path": str(paths[i]), "stem": str(stems[i])} for i in todo]
    outcomes = []
    if rows:
        connect(ray, ray_options.address)
        outcomes = _dataset(ray, rows, model, options, list(formats), ray_options).take_all()
    failed = [o for o in outcomes if o["error"]]
    _write_failures(Path(output_dir), failed)
    return Summary(
        len(outcomes) - len(failed),
        len(paths) - len(todo),
        len(failed),
        float(sum(o["seconds"] for o in outcomes)),
        time.perf_counter() - started,
    )


def connect(ray: Any, address: str) -> None:
    """Join the cluster at `address` ("local": start one here) unless already connected."""
    if ray.is_initialized():
        return
    try:
        ray.init(address=None if address == "local" else address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise MlxwxError(f"cannot join the Ray cluster at {address}: {reason}") from None


def _seeded(options: PipelineOptions) -> PipelineOptions:
    """`options` with one seed for every actor of the run."""
    from ..asr.noise import draw_seed

    if options.transcribe.seed is not None:
        return options
    return replace(options, transcribe=replace(options.transcribe, seed=draw_seed()))


def _dataset(
    ray: Any,
    rows: list[dict],
    model: str,
    options: PipelineOptions,
    formats: list[str],
    spread: RayOptions,
) -> Any:
    """The operators: prepare (CPU tasks) -> Transcriber (actor pool)."""
    retries = {"max_retries": 3, "retry_exceptions": False}
    dataset = ray.data.from_items(rows)
    dataset = dataset.map(prepare, fn_kwargs={"options": options}, num_cpus=1, **retries)
    return dataset.map_batches(
        Transcriber,
        fn_constructor_kwargs={"model": model, "options": options, "formats": formats},
        batch_size=spread.files_per_batch,
        batch_format="pandas",
        concurrency=spread.actors,
        num_cpus=spread.cpus_per_actor,
        num_gpus=spread.gpus_per_actor,
        max_restarts=-1,
        max_task_retries=-1,
    )


_VADS: dict[str, Any] = {}


def prepare(row: dict, options: PipelineOptions) -> dict:
    """The load and detect_speech stages of one input, in a CPU task: its samples and its
    speech chunks (a pickled `SpeechFile` keyed by the input's position), or its error."""
    from ..asr.pool import to_host
    from ..audio import read_audio
    from ..vad.methods import load_vad

    out = {**row, "audio": np.zeros(0, np.float32), "speech": b"", "error": ""}
    try:
        audio = read_audio(row["path"])
        method = options.vad
        if method is not None and method not in _VADS:
            _VADS[method] = load_vad(method)
        vad = _VADS.get(method) if method is not None else None
        [speech] = list(speech_files(vad, options, [(row["index"], audio)]))
    except MlxwxError as err:
        return {**out, "error": str(err)}
    return {**out, "audio": audio, "speech": pickle.dumps(to_host(speech))}


class Transcriber:
    """An actor: the loaded model, transcribing the inputs of each batch together and writing
    each one's outputs when it is done."""

    def __init__(self, model: str, options: PipelineOptions, formats: list[str]):
        self.pipeline = load_pipeline(model, options)
        self.options, self.formats = with_token_times(options), formats

    def __call__(self, batch: Any) -> Any:
        import pandas as pd

        from ..asr.engine import transcribe_stream
        from ..asr.pool import to_device

        rows = {int(r["index"]): r for r in batch.to_dict("records")}
        outcomes = {i: _outcome(r, r["error"]) for i, r in rows.items() if r["error"]}
        files = [to_device(pickle.loads(r["speech"])) for i, r in rows.items() if i not in outcomes]
        wm = self.pipeline.whisper
        for transcript in transcribe_stream(wm, files, self.options.transcribe):
            row = rows[transcript.file]
            outcomes[transcript.file] = self._finish(row, transcript)
        return pd.DataFrame([outcomes[i] for i in rows])

    def _finish(self, row: dict, transcript: Any) -> dict:
        audio = np.asarray(row["audio"], np.float32)
        result = Result.from_windows(
            transcript.windows, transcript.language, audio.size / SAMPLE_RATE, row["path"]
        )
        try:
            for stage in self.pipeline.stages(self.options):
                result = stage(result, audio)
            write_result(result, Path(row["stem"]), self.formats)
        except (MlxwxError, OSError, ValueError) as err:
            return _outcome(row, f"{type(err).__name__}: {err}")
        return _outcome(row, "", audio.size / SAMPLE_RATE)


def _outcome(row: dict, error: str, seconds: float = 0.0) -> dict:
    return {"index": int(row["index"]), "path": row["path"], "error": error, "seconds": seconds}


def _write_failures(output_dir: Path, failed: list[dict]) -> None:
    """One line per input that has no outputs, and why (no file when none failed)."""
    path = output_dir / FAILURES_FILE
    if failed:
        lines = "".join(f"{f['path']}\t{' '.join(f['error'].split())}\n" for f in failed)
        write_atomic(path, "input\treason\n" + lines)
    elif path.exists():
        path.unlink()
