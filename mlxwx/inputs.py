"""The inputs a user names (files, folders, list files, stdin), and the output folder checked
before any work, for `mlxwx run` and `mlxwx.distributed`. (Output names:
`mlxwx.writers.output_stems`.)"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import MlxwxError
from .writers import STDIN

# Extensions a folder's files are taken by (FFmpeg reads them all; anything can be named alone).
AUDIO_EXTENSIONS = frozenset(
    ".wav .flac .mp3 .m4a .aac .ogg .oga .opus .wma .aif .aiff .mp4 .m4v .mov .mkv .webm .avi"
    " .amr .3gp".split()
)


def expand(paths: list[Path], input_list: Path | None) -> list[Path]:
    """The inputs in the order given: files as they are, folders by their audio files
    (recursively, sorted), then the lines of `input_list` (`-` reads the list from stdin only
    when no audio comes from stdin); each path once. `-` is stdin's audio."""
    named = list(paths)
    if input_list is not None:
        named += [Path(line.strip()) for line in _list_lines(input_list) if line.strip()]
    found: list[Path] = []
    for path in named:
        if str(path) != STDIN and path.is_dir():
            found += sorted(p for p in path.rglob("*") if _audio_file(p))
        else:
            found.append(path)
    seen: set[str] = set()
    unique = []
    for path in found:
        key = STDIN if str(path) == STDIN else os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    if not named:
        raise MlxwxError("no input: give audio files, folders, --input-list FILE or - (stdin)")
    if not unique:
        raise MlxwxError("no audio files in " + ", ".join(str(p) for p in named))
    return unique


def _audio_file(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()


def _list_lines(path: Path) -> list[str]:
    try:
        if str(path) == STDIN:
            return sys.stdin.read().splitlines()
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise MlxwxError(f"--input-list {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise MlxwxError(f"--input-list {path}: not a UTF-8 text file") from None


def is_url(output: str | Path) -> bool:
    """Whether an output folder is a URL (`s3://bucket/prefix`) rather than a path."""
    return "://" in str(output)


def local_folder(output: str) -> Path:
    """The output folder of a run on this machine: a path (a URL needs `mlxwx.distributed`)."""
    if is_url(output):
        raise MlxwxError(f"--output-dir {output}: a URL needs --ray (object storage outputs)")
    return Path(output)


def check_output_dir(path: Path) -> None:
    """Create `path` (and its parents) if needed; raise MlxwxError if it cannot hold files."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise MlxwxError(f"--output-dir {path}: not a folder") from None
    except OSError as err:
        raise MlxwxError(f"--output-dir {path}: {err.strerror or err}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise MlxwxError(f"--output-dir {path}: not writable")
