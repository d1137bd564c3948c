"""Repetition guard: Whisper's failure mode on noise and music is a phrase looping on and on.

A phrase repeated more than `keep` times in a row is cut back to `keep` repeats, within a segment
and across consecutive segments. In a window whose text still fails the compression-ratio check
after the whole temperature ladder, phrases of any length; in every other window only phrases of
LOOP_WORDS words or more: a loop inside otherwise normal text passes the window-wide check (seen
on telephone speech: "I don't hear that." five times in a row), while people do say "no, no, no".
Speech that really repeats a phrase once or twice is left alone.
"""

from __future__ import annotations

from dataclasses import replace

from .types import Segment

MAX_PHRASE = 8  # longest phrase (in words) checked for loops
LOOP_WORDS = 3  # shortest phrase cut back in windows that pass the quality checks


def _norm(word: str) -> str:
    return word.lower().strip(".,!?")


def collapse_words(words: list[str], keep: int = 2, shortest: int = 1) -> list[str]:
    """Cut runs of a phrase (`shortest`..MAX_PHRASE words) repeated more than `keep` times to
    `keep`."""
    out = list(words)
    for n in range(shortest, MAX_PHRASE + 1):
        i = 0
        while i + n <= len(out):
            phrase = [_norm(w) for w in out[i : i + n]]
            reps = 1
            while [_norm(w) for w in out[i + reps * n : i + (reps + 1) * n]] == phrase:
                reps += 1
            if reps > keep:
                del out[i + keep * n : i + reps * n]
            i += 1
    return out


def collapse_segments(segments: list[Segment], keep: int = 2, shortest: int = 1) -> list[Segment]:
    """Drop segments repeating the previous `keep` texts (of `shortest` words or more); collapse
    loops inside each text. Segments with nothing to cut are returned as they are."""
    kept: list[Segment] = []
    norms: list[str] = []
    for s in segments:
        words = s.text.split()
        cut = collapse_words(words, keep, shortest)
        norm = " ".join(map(_norm, cut))
        if len(cut) >= shortest and len(norms) >= keep and set(norms[-keep:]) == {norm}:
            continue
        kept.append(s if cut == words else replace(s, text=" " + " ".join(cut) if cut else ""))
        norms.append(norm)
    return kept
