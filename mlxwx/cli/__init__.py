"""The `mlxwx` command line: a typer app whose commands live in this package's modules.

Commands are registered here, so the modules that define them never import the app.
"""

from __future__ import annotations

import sys

import typer

from .run import run
from .vad import vad_command, vad_eval_command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="WhisperX rebuilt MLX-native: fast transcription on Apple Silicon.",
)
app.command("run")(run)
app.command("vad")(vad_command)
app.command("vad-eval")(vad_eval_command)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


__all__ = ["app", "main"]
