"""`--align whisper`: words timed by Whisper's own cross-attention (no torch).

The token times come with the window records: the transcribe stage computes them while each
batch's encoder features are at hand (`TranscribeOptions.token_times`, `mlxwx.asr.timing`).
Here they become words (`mlxwx.align.words`: split at spaces, per character for languages
written without spaces, each timed by its tokens that are not punctuation), with the mean
probability of their tokens; given the input's audio, word starts near a pause move to its end
(`mlxwx.align.pauses`). A window without token times gets its words spread over its segments by
characters, flagged `interpolated`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..types import Result, Segment, TokenTimes, Window, Word
from .pauses import Pause, snap_to_pauses, window_pauses
from .words import limit_durations, split_sentences, split_words, untimed_words


def units(times: TokenTimes, first: int, count: int) -> list[tuple[str, tuple[int, ...]]]:
    """Tokens [first, first + count) of `times` as (text, tokens) units: each run of tokens
    ending with one that completes a character."""
    out: list[tuple[str, tuple[int, ...]]] = []
    run: list[int] = []
    for k in range(first, first + count):
        run.append(times.tokens[k])
        if times.texts[k] or k == first + count - 1:
            out.append((times.texts[k], tuple(run)))
            run = []
    return out


def timed_words(
    window: Window, pauses: Sequence[Pause] = (), language: str | None = None
) -> list[list[Word]]:
    """Each segment's words, timed from the window's `TokenTimes` on the input's timeline, their
    starts snapped onto the ends of nearby `pauses` (`mlxwx.align.pauses`)."""
    times = window.token_times
    assert times is not None
    at, out = 0, []
    for count in times.counts:
        words = []
        for piece in split_words(units(times, at, count), language or window.language):
            if not piece.text.strip():
                continue
            first, last = at + piece.first, at + piece.last
            start = window.to_file(times.spoken(first))
            end = window.to_file(times.spoken(last), end=True)
            score = float(np.mean(times.probs[first:last]))
            words.append(Word(piece.text.strip(), start, max(start, end), score))
        out.append(words)
        at += count
    flat = snap_to_pauses(limit_durations([w for ws in out for w in ws]), pauses)
    edges = np.cumsum([0, *(len(w) for w in out)]).tolist()
    return [flat[a:b] for a, b in itertools.pairwise(edges)]


def worded(window: Window, language: str | None, audio: np.ndarray | None = None) -> Window:
    """`window` with the words of each of its segments (snapped to the pauses of the input's
    `audio` when given)."""
    if window.token_times is None:
        words = [untimed_words(s, language) for s in window.segments]
    else:
        pauses = [] if audio is None or not window.spans else window_pauses(
            audio, window.spans[0].start, window.spans[-1].end
        )  # fmt: skip
        words = timed_words(window, pauses, language)
    segments = tuple(s.with_words(w) for s, w in zip(window.segments, words, strict=True))
    return replace(window, segments=segments)


def in_decoded_order(result: Result, windows: tuple[Window, ...]) -> tuple[Segment, ...]:
    """The segments of `windows` (`result`'s, worded) in the order of `result`'s segments, by
    their decoded starts: aligned starts could reorder a repeated or misplaced segment."""
    pairs = [
        (old.start, new)
        for before, after in sorted(zip(result.windows, windows, strict=True), key=_start)
        for old, new in zip(before.segments, after.segments, strict=True)
    ]
    return tuple(new for _, new in sorted(pairs, key=lambda p: p[0]))


def _start(pair: tuple[Window, Window]) -> float:
    return pair[0].start


def align_whisper(
    result: Result, sentences: bool = True, audio: np.ndarray | None = None
) -> Result:
    """`result` with every word of every segment timed from its windows' token times (a result
    without window records gets its words spread over its segments, flagged); with
    `sentences`, its segments cut at sentence ends (the window records keep the decoder's).
    `audio`: the input's samples, for word starts snapped onto the ends of pauses."""
    if not result.windows:
        segments = tuple(s.with_words(untimed_words(s, result.language)) for s in result.segments)
    else:
        windows = tuple(worded(w, result.language, audio) for w in result.windows)
        result, segments = replace(result, windows=windows), in_decoded_order(result, windows)
    if sentences:
        segments = tuple(p for s in segments for p in split_sentences(s))
    words = tuple(w for s in segments for w in s.words)
    return replace(result, segments=segments, word_segments=words)
