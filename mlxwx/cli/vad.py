"""`mlxwx vad` (speech regions of files) and `mlxwx vad-eval` (their scores against an RTTM).

Registered on `mlxwx.cli.app` by `mlxwx.cli`. Errors follow `mlxwx run`:
one `error:` line each; exit 2 for bad options (nothing is processed), 1 when some files failed
(the others are still processed and written).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import mlx.core as mx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ..device import use_device
from ..errors import MlxwxError
from ..types import SAMPLE_RATE, SpanSeconds
from ..vad.base import SpeechProbs, Vad
from ..vad.methods import DEFAULT_METHOD, METHODS, load_vad
from ..vad.metrics import SweepRow, VadMetrics, combine, evaluate, format_sweep, sweep
from ..vad.regions import Chunk, VadOptions, binarize, merge_chunks
from ..vad.rttm import read_rttm, to_rttm
from ..writers import write_atomic
from .common import (
    DeviceOption,
    Quiet,
    Verbose,
    fail,
    read_audio,
    setup_logging,
    show_progress,
    vad_options,
)

VAD_FORMATS = ("rttm", "json")

Method = Annotated[str, typer.Option(help=f"VAD: {', '.join(METHODS)}.", show_default=True)]
Onset = Annotated[
    float | None, typer.Option(help="A frame >= onset starts speech (default: the method's).")
]
Offset = Annotated[
    float | None, typer.Option(help="A frame < offset ends speech (default: the method's).")
]
MinSpeech = Annotated[
    float | None, typer.Option(help="Drop shorter regions, seconds (default: the method's).")
]
MinSilence = Annotated[
    float | None,
    typer.Option(help="Shorter silences do not end speech, s (default: the method's)."),
]
Pad = Annotated[
    float | None, typer.Option(help="Grow regions by this much, s (default: the method's).")
]
ChunkSize = Annotated[
    float | None, typer.Option(help="Longest region and chunk, seconds (default: 30).")
]


def file_id(path: Path) -> str:
    """The RTTM file id of an audio file: its stem, whitespace replaced by '_'."""
    return "_".join(path.stem.split()) or "_"


def build_options(method: str, **changes: float | str | None) -> VadOptions:
    """The method's defaults with the options given on the command line; exits 2 when bad."""
    try:
        return vad_options(method, **changes)
    except (MlxwxError, ValueError) as err:
        raise fail(str(err)) from None


def open_vad(method: str, device: str) -> Vad:
    try:
        use_device(device)
        return load_vad(method)
    except MlxwxError as err:
        raise fail(str(err)) from None


@contextmanager
def file_progress(quiet: bool, total: int, what: str) -> Iterator[Callable[[int, Path], None]]:
    """`step(i, path)` before file i: a rich bar on a terminal, nothing when piped or quiet."""
    if not show_progress(quiet):
        yield lambda i, path: None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda i, path: bar.update(task, completed=i, description=f"{what} {path.name}")


def options_dict(options: VadOptions) -> dict[str, Any]:
    """The options as JSON values (infinite lengths as null), with the offset in force."""
    out = {
        k: None if isinstance(v, float) and math.isinf(v) else v for k, v in asdict(options).items()
    }
    return {**out, "offset_used": options.threshold_off}


def regions_list(regions: Sequence[SpanSeconds]) -> list[dict[str, float]]:
    return [{"start": r.start, "end": r.end} for r in regions]


def chunk_dict(chunk: Chunk) -> dict[str, Any]:
    return {
        "start": chunk.start,
        "end": chunk.end,
        "duration": round(chunk.duration, 6),
        "pieces": regions_list(chunk.pieces),
        "regions": regions_list(chunk.regions),
    }


def parse_list(value: str, choices: Sequence[str], what: str) -> list[str]:
    items = [f.strip() for f in value.split(",") if f.strip()]
    unknown = [f for f in items if f not in choices]
    if unknown or not items:
        raise fail(
            f"unknown {what} {','.join(unknown) or value!r}; choose from {', '.join(choices)}"
        )
    return items


