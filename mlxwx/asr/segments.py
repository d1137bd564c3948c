"""Window records and their segments, built in one place from what a window decoded.

A window's tokens split into segments at Whisper's timestamp pairs; the repetition guard cuts
loops (text and tokens together); segment times are put on the input's timeline through the
chunk the window was read from. The seek rule (how far the lane moves on) comes out of the same
split.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..audio import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE
from ..types import AudioChunk, Segment, Window
from .decoding import TIME_PRECISION, DecodingResult
from .guards import LOOP_WORDS, Unit, collapse_segments, words_of

FRAMES_PER_TOKEN = round(TIME_PRECISION * SAMPLE_RATE / HOP_LENGTH)  # 2 mel frames per 0.02 s


@dataclass(frozen=True)
class Thresholds:
    """The quality checks that decide fallback and silence (see `TranscribeOptions`)."""

    compression_ratio: float | None = 2.4
    logprob: float | None = -1.0
    no_speech: float | None = 0.6

    def is_silence(self, r: DecodingResult) -> bool:
        """A window judged silent: no-speech probability above its threshold with a log-prob
        below its threshold (either check None: never silent)."""
        return (
            self.no_speech is not None
            and r.no_speech_prob > self.no_speech
            and self.logprob is not None
            and r.avg_logprob < self.logprob
        )

    def repetitive(self, r: DecodingResult) -> bool:
        return self.compression_ratio is not None and r.compression_ratio > self.compression_ratio

    def needs_fallback(self, r: DecodingResult) -> bool:
        if self.is_silence(r):
            return False
        unlikely = self.logprob is not None and r.avg_logprob < self.logprob
        return self.repetitive(r) or unlikely or r.looped


def split_units(
    units: tuple[Unit, ...], ts_begin: int, window: float
) -> tuple[list[tuple[float, float, list[Unit]]], int]:
    """Segments of a window's units, (start, end, units) in seconds from the window start, and
    how many mel frames the lane advances (the seek rule): a segment ends at each pair of
    consecutive timestamps; after a last segment left open, the lane moves to where the last
    complete one ended."""

    def ts(i: int) -> bool:
        return units[i][1][0] >= ts_begin

    def time(unit: Unit) -> float:
        return (unit[1][0] - ts_begin) * TIME_PRECISION

    n = len(units)
    pairs = [i for i in range(1, n) if ts(i - 1) and ts(i)]
    single_end = n >= 2 and ts(n - 1) and not ts(n - 2)
    full = round(window * SAMPLE_RATE / HOP_LENGTH)
    if not pairs:
        stamps = [u for i, u in enumerate(units) if ts(i)]
        end = time(stamps[-1]) if stamps and stamps[-1][1][0] != ts_begin else window
        return [(0.0, min(end, window), list(units))], full
    cuts = [*pairs, n] if single_end else pairs
    segments, last = [], 0
    for cut in cuts:
        part = list(units[last:cut])
        start = time(part[0]) if ts(last) else 0.0
        end = time(part[-1]) if ts(cut - 1) else window
        segments.append((start, min(end, window), part))
        last = cut
    advance = full if single_end else (units[last - 1][1][0] - ts_begin) * FRAMES_PER_TOKEN
    return segments, advance if advance > 0 else full


def _guarded(
    parts: list[tuple[float, float, list[Unit]]], ts_begin: int, shortest: int
) -> list[tuple[float, float, list[Unit]]]:
    """`parts` with loops cut by the repetition guard; each part's timestamps stay at its ends."""
    edges, texts = [], []
    for _, _, units in parts:
        head = [u for u in units[:1] if u[1][0] >= ts_begin]
        tail = [u for u in units[len(head) :][-1:] if u[1][0] >= ts_begin]
        edges.append((head, tail))
        texts.append(words_of(units[len(head) : len(units) - len(tail)]))
    kept = collapse_segments(texts, shortest=shortest)
    out = []
    for i, words in kept:
        if words == texts[i]:
            out.append(parts[i])
            continue
        head, tail = edges[i]
        out.append((parts[i][0], parts[i][1], [*head, *(u for w in words for u in w), *tail]))
    return out


def build_window(
    result: DecodingResult,
    chunk: AudioChunk,
    pos: int,
    ts_begin: int,
    thresholds: Thresholds,
) -> tuple[Window, int]:
    """The record of the window decoded from chunk samples [pos, pos + 30 s), and the samples
    its lane advances. A silent window has no segments; segments without text are dropped."""
    length = min(N_SAMPLES, chunk.length - pos)
    record = Window(
        chunk.file,
        chunk.file_spans(pos, pos + length),
        result.language,
        (),
        result.temperature,
        result.avg_logprob,
        result.no_speech_prob,
        result.compression_ratio,
    )
    if thresholds.is_silence(result):
        return record, N_SAMPLES
    parts, frames = split_units(result.units, ts_begin, length / SAMPLE_RATE)
    # after the whole ladder: cut loops of any length
    failed = thresholds.repetitive(result) or result.looped
    parts = _guarded(parts, ts_begin, 1 if failed else LOOP_WORDS)
    offset, end = pos / SAMPLE_RATE, chunk.length / SAMPLE_RATE
    segments = []
    for start, stop, units in parts:
        text = "".join(u[0] for u in units)
        if not text.strip():
            continue
        segments.append(
            Segment(
                start=chunk.to_file(offset + start),
                end=chunk.to_file(min(offset + stop, end), end=True),
                text=text,
                tokens=tuple(t for u in units for t in u[1]),
                avg_logprob=result.avg_logprob,
                no_speech_prob=result.no_speech_prob,
                compression_ratio=result.compression_ratio,
                temperature=result.temperature,
            )
        )
    # a window that looped to the end is not decoded again from its last timestamp
    return replace(
        record, segments=tuple(segments)
    ), N_SAMPLES if result.looped else frames * HOP_LENGTH
