"""`--align whisper`: words timed by Whisper's own cross-attention (no torch).

The token times come with the window records: the transcribe stage computes them while each
batch's encoder features are at hand (`TranscribeOptions.token_times`, `mlxwx.asr.timing`).
Here they become words: split at spaces and punctuation (per character for languages written
without spaces), punctuation merged into its neighbours, each word from its first token's start
to its last token's end, with the mean probability of its tokens. A window without token times
gets its words spread over its segments by characters, flagged `interpolated`.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from ..types import Result, Segment, TokenTimes, Window, Word
from .words import NO_SPACES, interpolate, limit_durations, split_sentences, split_words


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


def timed_words(window: Window) -> list[list[Word]]:
    """Each segment's words, timed from the window's `TokenTimes` on the input's timeline."""
    times = window.token_times
    assert times is not None
    at, out = 0, []
    for count in times.counts:
        words = []
        for piece in split_words(units(times, at, count), window.language):
            if not piece.text.strip():
                continue
            first, last = at + piece.first, at + piece.last
            start = window.to_file(times.starts[first])
            end = window.to_file(times.starts[last], end=True)
            score = float(np.mean(times.probs[first:last]))
            words.append(Word(piece.text.strip(), start, max(start, end), score))
        out.append(words)
        at += count
    flat = limit_durations([w for ws in out for w in ws])
    edges = np.cumsum([0, *(len(w) for w in out)]).tolist()
    return [flat[a:b] for a, b in itertools.pairwise(edges)]


def untimed_words(segment: Segment, language: str | None) -> list[Word]:
    """A segment's words with times spread over it by characters (flagged interpolated)."""
    text = segment.text.strip()
    parts = list(text.replace(" ", "")) if language in NO_SPACES else text.split()
    return interpolate([Word(p, None, None) for p in parts], segment)


def with_words(segment: Segment, words: list[Word]) -> Segment:
    """`segment` holding `words`; its times become theirs (first start, last end)."""
    if not words:
        return segment
    start, end = words[0].start, words[-1].end
    assert start is not None and end is not None
    return replace(segment, start=start, end=max(end, start), words=tuple(words))


def worded(window: Window, language: str | None) -> Window:
    """`window` with the words of each of its segments."""
    if window.token_times is None:
        words = [untimed_words(s, language) for s in window.segments]
    else:
        words = timed_words(window)
    segments = tuple(with_words(s, w) for s, w in zip(window.segments, words, strict=True))
    return replace(window, segments=segments)


def align_whisper(result: Result, sentences: bool = True) -> Result:
    """`result` with every word of every segment timed from its windows' token times (a result
    without window records gets its words spread over its segments, flagged); with
    `sentences`, its segments cut at sentence ends (the window records keep the decoder's)."""
    if not result.windows:
        segments = tuple(with_words(s, untimed_words(s, result.language)) for s in result.segments)
    else:
        windows = tuple(worded(w, result.language) for w in result.windows)
        built = Result.from_windows(windows, result.language, result.duration, result.source)
        result, segments = built, built.segments
    if sentences:
        segments = tuple(p for s in segments for p in split_sentences(s, result.language))
    words = tuple(w for s in segments for w in s.words)
    return replace(result, segments=segments, word_segments=words)
