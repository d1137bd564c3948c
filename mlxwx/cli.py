"""`mlxwx` command line: parse, build options, call the library, write results."""

from __future__ import annotations

import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from . import _blas
from .audio import AudioError, load_audio
from .decoding import DecodingOptions
from .errors import MlxwxError
from .load import load_model
from .transcribe import TranscribeOptions, transcribe_array
from .writers import FORMATS, timestamp, write_result

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="WhisperX rebuilt MLX-native: fast transcription on Apple Silicon.",
)
logger = logging.getLogger("mlxwx")


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
        str | None, typer.Option(help="Language code; detected when omitted.")
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
    without_timestamps: Annotated[
        bool, typer.Option(help="Text only: one segment per 30 s window.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False,
) -> None:
    """Transcribe AUDIO files; writes one output per format next to each file's name in -o."""
    setup_logging(verbose, quiet)
    formats = parse_formats(output_format)
    _blas.warn_if_slow()
    try:
        options = TranscribeOptions(
            DecodingOptions(
                task=task.value, language=language, without_timestamps=without_timestamps
            )
        )
        wm = load_model(model)
        if language is not None and wm.tokenizer.multilingual:
            wm.tokenizer.language_token(language)
    except (MlxwxError, ValueError) as err:
        raise fail(str(err)) from None
    failed = sum(
        not transcribe_file(wm, path, options, output_dir, formats, quiet) for path in audio
    )
    if failed:
        raise fail(f"{failed} of {len(audio)} files failed", code=1)


def transcribe_file(
    wm, path: Path, options: TranscribeOptions, output_dir: Path, formats: list[str], quiet: bool
) -> bool:
    """Transcribe and write one file; report a failure on one line and return False."""
    try:
        result = transcribe_array(wm, load_audio(path), options, source=str(path))
        write_result(result, output_dir / path.stem, formats)
    except (AudioError, MlxwxError, OSError) as err:
        typer.echo(
            f"error: {path}: {err}" if str(path) not in str(err) else f"error: {err}", err=True
        )
        return False
    if not quiet:
        for s in result.segments:
            typer.echo(f"[{timestamp(s.start)} --> {timestamp(s.end)}] {s.text.strip()}")
    return True


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
