"""Words from timed tokens: splitting, punctuation, durations, interpolation.

Tokens split into words at spaces (per character for languages written without spaces); a word
is timed by its tokens that are not punctuation, from the first one's start to the start of the
token after the last one; a word of punctuation only is merged into its neighbour. Implausibly
long words at sentence ends are shortened as openai-whisper does. A word the aligner could not
time gets times interpolated from its neighbours (or spread over its segment by characters) and
is flagged, so every word has a start and an end.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..types import Segment, Word

PREPEND = "\"'“¿([{-"
APPEND = "\"'.。,，!！?？:：”)]}、"
SENTENCE_END = ".。!！?？"
NO_SPACES = {"zh", "ja", "th", "lo", "my", "yue"}
LONGEST_MEDIAN = 0.7  # seconds: the median word duration used for the limit is at most this


@dataclass
class Piece:
    """A word being built: its text and the indices of its tokens [first, last)."""

    text: str
    first: int
    last: int


def is_mark(text: str) -> bool:
    """Whether `text` is punctuation only (no sound of its own)."""
    bare = text.strip()
    return bool(bare) and all(c in string.punctuation or c in PREPEND + APPEND for c in bare)


def split_words(units: Sequence[tuple[str, tuple[int, ...]]], language: str | None) -> list[Piece]:
    """Words of (text, tokens) units (`Tokenizer.units` of a window's text tokens): a new word
    at each leading space (at every unit for languages written without spaces), so "$25",
    "example.com" and "it's" stay whole; a word is timed by its units that are not punctuation
    (openai-whisper splits at punctuation, then merges marks into words, keeping the words'
    own times); a word of punctuation only is merged into the next word (opening marks) or the
    previous one (the rest)."""
    words: list[list[tuple[str, int, int]]] = []
    at = 0
    for text, tokens in units:
        if not words or language in NO_SPACES or text.startswith(" "):
            words.append([])
        words[-1].append((text, at, at + len(tokens)))
        at += len(tokens)
    pieces = []
    for word in words:
        spoken = [u for u in word if not is_mark(u[0])] or word
        pieces.append(Piece("".join(u[0] for u in word), spoken[0][1], spoken[-1][2]))
    return merge_punctuation(pieces)


def merge_punctuation(pieces: list[Piece]) -> list[Piece]:
    """Opening marks joined to the next word, closing marks to the previous one (as
    openai-whisper does); a word keeps its own tokens' times, not its marks'."""
    out: list[Piece] = []
    for p in pieces:
        if out and not out[-1].text.endswith(" ") and p.text.strip() and p.text.strip() in APPEND:
            out[-1].text += p.text
        else:
            out.append(Piece(p.text, p.first, p.last))
    merged: list[Piece] = []
    for p in reversed(out):
        mark = p.text.startswith(" ") and p.text.strip() in PREPEND
        if merged and mark and p.text.strip():
            merged[-1].text = p.text + merged[-1].text
        else:
            merged.append(p)
    return merged[::-1]


def limit_durations(words: list[Word]) -> list[Word]:
    """Words at sentence ends longer than twice the median word duration (at most 0.7 s) end
    earlier, and a word after a sentence end that long starts later (openai-whisper)."""
    durations = [w.end - w.start for w in words if w.start is not None and w.end is not None]
    nonzero = [d for d in durations if d > 0]
    if not nonzero:
        return words
    longest = 2 * min(LONGEST_MEDIAN, float(np.median(nonzero)))
    out = list(words)
    for i in range(1, len(out)):
        w = out[i]
        assert w.start is not None and w.end is not None
        if w.end - w.start <= longest:
            continue
        if w.word.strip()[-1:] in SENTENCE_END:
            out[i] = replace(w, end=w.start + longest)
        elif out[i - 1].word.strip()[-1:] in SENTENCE_END:
            out[i] = replace(w, start=w.end - longest)
    return out


def interpolate(words: Sequence[Word], segment: Segment) -> list[Word]:
    """Every word timed: a word without times gets the gap between its timed neighbours (or the
    segment's edges), shared among the untimed words there by characters, and is flagged."""
    out = list(words)
    i = 0
    while i < len(out):
        if out[i].start is not None and out[i].end is not None:
            i += 1
            continue
        j = i
        while j < len(out) and (out[j].start is None or out[j].end is None):
            j += 1
        before = out[i - 1].end if i > 0 else None
        after = out[j].start if j < len(out) else None
        lo = segment.start if before is None else before
        hi = max(segment.end if after is None else after, lo)
        sizes = np.array([max(1, len(w.word.strip())) for w in out[i:j]], dtype=np.float64)
        edges = lo + (hi - lo) * np.concatenate([[0.0], np.cumsum(sizes) / sizes.sum()])
        for k in range(i, j):
            a, b = float(edges[k - i]), float(edges[k - i + 1])
            out[k] = replace(out[k], start=a, end=b, interpolated=True)
        i = j
    return out


ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "vol",
    "fig", "inc", "ltd", "co", "mt", "approx", "dept", "jan", "feb", "apr", "jun",
    "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "a.m", "p.m",
}  # fmt: skip


def ends_sentence(word: str) -> bool:
    """Whether `word` ends a sentence: its last mark (before closing quotes or brackets) is a
    full stop, question or exclamation mark, and it is not an abbreviation or an initial."""
    bare = word.rstrip("\"'”’)]}")
    if not bare or bare[-1] not in SENTENCE_END:
        return False
    if bare[-1] != ".":
        return True
    stem = bare.rstrip(".").lower()
    initial = len(stem) == 1 and stem.isalpha() and bare[:-1] != "I"  # "... did I." ends one
    return stem not in ABBREVIATIONS and not initial


def split_sentences(segment: Segment) -> list[Segment]:
    """`segment` cut after each word that ends a sentence (an offline rule, no model)."""
    cuts = [i + 1 for i, w in enumerate(segment.words[:-1]) if ends_sentence(w.word)]
    return segment.cut(cuts) if cuts else [segment]


def untimed_words(segment: Segment, language: str | None) -> list[Word]:
    """A segment's words with times spread over it by characters (flagged interpolated)."""
    text = segment.text.strip()
    parts = list(text.replace(" ", "")) if language in NO_SPACES else text.split()
    return interpolate([Word(p, None, None) for p in parts], segment)