def vad_command(
    audio: Annotated[list[Path], typer.Argument(help="Audio or video files.")],
    method: Method = DEFAULT_METHOD,
    onset: Onset = None,
    offset: Offset = None,
    min_speech: MinSpeech = None,
    min_silence: MinSilence = None,
    pad: Pad = None,
    chunk_size: ChunkSize = None,
    merge: Annotated[
        str, typer.Option(help="Chunks: span (WhisperX) or concat (speech only).")
    ] = "span",
    chunks: Annotated[
        bool, typer.Option("--chunks", help="Add the <= chunk-size chunks to the JSON output.")
    ] = False,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where to write.")] = Path(
        "."
    ),
    output_format: Annotated[
        str, typer.Option("--output-format", "-f", help="rttm, json, or both: rttm,json.")
    ] = "rttm",
    device: DeviceOption = "auto",
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Find the speech regions of AUDIO files.

    Writes -o/STEM.rttm (file id STEM) and/or -o/STEM.json (regions, options, --chunks).
    """
    setup_logging(verbose, quiet)
    formats = parse_list(output_format, VAD_FORMATS, "output format")
    options = build_options(
        method,
        onset=onset,
        offset=offset,
        min_speech=min_speech,
        min_silence=min_silence,
        pad=pad,
        chunk_size=chunk_size,
        merge=merge,
    )
    vad = open_vad(method, device)
    written = 0
    with file_progress(quiet, len(audio), "vad") as step:
        for i, path in enumerate(audio):
            step(i, path)
            samples = read_audio(path)
            if samples is None:
                continue
            duration = samples.shape[0] / SAMPLE_RATE
            probs = vad(samples)
            found = FileRegions(path, duration, probs.hop, binarize(probs, options, duration))
            texts = region_texts(found, method, options, chunks, formats)
            written += save_texts(path, texts, output_dir)
            if not quiet:
                speech = sum(r.duration for r in found.regions)
                typer.echo(
                    f"{path}: {len(found.regions)} regions, {speech:.2f} s of speech"
                    f" in {duration:.2f} s"
                )
    if written < len(audio):
        raise fail(f"{len(audio) - written} of {len(audio)} files failed", code=1)


@dataclass(frozen=True)
class FileRegions:
    """The speech regions found in one file."""

    path: Path
    duration: float  # seconds
    hop: float  # seconds between the VAD's frames
    regions: list[SpanSeconds]


def region_texts(
    found: FileRegions, method: str, options: VadOptions, chunks: bool, formats: list[str]
) -> dict[str, str]:
    """Output format -> text: RTTM (file id: the stem) or JSON (regions, options, chunks)."""
    uri = file_id(found.path)
    texts = {"rttm": to_rttm({uri: found.regions})}
    if "json" in formats:
        data: dict[str, Any] = {
            "file": str(found.path),
            "id": uri,
            "method": method,
            "duration": found.duration,
            "hop": found.hop,
            "options": options_dict(options),
            "regions": regions_list(found.regions),
            "speech": round(sum(r.duration for r in found.regions), 6),
        }
        if chunks:
            data["chunks"] = [chunk_dict(c) for c in merge_chunks(found.regions, options)]
        texts["json"] = json.dumps(data, indent=2) + "\n"
    return {fmt: texts[fmt] for fmt in formats}


def save_texts(path: Path, texts: dict[str, str], output_dir: Path) -> bool:
    """Write output_dir/STEM.FORMAT for each text atomically; False after an error line."""
    try:
        for fmt, text in texts.items():
            write_atomic(output_dir / f"{path.stem}.{fmt}", text)
    except OSError as err:
        typer.echo(f"error: cannot write the regions of {path}: {err}", err=True)
        return False
    return True


# --- vad-eval --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileScore:
    path: Path
    uri: str
    duration: float
    regions: list[SpanSeconds]
    metrics: VadMetrics
    sweep: list[SweepRow]


def read_references(paths: list[Path]) -> dict[str, list[SpanSeconds]]:
    """Every speaker turn per file id of the RTTM files (pyannote.metrics puts its collars around
    each turn); exits 2 on an unreadable file or a file id found in two files."""
    out: dict[str, list[SpanSeconds]] = {}
    for path in paths:
        try:
            turns = read_rttm(path, merge=False)
        except MlxwxError as err:
            raise fail(str(err)) from None
        twice = sorted(out.keys() & turns.keys())
        if twice:
            raise fail(f"file id {twice[0]!r} of {path} is also in an earlier --reference")
        out.update(turns)
    return out


def parse_thresholds(value: str | None) -> list[float]:
    if value is None:
        return []
    try:
        thresholds = [float(t) for t in value.split(",") if t.strip()]
    except ValueError:
        raise fail(f"--sweep takes comma-separated onsets such as 0.3,0.5, got {value!r}") from None
    if not thresholds or not all(0.0 <= t <= 1.0 for t in thresholds):
        raise fail(f"--sweep thresholds must be within [0, 1], got {value!r}")
    return thresholds


def sweep_options(options: VadOptions, onset: float) -> VadOptions:
    """The sweep's options at `onset`: an explicit offset above it is lowered to it."""
    offset = options.offset if options.offset is None else min(options.offset, onset)
    return replace(options, onset=onset, offset=offset)


def score_file(
    path: Path,
    samples: mx.array,
    reference: list[SpanSeconds],
    vad: Vad,
    options: VadOptions,
    collar: float,
    thresholds: list[float],
) -> FileScore:
    duration = samples.shape[0] / SAMPLE_RATE
    probs: SpeechProbs = vad(samples)
    regions = binarize(probs, options, duration)
    metrics = evaluate(reference, regions, collar=collar, duration=duration)

    def at(p: SpeechProbs, onset: float) -> list[SpanSeconds]:
        return binarize(p, sweep_options(options, onset), duration)

    rows = sweep(reference, probs, thresholds, at, collar=collar, duration=duration)
    return FileScore(path, file_id(path), duration, regions, metrics, rows)


