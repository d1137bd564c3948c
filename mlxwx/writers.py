"""The write stage: results as json (WhisperX schema), txt, srt, vtt, tsv and aud.

Every file is written atomically: a reader, or a run killed at any moment, sees either the whole
file or none of it, never a part, and no temporary file is left behind on Linux (see
`write_atomic`). The json is written last, so an input whose .json exists has all its outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .types import Result, Segment

FORMATS = ("json", "txt", "srt", "vtt", "tsv", "aud")


def timestamp(seconds: float, decimal: str = ".", always_hours: bool = False) -> str:
    """HH:MM:SS.mmm (hours omitted when zero unless `always_hours`)."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    head = f"{hours:02d}:" if always_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def _label(segment: Segment) -> str:
    text = segment.text.strip().replace("-->", "->")
    return f"[{segment.speaker}]: {text}" if segment.speaker else text


def to_json(result: Result) -> str:
    return json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n"


def to_txt(result: Result) -> str:
    return "".join(f"{_label(s)}\n" for s in result.segments)


def to_srt(result: Result) -> str:
    cues = (
        f"{i}\n{timestamp(s.start, ',', True)} --> {timestamp(s.end, ',', True)}\n{_label(s)}\n"
        for i, s in enumerate(result.segments, 1)
    )
    return "\n".join(cues)


def to_vtt(result: Result) -> str:
    cues = "".join(
        f"{timestamp(s.start)} --> {timestamp(s.end)}\n{_label(s)}\n\n" for s in result.segments
    )
    return f"WEBVTT\n\n{cues}"


def to_tsv(result: Result) -> str:
    rows = (
        f"{round(1000 * s.start)}\t{round(1000 * s.end)}\t{_label(s).replace(chr(9), ' ')}\n"
        for s in result.segments
    )
    return "start\tend\ttext\n" + "".join(rows)


def to_aud(result: Result) -> str:
    """Audacity labels: start, end and text separated by tabs (tabs in the text become spaces)."""
    rows = (
        f"{s.start:.3f}\t{s.end:.3f}\t{_label(s).replace(chr(9), ' ')}\n" for s in result.segments
    )
    return "".join(rows)


WRITERS: dict[str, Callable[[Result], str]] = {
    "json": to_json,
    "txt": to_txt,
    "srt": to_srt,
    "vtt": to_vtt,
    "tsv": to_tsv,
    "aud": to_aud,
}


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _link_unnamed(path: Path, data: bytes) -> bool:
    """Write `data` to an unnamed file in `path`'s folder and link it in as `path` (Linux
    O_TMPFILE): until the link the file has no name, so a crash leaves nothing behind. False
    when the system or the file system cannot."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        fd = os.open(path.parent, flag | os.O_WRONLY, 0o666)  # the umask applies
    except OSError:
        return False
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.fdopen(os.dup(fd), "wb") as f:
            f.write(data)
        # linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/N names the unnamed file (a dir fd makes
        # os.link call linkat; plain link() would link the /proc symlink itself)
        unnamed = f"/proc/self/fd/{fd}"
        try:
            os.link(unnamed, path.name, dst_dir_fd=folder, follow_symlinks=True)
        except FileExistsError:  # replacing a file: rename a named link over it
            tmp = f".{path.name}.{os.getpid()}.{fd}.tmp"
            os.link(unnamed, tmp, dst_dir_fd=folder, follow_symlinks=True)
            os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
    finally:
        os.close(fd)
        os.close(folder)
    return True


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable as the umask allows: through an unnamed file
    linked into place where the system has them (Linux), else a temporary file in the same
    folder renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    if _link_unnamed(path, data):
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@contextmanager
def atomic_folder(dst: Path) -> Iterator[Path]:
    """A temporary folder beside `dst` to fill; renamed to `dst` (with the permissions a new
    folder gets) when the block ends, removed if it raises."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        yield tmp
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_result(result: Result, stem: Path, formats: Iterable[str]) -> list[Path]:
    """The write stage: `result` next to `stem` (`stem.json`, `stem.srt`, ...), the json last;
    returns the paths."""
    paths = []
    for fmt in sorted(formats, key=lambda f: f == "json"):
        if fmt not in WRITERS:
            raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}")
        path = stem.with_name(f"{stem.name}.{fmt}")
        write_atomic(path, WRITERS[fmt](result))
        paths.append(path)
    return paths
