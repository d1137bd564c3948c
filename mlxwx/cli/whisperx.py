"""WhisperX's command line on mlxwx's: `whisperx AUDIO --batch_size 48 ...` runs as typed.

`translate` rewrites the arguments before typer reads them: `mlxwx AUDIO ...` is `mlxwx run
AUDIO ...`; WhisperX's underscore spellings (`--batch_size`) are mlxwx's dashed ones; its
true/false values (`--highlight_words True`) become flags; options that mean nothing here
(`--compute_type`, `--threads`, `--device cuda`) are dropped or mapped, each with a note that says
what mlxwx does instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BOOLEAN_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}

# WhisperX option (dashed) -> mlxwx option, where the names differ
RENAMED = {"--vad-method": "--vad"}

# WhisperX's str2bool options that are flags here: `--x True` -> `--x`, `--x False` -> `--no-x`
FLAGS = {"--condition-on-previous-text", "--highlight-words"}

# Options that take a value and mean nothing here: the note says what mlxwx does instead.
IGNORED = {
    "--compute-type": "mlxwx runs float16 on a GPU and float32 on the CPU",
    "--threads": "mlxwx picks its threads (one process per core on the CPU, --workers)",
    "--device-index": "MLX uses the one GPU it finds",
    "--fp16": "mlxwx runs float16 on a GPU and float32 on the CPU",
    "--model-dir": "models are cached in $MLXWX_CACHE (~/.cache/mlxwx) and the Hugging Face cache",
    "--model-cache-only": "a cached model is used without the network; HF_HUB_OFFLINE=1 "
    "forbids downloads",
    "--print-progress": "a progress bar is shown on a terminal (--quiet hides it)",
}

# --device: WhisperX's torch devices, MLX's device names
DEVICES = {"cuda": "gpu", "mps": "gpu", "cpu": "cpu", "auto": "auto", "gpu": "gpu"}

# --log-level: WhisperX's levels, mlxwx's flags
LOG_LEVELS = {"debug": ["--verbose"], "info": ["--verbose"], "warning": [], "error": [],
              "critical": []}  # fmt: skip


@dataclass
class Translation:
    args: list[str]
    notes: list[str] = field(default_factory=list)


def translate(argv: list[str], commands: set[str]) -> Translation:
    """mlxwx's arguments for `argv` (without the program name), and the notes to print."""
    if not argv or argv[0] in commands or argv[0] in ("-h", "--help", "-V", "--version"):
        if argv[:1] != ["run"]:
            return Translation(list(argv))
        argv = argv[1:]
    out, tokens = Translation(["run"]), _Tokens(argv)
    while (token := tokens.next()) is not None:
        if token == "--":
            out.args += [token, *tokens.rest()]
        elif token.startswith("--"):
            name, eq, value = token.partition("=")
            dashed = "--" + name[2:].replace("_", "-")
            _option(out, RENAMED.get(dashed, dashed), value if eq else None, tokens, name)
        else:
            out.args.append(token)
    return out


class _Tokens:
    """The arguments left, read one at a time, with a look at the next."""

    def __init__(self, args: list[str]):
        self.args, self.at = args, 0

    def next(self) -> str | None:
        self.at += 1
        return self.args[self.at - 1] if self.at <= len(self.args) else None

    def peek(self) -> str | None:
        return self.args[self.at] if self.at < len(self.args) else None

    def rest(self) -> list[str]:
        rest, self.at = self.args[self.at :], len(self.args)
        return rest


def _option(out: Translation, name: str, value: str | None, tokens: _Tokens, typed: str) -> None:
    """Append one option (its value inline, or the next argument when it takes one); `typed`:
    its name as given, for the notes."""
    if name in FLAGS or name == "--verbose":
        return _flag(out, name, value, tokens)
    if name not in IGNORED and name not in ("--device", "--log-level"):
        out.args.append(name if value is None else f"{name}={value}")
        return
    given = value if value is not None else (tokens.next() or "")
    if name in IGNORED:
        out.notes.append(f"{typed} {given} is not used: {IGNORED[name]}")
    elif name == "--device":
        device = DEVICES.get(given.lower(), given)
        if device != given:
            out.notes.append(f"{typed} {given} is --device {device} here (MLX's GPU or CPU)")
        out.args += [name, device]
    else:
        out.args += LOG_LEVELS.get(given.lower(), [name, given])


def _flag(out: Translation, name: str, value: str | None, tokens: _Tokens) -> None:
    """`--x`, `--x=true`, `--x False` (WhisperX's true/false values) as `--x` / `--no-x`.
    WhisperX's `--verbose False` (no segments printed) is `--quiet`; a bare `--verbose` is
    mlxwx's (log details)."""
    word = value
    if word is None and (tokens.peek() or "").lower() in BOOLEAN_WORDS:
        word = tokens.next()
    if word is None:
        out.args.append(name)
        return
    on = BOOLEAN_WORDS.get(word.lower())
    if on is None:
        raise ValueError(f"{name} takes true or false, got {word!r}")
    if name == "--verbose":
        out.args += [] if on else ["--quiet"]
    else:
        out.args.append(name if on else "--no-" + name[2:])
