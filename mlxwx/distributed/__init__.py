"""A corpus across many machines on Ray: `mlxwx run`'s stages as Ray Data operators.

`transcribe(inputs, output_dir, ...)` streams the inputs through three operators
(`mlxwx.distributed.operators`): CPU tasks read each input and find its speech (load,
detect_speech); a pool of transcribing actors, each holding the loaded model, decodes the chunks
of many inputs together in its lanes (as one `mlxwx run` process does); a pool of finishing
actors runs the per-input stages (align, diarize) and writes each input's outputs, whole or not
at all, to a folder or an object store (`mlxwx.distributed.storage`). Ray Data bounds the rows
in flight (no stage waits for the whole corpus), retries tasks and restarts actors that die.

Every input ends with exactly one complete set of outputs, or one line in
`output_dir/failures.tsv` (input, reason). Inputs whose outputs are all there are skipped, so a
rerun resumes. The run's seed is drawn once here and keys each window's sampling noise by the
input's position (`mlxwx.asr.noise`): outputs do not depend on which actor decoded what.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import MlxwxError
from ..inputs import expand
from ..pipeline import PipelineOptions, for_chunks, with_token_times
from ..writers import ALL_FORMATS, SubtitleOptions, output_stems
from .operators import Finisher, Transcriber, prepare
from .storage import Destination

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
    cluster's address); `actors` transcribing (each with its model) and the CPU cores or GPUs
    each takes, and a custom resource each takes one of (`ray start --resources='{"mac": 1}'`
    on each node: one actor per node); the inputs handed to one at a time (its lanes'
    supply); the MLX device they
    decode on (auto: the node's GPU, Metal or CUDA, when it has one); the finishing actors
    (align, diarize, write) and their cores; the cores of each load-and-VAD task. The actors
    hold their cores for the run: the cluster must have room for them and one task."""

    address: str = "auto"
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    files_per_batch: int = 8
    actor_resource: str | None = None
    device: str = "auto"
    finishers: int = 1
    cpus_per_finisher: float = 0.5
    cpus_per_task: float = 0.5

    def check(self, resources: dict[str, float]) -> None:
        """MlxwxError when a cluster with `resources` (`ray.cluster_resources()`) cannot hold
        the actors and one task at once (Ray would wait forever)."""
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        need = self.actors * self.cpus_per_actor + self.finishers * self.cpus_per_finisher
        if need + self.cpus_per_task > cpus + 1e-9:
            raise MlxwxError(
                f"the Ray cluster has {cpus:g} CPUs: {self.actors} transcribing actors "
                f"({self.cpus_per_actor:g} each), {self.finishers} finishing "
                f"({self.cpus_per_finisher:g} each) and a {self.cpus_per_task:g}-CPU task "
                "need more (fewer --ray-actors, or a bigger cluster)"
            )
        have = resources.get(self.actor_resource or "", 0.0)
        if self.actor_resource is not None and self.actors > have + 1e-9:
            raise MlxwxError(
                f"the Ray cluster has {have:g} of resource {self.actor_resource!r}: "
                f"{self.actors} transcribing actors need 1 each"
            )
        if self.actors * self.gpus_per_actor > gpus + 1e-9:
            raise MlxwxError(
                f"the Ray cluster has {gpus:g} GPUs: {self.actors} transcribing actors need "
                f"{self.gpus_per_actor:g} each (fewer --ray-actors or --ray-gpus)"
            )


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


Inputs = Sequence[str | Path] | str | Path | Any  # paths, a folder, a list file, a Dataset


def transcribe(
    inputs: Inputs,
    output_dir: str | Path,
    model: str = "large-v3-turbo",
    options: PipelineOptions | None = None,
    formats: Sequence[str] = ALL_FORMATS,
    ray_options: RayOptions | None = None,
    subtitles: SubtitleOptions | None = None,
) -> Summary:
    """Transcribe `inputs` on a Ray cluster into `output_dir` (see the module).

    inputs: audio paths; one path: a folder (its audio files, recursively), a list file (`.txt`
        or `.lst`: a path per line) or an audio file; or a `ray.data.Dataset` with a `path`
        column (unique names: outputs are named from them) and optionally a `bytes` column
        (the file's content, read instead of the path).
    output_dir: a folder, or a folder URL (`s3://bucket/prefix`, `mlxwx.distributed.storage`).
    subtitles: how srt and vtt cues are built (`mlxwx.writers.SubtitleOptions`).
    """
    ray = import_ray()
    started = time.perf_counter()
    options = with_token_times(_seeded(options or PipelineOptions()))
    options = for_chunks(options, options.vad is not None)
    ray_options = ray_options or RayOptions()
    destination = Destination(str(output_dir))
    destination.check()
    dataset: Any = inputs if _is_dataset(inputs) else None
    if dataset is not None:  # its paths are read on the cluster
        connect(ray, ray_options.address)
    rows, total = _rows(dataset, inputs, destination, formats)
    outcomes = []
    if rows is not None:
        connect(ray, ray_options.address)
        ray_options.check(ray.cluster_resources())
        output = (destination.url, list(formats), subtitles)
        operators = _dataset(ray, rows, model, options, output, ray_options)
        outcomes = operators.take_all()
    failed = [o for o in outcomes if o["error"]]
    _write_failures(destination, failed)
    return Summary(
        len(outcomes) - len(failed),
        total - len(outcomes),
        len(failed),
        float(sum(o["seconds"] for o in outcomes)),
        time.perf_counter() - started,
    )


