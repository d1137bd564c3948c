"""The `mlxwx` command line: a typer app whose commands live in this package's modules.

Commands are registered here, so the modules that define them never import the app. `main`
also reads WhisperX's spellings (`mlxwx AUDIO --batch_size 48`, `mlxwx.cli.whisperx`) and turns
SIGTERM into an orderly stop (exit 143; Ctrl-C: 130). A stopped run leaves the process at once
(`os._exit`, after flushing), once it has said what it wrote: the interpreter's own shutdown
could otherwise meet MLX's native threads still winding down and abort the process (exit -6,
"terminate called without an active exception", seen under load) instead of exiting 130/143.
"""

from __future__ import annotations

import logging
import os
import platform
import signal
import sys
from typing import Annotated, Any

import typer

from .common import Terminated
from .models import models_command
from .run import run
from .vad import vad_command, vad_eval_command
from .whisperx import translate

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="WhisperX rebuilt MLX-native: fast transcription on Apple Silicon. "
    "`mlxwx AUDIO...` is `mlxwx run AUDIO...`.",
)
app.command("run")(run)
app.command("models")(models_command)
app.command("vad")(vad_command)
app.command("vad-eval")(vad_eval_command)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"mlxwx {__version__}")
        raise typer.Exit()


def _python_version(value: bool) -> None:
    if value:
        typer.echo(f"Python {platform.python_version()} ({platform.python_implementation()})")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print it, exit."),
    ] = False,
    python_version: Annotated[
        bool,
        typer.Option(
            "--python-version", "-P", callback=_python_version, is_eager=True, hidden=True
        ),
    ] = False,
) -> None:
    if ctx.invoked_subcommand is None:  # `mlxwx` alone: the help, and success
        typer.echo(ctx.get_help())


def _terminate(_signum: int, _frame: Any) -> None:
    raise Terminated()


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        translation = translate(sys.argv[1:], set(_commands()))
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    quiet = any(a in ("-q", "--quiet") for a in translation.args)
    for note in [] if quiet else translation.notes:
        typer.echo(f"note: {note}", err=True)
    try:
        app(args=translation.args, prog_name="mlxwx")
    except KeyboardInterrupt as stop:  # outside a run (a run says what it finished)
        typer.echo("interrupted", err=True)
        _leave(143 if isinstance(stop, Terminated) else 130)
    except SystemExit as done:
        if done.code in STOPPED:  # a run stopped by a signal: it has said what it wrote
            _leave(done.code)
        raise


STOPPED = (130, 143)


def _leave(code: int) -> None:
    """Exit now with `code`, skipping the interpreter's shutdown (see the module docstring)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _commands() -> list[str]:
    return [c.name or "" for c in app.registered_commands]


__all__ = ["app", "main"]
