"""Write results as json (WhisperX schema), txt, srt, vtt, tsv and aud; every file atomically."""

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
    return "".join(f"{s.start:.3f}\t{s.end:.3f}\t{_label(s)}\n" for s in result.segments)


WRITERS: dict[str, Callable[[Result], str]] = {
    "json": to_json,
    "txt": to_txt,
    "srt": to_srt,
    "vtt": to_vtt,
    "tsv": to_tsv,
    "aud": to_aud,
}


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
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
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_result(result: Result, stem: Path, formats: Iterable[str]) -> list[Path]:
    """Write `result` next to `stem` (`stem.json`, `stem.srt`, ...); returns the paths."""
    paths = []
    for fmt in formats:
        if fmt not in WRITERS:
            raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}")
        path = stem.with_name(f"{stem.name}.{fmt}")
        write_atomic(path, WRITERS[fmt](result))
        paths.append(path)
    return paths
