"""Repetition guard: Whisper's failure mode on noise and music is a phrase looping on and on.

Applied only to windows whose text still fails the compression-ratio check after the whole
temperature ladder: a phrase repeated more than `keep` times in a row is cut back to `keep`
repeats, within a segment and across consecutive segments. Speech that really repeats a phrase
once or twice is left alone.
"""

from __future__ import annotations

from dataclasses import replace

from .types import Segment

MAX_PHRASE = 8  # longest phrase (in words) checked for loops


def collapse_words(words: list[str], keep: int = 2) -> list[str]:
    """Cut runs of a phrase (1..MAX_PHRASE words) repeated more than `keep` times to `keep`."""
    out = list(words)
    for n in range(1, MAX_PHRASE + 1):
        i = 0
        while i + n <= len(out):
            phrase = [w.lower().strip(".,!?") for w in out[i : i + n]]
            reps = 1
            while [
                w.lower().strip(".,!?") for w in out[i + reps * n : i + (reps + 1) * n]
            ] == phrase:
                reps += 1
            if reps > keep:
                del out[i + keep * n : i + reps * n]
            i += 1
    return out


def collapse_segments(segments: list[Segment], keep: int = 2) -> list[Segment]:
    """Drop segments repeating the previous `keep` texts; collapse loops inside each text."""
    kept: list[Segment] = []
    for s in segments:
        text = " ".join(collapse_words(s.text.split(), keep))
        norm = text.lower().strip()
        if len(kept) >= keep and all(k.text.lower().strip() == norm for k in kept[-keep:]):
            continue
        kept.append(replace(s, text=" " + text if text else ""))
    return kept
