"""RTTM speech regions: read a reference (speech = union of every speaker's turns), write regions.

RTTM lines read here: `SPEAKER <file-id> <channel> <start> <duration> <NA> <NA> <name> <NA> <NA>`
(whitespace-separated, times in seconds). Other record types and `;;` comments are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mlxwx.errors import MlxwxError
from mlxwx.vad.base import SpanSeconds
from mlxwx.writers import write_atomic


class RttmError(MlxwxError, ValueError):
    """An RTTM file that cannot be read; the message names the file and line."""


def speech_support(regions: Iterable[SpanSeconds]) -> list[SpanSeconds]:
    """Union of possibly overlapping regions: sorted, disjoint, touching regions joined."""
    merged: list[SpanSeconds] = []
    for region in sorted(regions, key=lambda r: (r.start, r.end)):
        if region.end <= region.start:
            continue
        if merged and region.start <= merged[-1].end:
            if region.end > merged[-1].end:
                merged[-1] = SpanSeconds(merged[-1].start, region.end)
        else:
            merged.append(region)
    return merged


def _parse_line(fields: list[str], where: str) -> tuple[str, SpanSeconds]:
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
    return fields[1], SpanSeconds(start, start + duration)


def read_rttm(path: str | Path, *, merge: bool = True) -> dict[str, list[SpanSeconds]]:
    """Speech regions per file id of an RTTM file.

    Args:
        path: the RTTM file.
        merge: True (default) returns speech, the union of all speakers' turns (sorted, disjoint);
            False returns every turn as written, sorted by start (overlapping turns kept; this is
            what pyannote.metrics places its collars around when given a multi-speaker reference).

    Raises:
        RttmError: a missing file or a malformed SPEAKER line (one line naming file and line).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise RttmError(f"cannot read RTTM file {path}: {e.strerror or e}") from None
    turns: dict[str, list[SpanSeconds]] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith(";;") or fields[0] != "SPEAKER":
            continue
        uri, region = _parse_line(fields, f"{path}:{number}")
        turns.setdefault(uri, []).append(region)
    if merge:
        return {uri: speech_support(regions) for uri, regions in turns.items()}
    return {uri: sorted(regions, key=lambda r: (r.start, r.end)) for uri, regions in turns.items()}


def to_rttm(regions: Mapping[str, Sequence[SpanSeconds]], label: str = "speech") -> str:
    """RTTM text: one SPEAKER line per region, times rounded to the millisecond."""
    lines, na = [], "<NA>"
    for uri, items in regions.items():
        if not uri or any(c.isspace() for c in uri):
            raise ValueError(f"RTTM file id must be non-empty without whitespace: {uri!r}")
        for r in items:
            start, duration = round(r.start, 3), round(r.end - r.start, 3)
            lines.append(
                f"SPEAKER {uri} 1 {start:.3f} {duration:.3f} {na} {na} {label} {na} {na}\n"
            )
    return "".join(lines)


def write_rttm(
    path: str | Path, regions: Mapping[str, Sequence[SpanSeconds]], label: str = "speech"
) -> Path:
    """Write `regions` (file id -> regions) to `path` atomically; returns the path."""
    path = Path(path)
    write_atomic(path, to_rttm(regions, label))
    return path
