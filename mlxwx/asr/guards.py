"""Repetition guards: Whisper's failure mode on noise, music and some speech (digit strings) is
a phrase looping on and on.

While decoding (`looping_rows`, array ops over the batch): a row whose last LOOP_SPAN text tokens
repeat a phrase of at most LOOP_PERIOD tokens (the span equals itself shifted by the phrase's
length) is stopped at once, instead of running to the 224-token limit; its window counts as
failed and goes down the temperature ladder (`loop_at_end` finds the same loop in a result).

After decoding, in the text:

A phrase repeated more than `keep` times in a row is cut back to `keep` repeats, within a segment
and across consecutive segments. In a window whose text still fails the compression-ratio check
after the whole temperature ladder, phrases of any length; in every other window only phrases of
LOOP_WORDS words or more: a loop inside otherwise normal text passes the window-wide check (seen
on telephone speech: "I don't hear that." five times in a row), while people do say "no, no, no".
Speech that really repeats a phrase once or twice is left alone.

Words are groups of the decoder's (text, tokens) units, so a cut removes a word's text and its
tokens together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import mlx.core as mx
import numpy as np

MAX_PHRASE = 8  # longest phrase (in words) checked for loops
LOOP_PERIOD = 16  # longest phrase (tokens) stopped while decoding
LOOP_SPAN = 48  # text tokens of repeats that stop a row (a phrase of 16 tokens: 4 times in a row)
LOOP_HISTORY = LOOP_SPAN + LOOP_PERIOD  # text tokens each row keeps while decoding
LOOP_WORDS = 3  # shortest phrase cut back in windows that pass the quality checks

T = TypeVar("T")
Unit = tuple[str, tuple[int, ...]]  # text and the tokens it decodes from
Word = tuple[Unit, ...]


def fresh_history(rows: int) -> mx.array:
    """(rows, LOOP_HISTORY) history before any token: distinct negative values, never periodic."""
    return mx.broadcast_to(-1 - mx.arange(LOOP_HISTORY, dtype=mx.int32)[None], (rows, LOOP_HISTORY))


def looping_rows(history: mx.array) -> mx.array:
    """(rows,) bool: the rows whose last LOOP_SPAN text tokens (of `history`, (rows,
    LOOP_HISTORY), oldest first) repeat a phrase of 1..LOOP_PERIOD tokens."""
    tail = history[:, -LOOP_SPAN:]
    found = mx.zeros((history.shape[0],), mx.bool_)
    for n in range(1, LOOP_PERIOD + 1):
        found = found | mx.all(tail == history[:, -LOOP_SPAN - n : -n], axis=1)
    return found


def loop_at_end(tokens: Sequence[int], eot: int) -> bool:
    """Whether a window's text tokens (those below `eot`) end in a loop `looping_rows` stops."""
    text = np.array([t for t in tokens if t < eot][-LOOP_HISTORY:], np.int64)
    history = np.concatenate([-1 - np.arange(LOOP_HISTORY - len(text)), text])
    tail = history[-LOOP_SPAN:]
    return any(
        np.array_equal(tail, history[-LOOP_SPAN - n : -n]) for n in range(1, LOOP_PERIOD + 1)
    )


def _norm(word: str) -> str:
    return word.lower().strip(".,!?")


def collapse(
    items: Sequence[T], key: Callable[[T], str], keep: int = 2, shortest: int = 1
) -> list[T]:
    """Cut runs of a phrase (`shortest`..MAX_PHRASE items, compared by `key`) repeated more than
    `keep` times in a row back to `keep` repeats."""
    out = list(items)
    keys = [key(x) for x in out]
    for n in range(shortest, MAX_PHRASE + 1):
        i = 0
        while i + n <= len(out):
            phrase = keys[i : i + n]
            reps = 1
            while keys[i + reps * n : i + (reps + 1) * n] == phrase:
                reps += 1
            if reps > keep:
                del out[i + keep * n : i + reps * n]
                del keys[i + keep * n : i + reps * n]
            i += 1
    return out


def collapse_words(words: list[str], keep: int = 2, shortest: int = 1) -> list[str]:
    """`collapse` over words of text, compared case- and punctuation-insensitively."""
    return collapse(words, _norm, keep, shortest)


def words_of(units: Sequence[Unit]) -> list[Word]:
    """Units grouped into words, as `str.split` splits their text: a word starts at a unit whose
    text starts with whitespace; units of whitespace only join the word that follows."""
    words: list[list[Unit]] = []
    lead: list[Unit] = []  # whitespace waiting for the next word
    for unit in units:
        if not unit[0].strip():
            lead.append(unit)
        elif not words or lead or unit[0][0].isspace():
            words.append([*lead, unit])
            lead = []
        else:
            words[-1].append(unit)
    if lead:
        words.append(lead)
    return [tuple(w) for w in words]


def word_key(word: Word) -> str:
    return _norm("".join(u[0] for u in word).strip())


def collapse_segments(
    segments: Sequence[list[Word]], keep: int = 2, shortest: int = 1
) -> list[tuple[int, list[Word]]]:
    """Segments (as words) with loops collapsed inside each, and segments that repeat the
    previous `keep` kept texts (of `shortest` words or more) dropped: (index, words) of each
    segment kept."""
    kept: list[tuple[int, list[Word]]] = []
    norms: list[str] = []
    for i, words in enumerate(segments):
        cut = collapse(words, word_key, keep, shortest)
        norm = " ".join(k for k in map(word_key, cut) if k)
        if len(cut) >= shortest and len(norms) >= keep and set(norms[-keep:]) == {norm}:
            continue
        kept.append((i, cut))
        norms.append(norm)
    return kept