def _is_dataset(inputs: Any) -> bool:
    return hasattr(inputs, "map_batches") and hasattr(inputs, "select_columns")


def _rows(
    dataset: Any, inputs: Inputs, destination: Destination, formats: Sequence[str]
) -> tuple[Any, int]:
    """The rows still to do ({index, path, name[, bytes]}: a list, or a Dataset when `dataset`
    is the inputs; None when every input is complete) and the number of inputs."""
    if dataset is not None:
        paths = [Path(r["path"]) for r in dataset.select_columns(["path"]).take_all()]
    else:
        paths = _paths(inputs)
    if len({str(p) for p in paths}) < len(paths):
        raise MlxwxError("inputs: each path (each Dataset row's `path`) must be unique")
    rel = [stem.relative_to("/").as_posix() for stem in output_stems(paths, Path("/"))]
    done = destination.existing()
    todo = {
        str(p): (i, name)
        for i, (p, name) in enumerate(zip(paths, rel, strict=True))
        if not all(f"{name}.{fmt}" in done for fmt in formats)
    }
    if not todo:
        return None, len(paths)
    if dataset is not None:
        return dataset.flat_map(_keyed, fn_kwargs={"todo": todo}), len(paths)
    return [{"index": i, "path": p, "name": n} for p, (i, n) in todo.items()], len(paths)


def _paths(inputs: Sequence[str | Path] | str | Path) -> list[Path]:
    if not isinstance(inputs, (str, Path)):
        return expand([Path(p) for p in inputs], None)
    one = Path(inputs)
    if one.suffix.lower() in LIST_SUFFIXES:
        return expand([], one)
    return expand([one], None)


LIST_SUFFIXES = frozenset({".txt", ".lst"})


def _keyed(row: dict, todo: dict[str, tuple[int, str]]) -> list[dict]:
    """A Dataset row with its position and output name; none when its outputs are done."""
    key = str(Path(row["path"]))
    if key not in todo:
        return []
    index, name = todo[key]
    return [{**row, "path": key, "index": index, "name": name}]


def connect(ray: Any, address: str) -> None:
    """Join the cluster at `address` ("local": start one here) unless already connected; an
    address that does not answer fails at once (Ray itself would retry for a while)."""
    if ray.is_initialized():
        return
    if address not in ("auto", "local"):
        _reachable(address)
    level = logging.getLogger().getEffectiveLevel()  # Ray's messages as mlxwx's (-q, -v)
    logging.getLogger("ray.data").setLevel(level)
    ray.data.DataContext.get_current().enable_progress_bars = level < logging.ERROR
    try:
        where = None if address == "local" else address
        ray.init(address=where, log_to_driver=False, logging_level=level)
    except (ConnectionError, RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        if "RAY_AUTH_MODE" not in os.environ:
            reason += AUTH_HINT
        raise MlxwxError(f"cannot join the Ray cluster at {address}: {reason}") from None


AUTH_HINT = (
    " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token in"
    " RAY_AUTH_TOKEN or ~/.ray/auth_token)"
)


def _reachable(address: str, timeout: float = 5.0) -> None:
    """MlxwxError unless something listens at `address` ("[ray://]host:port")."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise MlxwxError(f"--ray {address}: expected auto, local or HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise MlxwxError(f"cannot reach the Ray cluster at {address}: {why}") from None


def _seeded(options: PipelineOptions) -> PipelineOptions:
    """`options` with one seed for every actor of the run."""
    from ..asr.noise import draw_seed

    if options.transcribe.seed is not None:
        return options
    return replace(options, transcribe=replace(options.transcribe, seed=draw_seed()))


def _dataset(
    ray: Any,
    rows: Any,
    model: str,
    options: PipelineOptions,
    output: tuple[str, list[str], SubtitleOptions | None],
    spread: RayOptions,
) -> Any:
    """The operators: prepare (CPU tasks) -> Transcriber -> Finisher (actor pools). Ray Data's
    defaults retry a task and restart an actor whose process dies, without end."""
    dataset = ray.data.from_items(rows) if isinstance(rows, list) else rows
    dataset = dataset.map(prepare, fn_kwargs={"options": options}, num_cpus=spread.cpus_per_task)
    dataset = dataset.map_batches(
        Transcriber,
        fn_constructor_kwargs={"model": model, "options": options, "device": spread.device},
        batch_size=spread.files_per_batch,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=spread.actors),
        num_cpus=spread.cpus_per_actor,
        num_gpus=spread.gpus_per_actor,
        resources={spread.actor_resource: 1} if spread.actor_resource else None,
    )
    return dataset.map_batches(
        Finisher,
        fn_constructor_kwargs={"options": options, "output": output},
        batch_size=1,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=spread.finishers),
        num_cpus=spread.cpus_per_finisher,
    )


def _write_failures(destination: Destination, failed: list[dict]) -> None:
    """One line per input that has no outputs, and why (no file when none failed)."""
    if failed:
        lines = "".join(f"{f['path']}\t{' '.join(f['error'].split())}\n" for f in failed)
        destination.write(FAILURES_FILE, "input\treason\n" + lines)
    else:
        destination.remove(FAILURES_FILE)