def metrics_table(rows: Sequence[tuple[str, VadMetrics, int]]) -> str:
    """Per-file scores in %, one line each."""
    width = max([4, *(len(name) for name, _, _ in rows)])
    names = ("DetER%", "miss%", "FA%", "prec%", "rec%", "speech_s", "regions")
    lines = [f"{'file':<{width}} " + " ".join(f"{n:>8}" for n in names)]
    for name, m, count in rows:
        values = (m.detection_error_rate, m.miss, m.false_alarm, m.precision, m.recall)
        lines.append(
            f"{name:<{width}} "
            + " ".join(f"{100 * v:8.2f}" for v in values)
            + f" {m.reference_speech:8.2f} {count:8d}"
        )
    return "\n".join(lines)


def total_sweep(scores: Sequence[FileScore]) -> list[SweepRow]:
    by_threshold = zip(*(s.sweep for s in scores), strict=True)
    return [
        SweepRow(
            rows[0].threshold, combine([r.metrics for r in rows]), sum(r.regions for r in rows)
        )
        for rows in by_threshold
    ]


def print_text(scores: list[FileScore], method: str, options: VadOptions, collar: float) -> None:
    o = options
    typer.echo(
        f"method {method}: onset {o.onset:.3f}, offset {o.threshold_off:.3f}, min speech "
        f"{o.min_speech:g} s, min silence {o.min_silence:g} s, pad {o.pad:g} s, max speech "
        f"{o.max_speech:g} s; collar {collar:g} s"
    )
    rows = [(s.path.name, s.metrics, len(s.regions)) for s in scores]
    total = combine([s.metrics for s in scores])
    typer.echo(metrics_table([*rows, ("total", total, sum(len(s.regions) for s in scores))]))
    if not scores or not scores[0].sweep:
        return
    rule = (
        "max(onset - 0.15, 0.01)" if options.offset is None else f"min({options.offset:g}, onset)"
    )
    typer.echo(f"\nonset sweep (offset {rule}):")
    sweeps = [(s.path.name, s.sweep) for s in scores]
    if len(scores) > 1:
        sweeps.append(("total", total_sweep(scores)))
    for name, table in sweeps:
        typer.echo(f"== {name}\n{format_sweep(table)}")


def json_report(scores: list[FileScore], method: str, options: VadOptions, collar: float) -> str:
    def rows(table: Sequence[SweepRow]) -> list[dict[str, Any]]:
        return [
            {"onset": r.threshold, "regions": r.regions, "metrics": asdict(r.metrics)}
            for r in table
        ]

    files = [
        {
            "file": str(s.path),
            "id": s.uri,
            "duration": s.duration,
            "regions": regions_list(s.regions),
            "metrics": asdict(s.metrics),
            "sweep": rows(s.sweep),
        }
        for s in scores
    ]
    data = {
        "method": method,
        "options": options_dict(options),
        "collar": collar,
        "files": files,
        "total": asdict(combine([s.metrics for s in scores])),
        "sweep_total": rows(total_sweep(scores)) if scores else [],
    }
    return json.dumps(data, indent=2)


def vad_eval_command(
    audio: Annotated[list[Path], typer.Argument(help="Audio files; RTTM file id = file stem.")],
    reference: Annotated[
        list[Path], typer.Option("--reference", "-r", help="Reference RTTM (repeatable).")
    ],
    method: Method = DEFAULT_METHOD,
    onset: Onset = None,
    offset: Offset = None,
    min_speech: MinSpeech = None,
    min_silence: MinSilence = None,
    pad: Pad = None,
    chunk_size: ChunkSize = None,
    collar: Annotated[
        float, typer.Option(help="Seconds not scored around each reference boundary (total).")
    ] = 0.0,
    sweep_onsets: Annotated[
        str | None, typer.Option("--sweep", help="Onsets to sweep, e.g. 0.2,0.3,0.5.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    device: DeviceOption = "auto",
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Score a VAD against reference RTTMs.

    Detection error rate, miss, false alarm, precision and recall of each AUDIO file and of all
    together (pyannote.metrics conventions, whole file scored), and an onset sweep table.
    """
    setup_logging(verbose, quiet)
    if collar < 0:
        raise fail(f"--collar must be >= 0 seconds, got {collar:g}")
    thresholds = parse_thresholds(sweep_onsets)
    options = build_options(
        method,
        onset=onset,
        offset=offset,
        min_speech=min_speech,
        min_silence=min_silence,
        pad=pad,
        chunk_size=chunk_size,
    )
    references = read_references(reference)
    vad = open_vad(method, device)
    scores = []
    with file_progress(quiet, len(audio), "vad-eval") as step:
        for i, path in enumerate(audio):
            step(i, path)
            ref = references.get(file_id(path))
            if ref is None:
                known = ", ".join(sorted(references)) or "none"
                typer.echo(
                    f"error: no reference for {path} (file id {file_id(path)!r}; "
                    f"the RTTM has {known})",
                    err=True,
                )
                continue
            samples = read_audio(path)
            if samples is not None:
                scores.append(score_file(path, samples, ref, vad, options, collar, thresholds))
    if as_json:
        typer.echo(json_report(scores, method, options, collar))
    elif scores:
        print_text(scores, method, options, collar)
    if len(scores) < len(audio):
        raise fail(f"{len(audio) - len(scores)} of {len(audio)} files failed", code=1)
