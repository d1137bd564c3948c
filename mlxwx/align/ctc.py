"""CTC forced alignment in numpy: where each token of a known transcript lies in frame emissions.

The Viterbi path of a token sequence through (T, C) frame log-probabilities, over the CTC
topology: the tokens with a blank before, between and after them (S = 2N + 1 states); a frame
stays in its state, moves to the next, or skips the blank between two different tokens. A
repeated token needs a blank frame between its two copies, so N tokens need at least
N + (number of adjacent repeats) frames. (WhisperX uses the torchaudio tutorial's simpler
trellis, where a token is emitted on one frame and its following blank frames count as its own;
here a token spans the frames that emit it, as `torchaudio.functional.forced_align` does.)

Characters outside a model's vocabulary are the `WILDCARD` token, scored on each frame by the
best non-blank column (WhisperX's wildcard), so digits and symbols keep the path in place. Word
times come from their characters' frames; wildcard characters do not time a word.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import mlx.core as mx
import numpy as np

from .. import kernels
from ..types import CharTime, Word

WILDCARD = -1  # token id of a character outside the vocabulary
INTERPOLATIONS = ("nearest", "linear", "ignore")
PRECISIONS = ("auto", "float32", "float16", "bfloat16")  # of the model run (wav2vec2)
Ids = Sequence[int] | np.ndarray  # token, position or word ids
Prepared = tuple[int, np.ndarray, np.ndarray, np.ndarray]  # index, emission, labels, skips
# Paths on a GPU by `mlxwx.kernels.ctc_path_kernel`: off until the kernel has run on a GPU
# against numpy (tests/test_kernels.py there; its body runs as C++ on any CPU in the tests).
GPU_PATHS = False


@dataclass(frozen=True)
class TokenSpan:
    """Frames [start, end) that emit one token; score: its mean probability over them."""

    start: int
    end: int
    score: float


def wildcard_emission(emission: np.ndarray, blank: int) -> np.ndarray:
    """(T,) log-probability of the wildcard on each frame: max over the non-blank columns of
    the (T, C) `emission`."""
    return np.delete(emission, blank, axis=1).max(axis=1)


def min_frames(tokens: Ids) -> int:
    """Fewest frames that can emit `tokens`: one per token plus a blank between repeats."""
    t = np.asarray(tokens)
    return int(len(t) + np.count_nonzero(t[1:] == t[:-1]))


def _states(tokens: np.ndarray, blank: int) -> tuple[np.ndarray, np.ndarray]:
    """The (S,) labels of the CTC states (blank, t0, blank, t1, ..., blank) and where a path may
    skip the blank before a state (a token differing from the one before it)."""
    labels = np.full(2 * len(tokens) + 1, blank, dtype=np.int64)
    labels[1::2] = tokens
    skip = np.zeros(len(labels), dtype=bool)
    skip[3::2] = tokens[1:] != tokens[:-1]
    return labels, skip


def trellis(
    scores: Sequence[np.ndarray], skips: Sequence[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Viterbi over the CTC states of several alignments at once: alpha_t(s) = e_t(s) +
    max(alpha_{t-1}(s), alpha_{t-1}(s-1), alpha_{t-1}(s-2) if skip[s]), with alpha_0 finite
    only at s = 0, 1. scores[b]: (T_b, S_b) log-probability of each state's label on each frame.

    Returns per alignment its back-steps, two (T_b, S_b) bool arrays (one state back; two states
    back, which wins over the first), and its (S_b,) alpha at its last frame, in float32. One
    pass of six numpy operations per frame, into buffers allocated once, over the alignments
    still running (rows ordered by frame count, so those are the last rows) and all their
    states, padded to the most (padded states are unreachable: paths only move up). Alpha lives
    behind two columns of -inf that stand for the states before the first; a state's skip is
    an additive 0 or -inf.
    """
    n_frames = np.array([len(e) for e in scores])
    order = np.argsort(n_frames, kind="stable")  # row r holds alignment order[r]
    size, frames, states = len(scores), int(n_frames.max()), max(e.shape[1] for e in scores)
    emit = np.full((frames, size, states), -np.inf, np.float32)
    skip_cost = np.full((size, states), -np.inf, np.float32)
    for r, b in enumerate(order.tolist()):
        emit[: len(scores[b]), r, : scores[b].shape[1]] = scores[b]
        skip_cost[r, : len(skips[b])][skips[b]] = 0.0
    ones, twos = np.zeros((2, frames, size, states), dtype=bool)
    alpha = np.full((2, size, states + 2), -np.inf, np.float32)  # [t % 2, row, 2 + s]
    alpha[0, :, 2:4] = emit[0, :, :2]
    final = np.empty((size, states), np.float32)
    # rows [first[t], size) have more than t frames; those below first[t + 1] end at frame t
    first = np.searchsorted(n_frames[order], np.arange(frames + 1), side="right").tolist()
    best, back2 = np.empty((size, states), np.float32), np.empty((size, states), np.float32)
    for t in range(frames):  # ties go to the fewest states back
        lo = first[t]
        prev, here = alpha[(t - 1) % 2, lo:], alpha[t % 2, lo:]
        if t > 0:
            stay, back1, b2, m = prev[:, 2:], prev[:, 1:-1], back2[lo:], best[lo:]
            np.add(prev[:, :-2], skip_cost[lo:], out=b2)
            np.greater(back1, stay, out=ones[t, lo:])
            np.maximum(stay, back1, out=m)
            np.greater(b2, m, out=twos[t, lo:])
            np.maximum(m, b2, out=m)
            np.add(m, emit[t, lo:], out=here[:, 2:])
        final[lo : first[t + 1]] = here[: first[t + 1] - lo, 2:]
    row = np.empty(size, dtype=np.int64)
    row[order] = np.arange(size)
    return [
        (ones[: len(e), r, : e.shape[1]], twos[: len(e), r, : e.shape[1]], final[r, : e.shape[1]])
        for e, r in zip(scores, row.tolist(), strict=True)
    ]


