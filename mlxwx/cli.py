"""`mlxwx` command line: parse, build options, call the library, write results."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import mlx.core as mx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from .audio import SAMPLE_RATE, AudioError, load_audio
from .decoding import DecodingOptions
from .device import use_device
from .engine import ProgressHook, TranscribeOptions, transcribe_arrays
from .errors import MlxwxError
from .load import load_model
from .types import Result
from .vad.methods import default_options, load_vad, transcribe_options
from .vad.regions import VadOptions
from .writers import FORMATS, timestamp, write_result

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="WhisperX rebuilt MLX-native: fast transcription on Apple Silicon.",
)
logger = logging.getLogger("mlxwx")
DeviceOption = Annotated[str, typer.Option(help="auto (the GPU when MLX has one), cpu or gpu.")]
RUN_VAD = "silero"  # best measured WER on the bench input (bench/RESULTS.md)


class Task(str, Enum):
    TRANSCRIBE = "transcribe"
    TRANSLATE = "translate"


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return typer.Exit(code)


def parse_formats(value: str) -> list[str]:
    formats = (
        list(FORMATS) if value == "all" else [f.strip() for f in value.split(",") if f.strip()]
    )
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise fail(
            f"unknown output format {','.join(unknown) or value!r}; "
            f"choose from {', '.join(FORMATS)} or all"
        )
    return formats


def setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)


@app.callback()
def main_callback() -> None:
    """WhisperX rebuilt MLX-native."""


@app.command()
def run(
    audio: Annotated[list[Path], typer.Argument(help="Audio or video files to transcribe.")],
    model: Annotated[
        str,
        typer.Option(
            help="Model name (tiny.en, base, large-v3-turbo, ...), "
            "MLX folder or Hugging Face repo id."
        ),
    ] = "large-v3-turbo",
    language: Annotated[
        str | None, typer.Option(help="Language code; detected per file when omitted.")
    ] = None,
    task: Annotated[
        Task, typer.Option(help="Transcribe, or translate to English.")
    ] = Task.TRANSCRIBE,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where to write.")] = Path(
        "."
    ),
    output_format: Annotated[
        str,
        typer.Option("--output-format", "-f", help=f"Comma list of {','.join(FORMATS)}, or all."),
    ] = "all",
    batch_size: Annotated[
        int, typer.Option(help="Windows decoded together, across all files.")
    ] = 16,
    beam_size: Annotated[int, typer.Option(help="Beams per window (1: greedy).")] = 5,
    best_of: Annotated[
        int, typer.Option(help="Samples per window when falling back to sampling.")
    ] = 5,
    patience: Annotated[float, typer.Option(help="Beam search patience.")] = 1.0,
    temperature_fallback: Annotated[
        bool, typer.Option(help="Re-decode failing windows at rising temperatures.")
    ] = True,
    condition_on_previous_text: Annotated[
        bool, typer.Option(help="Prompt each window with the previous window's text.")
    ] = False,
    initial_prompt: Annotated[
        str | None, typer.Option(help="Text prompting windows with no previous text.")
    ] = None,
    hotwords: Annotated[str | None, typer.Option(help="Words or phrases to favour.")] = None,
    without_timestamps: Annotated[
        bool, typer.Option(help="Text only: one segment per 30 s window.")
    ] = False,
    vad: Annotated[
        str,
        typer.Option(help="Speech detection first: silero, pyannote, energy or none."),
    ] = RUN_VAD,
    vad_onset: Annotated[
        float | None, typer.Option(help="VAD probability that starts speech (method default).")
    ] = None,
    vad_offset: Annotated[
        float | None, typer.Option(help="VAD probability below which speech ends.")
    ] = None,
    chunk_size: Annotated[
        float, typer.Option(help="Longest stretch of speech decoded as one window, seconds.")
    ] = 30.0,
    device: DeviceOption = "auto",
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Processes decoding on the CPU (default: one per core, at most 2)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False,
) -> None:
    """Transcribe AUDIO files together; writes one output per format and file into -o."""
    setup_logging(verbose, quiet)
    formats = parse_formats(output_format)
    try:
        use_device(device)
        decoding = DecodingOptions(
            task=task.value,
            language=language,
            beam_size=beam_size,
            best_of=best_of,
            patience=patience,
            without_timestamps=without_timestamps,
        )
        options = TranscribeOptions(
            decoding,
            batch_size=batch_size,
            temperatures=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0) if temperature_fallback else (0.0,),
            condition_on_previous_text=condition_on_previous_text,
            initial_prompt=initial_prompt,
            hotwords=hotwords,
            vad_options=run_vad_options(vad, vad_onset, vad_offset, chunk_size),
            workers=workers,
        )
        vad_model = None if vad == "none" else load_vad(vad)
        wm = load_model(model)
        if language is not None and wm.tokenizer.multilingual:
            wm.tokenizer.language_token(language)
    except (MlxwxError, ValueError) as err:
        raise fail(str(err)) from None
    loaded = load_all(audio)
    with progress_bar(quiet) as hook:
        results = transcribe_arrays(
            wm, [a for _, a in loaded], options, [str(p) for p, _ in loaded], hook, vad_model
        )
    pairs = zip(loaded, results, strict=True)
    written = sum(write(r, path, output_dir, formats, quiet) for (path, _), r in pairs)
    failed = len(audio) - written
    if failed:
        raise fail(f"{failed} of {len(audio)} files failed", code=1)


def vad_options(
    method: str,
    defaults: Callable[..., VadOptions] = default_options,
    /,
    **changes: float | str | None,
) -> VadOptions:
    """`defaults(method)` (the method's defaults, or `transcribe_options`) with the options given
    on the command line (None: not given)."""
    return defaults(method, **{k: v for k, v in changes.items() if v is not None})


def run_vad_options(
    method: str, onset: float | None, offset: float | None, chunk_size: float
) -> VadOptions:
    """`run`'s VAD options: the method's defaults with the options given."""
    if chunk_size <= 0 or chunk_size > 30:
        raise ValueError(f"--chunk-size must be within (0, 30] seconds, got {chunk_size}")
    if method == "none":
        return VadOptions(chunk_size=chunk_size)
    return vad_options(
        method, transcribe_options, onset=onset, offset=offset, chunk_size=chunk_size
    )


def read_audio(path: Path) -> mx.array | None:
    """The file's samples, or None after an error line."""
    try:
        return load_audio(path)
    except AudioError as err:
        typer.echo(f"error: {err}", err=True)
        return None


def load_all(paths: list[Path]) -> list[tuple[Path, mx.array]]:
    """Decode every file once; report each unreadable one on a line and leave it out."""
    return [(path, a) for path in paths if (a := read_audio(path)) is not None]


def write(result: Result, path: Path, output_dir: Path, formats: list[str], quiet: bool) -> bool:
    try:
        write_result(result, output_dir / path.stem, formats)
    except OSError as err:
        typer.echo(f"error: cannot write results of {path}: {err}", err=True)
        return False
    if not quiet:
        for s in result.segments:
            typer.echo(f"[{timestamp(s.start)} --> {timestamp(s.end)}] {s.text.strip()}")
    return True


@contextmanager
def progress_bar(quiet: bool) -> Iterator[ProgressHook | None]:
    """A rich progress bar (audio minutes, real-time factor) on a terminal; nothing otherwise."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[minutes]}"),
        TextColumn("{task.fields[speed]}"),
        TimeRemainingColumn(),
    ]
    start = time.perf_counter()
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("transcribing", total=None, minutes="", speed="")

        def hook(stage: str, completed: int = 0, total: int = 0, **_: object) -> None:
            audio_s, total_s = completed / SAMPLE_RATE, total / SAMPLE_RATE
            speed = audio_s / max(time.perf_counter() - start, 1e-9)
            bar.update(
                task,
                completed=completed,
                total=total,
                description=stage,
                minutes=f"{audio_s / 60:.1f}/{total_s / 60:.1f} min",
                speed=f"{speed:.1f}x real time",
            )

        yield hook


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


from . import cli_vad  # noqa: E402, F401  (registers the vad and vad-eval commands on app)
