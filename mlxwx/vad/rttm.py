"""RTTM speech regions: read a reference (speech = union of every speaker's turns), write regions.

RTTM lines read here: `SPEAKER <file-id> <channel> <start> <duration> <NA> <NA> <name> <NA> <NA>`
(whitespace-separated, times in seconds). Other record types and `;;` comments are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mlxwx.rttm import RttmError, read_turns
from mlxwx.rttm import to_rttm as turns_rttm
from mlxwx.types import Turn
from mlxwx.vad.base import SpanSeconds
from mlxwx.writers import write_atomic

__all__ = ["RttmError", "read_rttm", "speech_support", "to_rttm", "write_rttm"]


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
    turns = {
        uri: [SpanSeconds(t.start, t.end) for t in found] for uri, found in read_turns(path).items()
    }
    if merge:
        return {uri: speech_support(regions) for uri, regions in turns.items()}
    return {uri: sorted(regions, key=lambda r: (r.start, r.end)) for uri, regions in turns.items()}


def to_rttm(regions: Mapping[str, Sequence[SpanSeconds]], label: str = "speech") -> str:
    """RTTM text: one SPEAKER line per region, times rounded to the millisecond."""
    return turns_rttm(
        {uri: [Turn(r.start, r.end, label) for r in rs] for uri, rs in regions.items()}
    )


def write_rttm(
    path: str | Path, regions: Mapping[str, Sequence[SpanSeconds]], label: str = "speech"
) -> Path:
    """Write `regions` (file id -> regions) to `path` atomically; returns the path."""
    path = Path(path)
    write_atomic(path, to_rttm(regions, label))
    return path
