"""RTTM files: speaker turns per file id, read and written.

Lines read: `SPEAKER <file-id> <channel> <start> <duration> <NA> <NA> <name> <NA> <NA>`
(whitespace-separated, times in seconds). Other record types and `;;` comments are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import MlxwxError
from .types import Turn
from .writers import write_atomic


class RttmError(MlxwxError, ValueError):
    """An RTTM file that cannot be read; the message names the file and line."""


def _parse_line(fields: list[str], where: str) -> tuple[str, Turn]:
    if len(fields) < 5:
        raise RttmError(f"{where}: expected 'SPEAKER file channel start duration ...'")
    try:
        start, duration = float(fields[3]), float(fields[4])
    except ValueError:
        raise RttmError(
            f"{where}: start/duration are not numbers: {fields[3]!r} {fields[4]!r}"
        ) from None
    if start < 0 or duration < 0:
        raise RttmError(f"{where}: negative start or duration: {start} {duration}")
    name = fields[7] if len(fields) > 7 else "<NA>"
    return fields[1], Turn(start, start + duration, name)


def read_turns(path: str | Path) -> dict[str, list[Turn]]:
    """Every speaker turn of an RTTM file per file id, sorted by start (overlaps kept).

    Raises:
        RttmError: a missing file or a malformed SPEAKER line (one line naming file and line).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise RttmError(f"cannot read RTTM file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise RttmError(f"cannot read RTTM file {path}: not UTF-8 text") from None
    turns: dict[str, list[Turn]] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith(";;") or fields[0] != "SPEAKER":
            continue
        uri, turn = _parse_line(fields, f"{path}:{number}")
        turns.setdefault(uri, []).append(turn)
    return {uri: sorted(ts, key=lambda t: (t.start, t.end)) for uri, ts in turns.items()}


def to_rttm(turns: Mapping[str, Sequence[Turn]]) -> str:
    """RTTM text: one SPEAKER line per turn, times rounded to the millisecond."""
    lines, na = [], "<NA>"
    for uri, items in turns.items():
        if not uri or any(c.isspace() for c in uri):
            raise ValueError(f"RTTM file id must be non-empty without whitespace: {uri!r}")
        for t in items:
            start, duration = round(t.start, 3), round(t.end - t.start, 3)
            name = "".join(t.speaker.split()) or na
            lines.append(f"SPEAKER {uri} 1 {start:.3f} {duration:.3f} {na} {na} {name} {na} {na}\n")
    return "".join(lines)


def write_rttm(path: str | Path, turns: Mapping[str, Sequence[Turn]]) -> Path:
    """Write `turns` (file id -> turns) to `path` atomically; returns the path."""
    path = Path(path)
    write_atomic(path, to_rttm(turns))
    return path
