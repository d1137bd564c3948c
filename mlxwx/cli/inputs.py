"""What `mlxwx run` reads and writes: the inputs a user names (files, folders, list files,
stdin), one output stem per input that no other input shares, the output folder checked before
any work, and the inputs whose outputs are all there already (`--skip-existing`)."""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

from ..errors import MlxwxError

# Extensions a folder's files are taken by (FFmpeg reads them all; anything can be named alone).
AUDIO_EXTENSIONS = frozenset(
    ".wav .flac .mp3 .m4a .aac .ogg .oga .opus .wma .aif .aiff .mp4 .m4v .mov .mkv .webm .avi"
    " .amr .3gp".split()
)
STDIN = "-"


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


def output_stems(paths: list[Path], output_dir: Path) -> list[Path]:
    """Where each input's outputs go, without extension: `output_dir/name` from the input's
    name; inputs whose names collide keep their folders (relative to the folder all of them
    share), and, in one folder, their extension (`talk.flac`, `talk.wav`). stdin is `stdin`."""
    names = [_name(p) for p in paths]
    clashes = {n for n, k in Counter(names).items() if k > 1}
    if not clashes:
        return [output_dir / n for n in names]
    common = Path(os.path.commonpath([_parent(p) for p in paths]))
    stems = [
        output_dir / (Path(_parent(p)).relative_to(common) / n if n in clashes else n)
        for p, n in zip(paths, names, strict=True)
    ]
    counts = Counter(stems)
    pairs = zip(stems, paths, strict=True)
    return [s.with_name(_name(p, keep_extension=True)) if counts[s] > 1 else s for s, p in pairs]


def _name(path: Path, keep_extension: bool = False) -> str:
    if str(path) == STDIN:
        return "stdin"
    return path.name if keep_extension else path.stem


def _parent(path: Path) -> str:
    return os.path.dirname(os.path.abspath(path))


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


def finished(stem: Path, formats: list[str]) -> bool:
    """Whether every output of `stem` exists (outputs are linked into place only when whole)."""
    return all(stem.with_name(f"{stem.name}.{fmt}").is_file() for fmt in formats)
