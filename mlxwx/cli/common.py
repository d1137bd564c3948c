"""What the commands share: one-line errors, logging, option helpers, progress bars."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import mlx.core as mx
import typer

from ..audio import AudioError, load_audio
from ..vad.methods import default_options
from ..vad.regions import VadOptions

DeviceOption = Annotated[str, typer.Option(help="auto (the GPU when MLX has one), cpu or gpu.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: the run stops as on Ctrl-C, and exits 143."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` on one line; the exit to raise."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return typer.Exit(code)


def setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)


def vad_options(
    method: str,
    defaults: Callable[..., VadOptions] = default_options,
    /,
    **changes: float | str | None,
) -> VadOptions:
    """`defaults(method)` (the method's defaults, or `transcribe_options`) with the options given
    on the command line (None: not given)."""
    return defaults(method, **{k: v for k, v in changes.items() if v is not None})


def read_audio(path: Path) -> mx.array | None:
    """The file's samples, or None after an error line."""
    try:
        return load_audio(path)
    except AudioError as err:
        typer.echo(f"error: {err}", err=True)
        return None


def show_progress(quiet: bool) -> bool:
    """Progress bars go to a terminal only, never with --quiet."""
    return not quiet and sys.stderr.isatty()