def backtrack(ones: np.ndarray, twos: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
    """(T,) state of each frame on the best path ending in the last token or the blank after
    it (`trellis`'s back-steps and last alpha); None when no path reaches the end (too few
    frames, or -inf emissions)."""
    n_frames, n_states = ones.shape
    state = n_states - 1 if alpha[-1] >= alpha[-2] else n_states - 2
    if not np.isfinite(alpha[state]):
        return None
    path = np.empty(n_frames, dtype=np.int64)
    for t in range(n_frames - 1, 0, -1):
        path[t] = state
        state -= 2 if twos[t, state] else int(ones[t, state])
    path[0] = state
    return path


def path_spans(path: np.ndarray, emission: np.ndarray, labels: np.ndarray) -> list[TokenSpan]:
    """Each token's frames on `path` (one contiguous run per token) and its mean probability."""
    frames = np.flatnonzero(path % 2 == 1)
    token = path[frames] // 2
    first = np.flatnonzero(np.r_[True, token[1:] != token[:-1]])
    count = np.diff(np.r_[first, len(frames)])
    probs = np.exp(emission[frames, labels[path[frames]]].astype(np.float64))
    means = np.add.reduceat(probs, first) / count
    starts, ends = frames[first], frames[first + count - 1] + 1
    spans = zip(starts.tolist(), ends.tolist(), means.tolist(), strict=True)
    return [TokenSpan(a, b, m) for a, b, m in spans]


def forced_align(emission: np.ndarray, tokens: Ids, blank: int = 0) -> list[TokenSpan] | None:
    """One `TokenSpan` per token of `tokens` on the best CTC path through `emission`.

    emission: (T, C) float32 log-probabilities. tokens: column ids, or `WILDCARD` for a
    character outside the vocabulary (scored by `wildcard_emission`; two in a row count as a
    repeat). Returns None when the tokens cannot fit in T frames (`min_frames`) or no path has
    a finite score; [] for no tokens. Raises ValueError for the blank or an unknown column.
    """
    return forced_align_batch([emission], [tokens], blank)[0]


def forced_align_batch(
    emissions: Sequence[np.ndarray], tokens: Sequence[Ids], blank: int = 0
) -> list[list[TokenSpan] | None]:
    """`forced_align` of each emission with its tokens, the trellises swept together."""
    out: list[list[TokenSpan] | None] = [None] * len(emissions)
    todo: list[Prepared] = []
    for k, (emission, ids) in enumerate(zip(emissions, tokens, strict=True)):
        prepared = _prepare(np.asarray(emission), np.asarray(ids, dtype=np.int64), blank)
        if isinstance(prepared, list):
            out[k] = prepared
        elif prepared is not None:
            todo.append((k, *prepared))
    if not todo:
        return out
    for (k, emission, labels, _), path in zip(todo, _paths(todo), strict=True):
        out[k] = None if path is None else path_spans(path, emission, labels)
    return out


def _paths(todo: Sequence[Prepared]) -> list[np.ndarray | None]:
    """Each prepared alignment's best path (`backtrack`): on a GPU by one kernel launch for
    all of them (`mlxwx.kernels.ctc_path_kernel`, the same path), else by numpy."""
    backend = kernels.kernel_backend() if GPU_PATHS else None
    states = max(len(labels) for _, _, labels, _ in todo) if backend else 0
    if backend is not None and states <= kernels.CTC_MAX_STATES:
        return _paths_kernel(todo, backend)
    scores = [emission[:, labels] for _, emission, labels, _ in todo]
    swept = trellis(scores, [skip for *_, skip in todo])
    return [backtrack(ones, twos, alpha) for ones, twos, alpha in swept]


def _paths_kernel(todo: Sequence[Prepared], backend: str) -> list[np.ndarray | None]:
    """`_paths` by the GPU kernel, all alignments in one launch."""
    arrays = kernel_inputs(todo)
    path, score = kernels.ctc_path_kernel(*(mx.array(a) for a in arrays), backend=backend)
    paths, scores = np.array(path), np.array(score)
    return [
        paths[r, :n].astype(np.int64) if np.isfinite(scores[r]) else None
        for r, n in enumerate(arrays[3][:, 0].tolist())
    ]


def kernel_inputs(todo: Sequence[Prepared]) -> tuple[np.ndarray, ...]:
    """The CTC path kernel's inputs for prepared alignments, padded into one batch: emissions
    (B, T, C) float32, labels and skips (B, S) int32, dims (B, 2) int32 (frames, states)."""
    size = len(todo)
    frames = max(len(emission) for _, emission, _, _ in todo)
    columns = max(emission.shape[1] for _, emission, _, _ in todo)
    states = max(len(labels) for _, _, labels, _ in todo)
    emit = np.zeros((size, frames, columns), np.float32)
    labels_skips = np.zeros((2, size, states), np.int32)
    dims = np.zeros((size, 2), np.int32)
    for r, (_, emission, labels, skip) in enumerate(todo):
        emit[r, : len(emission), : emission.shape[1]] = emission
        labels_skips[:, r, : len(labels)] = labels, skip
        dims[r] = len(emission), len(labels)
    return emit, labels_skips[0], labels_skips[1], dims


def _prepare(
    emission: np.ndarray, ids: np.ndarray, blank: int
) -> list[TokenSpan] | tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """An alignment's emission (with a wildcard column where needed), state labels and skips;
    [] for no tokens, None for too few frames; ValueError for a bad token id."""
    if len(ids) == 0:
        return []
    n_columns = emission.shape[1]
    if np.any((ids < WILDCARD) | (ids >= n_columns)) or np.any(ids == blank):
        raise ValueError(f"token ids must be non-blank columns of {n_columns} or WILDCARD")
    if min_frames(ids) > len(emission):
        return None
    if np.any(ids == WILDCARD):
        emission = np.concatenate([emission, wildcard_emission(emission, blank)[:, None]], axis=1)
        ids = np.where(ids == WILDCARD, n_columns, ids)
    labels, skip = _states(ids, blank)
    return emission, labels, skip


def word_ranges(text: str, by_char: bool = False) -> list[tuple[int, int]]:
    """Character ranges [start, end) of the words of `text`: its space-separated parts, or each
    non-space character (`by_char`, for languages written without spaces)."""
    pattern = r"\S" if by_char else r"\S+"
    return [m.span() for m in re.finditer(pattern, text)]


def encode_chars(
    text: str, vocab: Mapping[str, int], delimiter: str | None = "|", by_char: bool = False
) -> tuple[list[int], list[int]]:
    """The tokens of `text` for a character CTC model, and the position in `text` of each.

    Characters are lower-cased and looked up in `vocab` (lower-case keys); one outside it is
    `WILDCARD`. Each run of spaces between words is one `delimiter` token when the vocabulary
    has it (and not `by_char`), else nothing; leading and trailing spaces are dropped.
    """
    tokens: list[int] = []
    positions: list[int] = []
    gap = delimiter is not None and delimiter in vocab and not by_char
    words = word_ranges(text)
    for k, (a, b) in enumerate(words):
        if gap and k > 0:
            tokens.append(vocab[delimiter])  # type: ignore[index]
            positions.append(words[k - 1][1])
        for i in range(a, b):
            low = text[i].lower()
            tokens.append(vocab.get(low if len(low) == 1 else text[i], WILDCARD))
            positions.append(i)
    return tokens, positions


def word_spans(spans: Sequence[TokenSpan], word_ids: Ids, n_words: int) -> list[TokenSpan | None]:
    """Per word: from its tokens' first start to their last end, score their mean score; None
    for a word with no tokens. word_ids[i]: the word of token i, or -1 for a token that times
    no word (a delimiter, a wildcard)."""
    ids = np.asarray(word_ids, dtype=np.int64)
    keep = ids >= 0
    ids = ids[keep]
    starts = np.array([s.start for s in spans], dtype=np.int64)[keep]
    ends = np.array([s.end for s in spans], dtype=np.int64)[keep]
    scores = np.array([s.score for s in spans], dtype=np.float64)[keep]
    first = np.full(n_words, np.iinfo(np.int64).max)
    last = np.full(n_words, -1)
    np.minimum.at(first, ids, starts)
    np.maximum.at(last, ids, ends)
    count = np.bincount(ids, minlength=n_words)
    mean = np.bincount(ids, weights=scores, minlength=n_words) / np.maximum(count, 1)
    return [
        TokenSpan(int(first[w]), int(last[w]), float(mean[w])) if count[w] else None
        for w in range(n_words)
    ]


def words_from_chars(
    text: str,
    tokens: Ids,
    positions: Ids,
    spans: Sequence[TokenSpan] | None,
    seconds_per_frame: float,
    offset: float = 0.0,
    by_char: bool = False,
    with_chars: bool = True,
) -> tuple[list[Word], list[CharTime]]:
    """Words of `text` (see `word_ranges`) timed by their characters' spans, and every character.

    tokens, positions: from `encode_chars`; spans: `forced_align` of those tokens (None: the
    alignment failed, nothing is timed). Seconds = offset + frame * seconds_per_frame. A word's
    wildcard characters do not count toward its times or score; a word with nothing else is
    untimed (start, end and score None). Characters keep their own span, wildcards included;
    none are listed unless `with_chars`.
    """
    ranges = word_ranges(text, by_char)
    owner = np.full(len(text) + 1, -1, dtype=np.int64)
    for w, (a, b) in enumerate(ranges):
        owner[a:b] = w
    pos = np.asarray(positions, dtype=np.int64)
    word_ids = np.where(np.asarray(tokens, dtype=np.int64) == WILDCARD, -1, owner[pos])
    timed = word_spans(spans, word_ids, len(ranges)) if spans else [None] * len(ranges)

    def sec(frame: int) -> float:
        return offset + frame * seconds_per_frame

    words = [
        Word(text[a:b], sec(s.start), sec(s.end), s.score) if s else Word(text[a:b], None, None)
        for (a, b), s in zip(ranges, timed, strict=True)
    ]
    if not with_chars:
        return words, []
    at = dict(zip(pos.tolist(), spans, strict=True)) if spans is not None else {}
    chars = [
        CharTime(c, sec(at[i].start), sec(at[i].end), at[i].score)
        if i in at
        else CharTime(c, None, None, None)
        for i, c in enumerate(text)
    ]
    return words, chars


def interpolate_words(words: Sequence[Word], method: str = "nearest") -> list[Word]:
    """Untimed words timed from the timed ones by word index (WhisperX's `interpolate_nans`):
    "nearest" copies the start and end of the nearest timed word (the earlier one on a tie),
    "linear" interpolates starts and ends between the timed words around (copies them past the
    first or last), "ignore" leaves them untimed. Filled words are flagged `interpolated`; with
    no timed word nothing changes."""
    if method not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {method!r}; choose from {INTERPOLATIONS}")
    known = np.array([i for i, w in enumerate(words) if w.start is not None])
    if method == "ignore" or len(known) in (0, len(words)):
        return list(words)
    starts = np.array([words[i].start for i in known], dtype=np.float64)
    ends = np.array([words[i].end for i in known], dtype=np.float64)
    out = list(words)
    for i, w in enumerate(words):
        if w.start is not None:
            continue
        if method == "linear":
            start, end = np.interp(i, known, starts), np.interp(i, known, ends)
        else:
            k = int(np.argmin(np.abs(known - i)))  # the first of two at the same distance
            start, end = starts[k], ends[k]
        out[i] = replace(w, start=float(start), end=float(end), score=None, interpolated=True)
    return out
