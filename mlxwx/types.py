"""Typed records passed between stages; `Result.to_dict` is WhisperX's JSON schema.

Stretches of audio are named by their unit: `SpanSamples` (16 kHz samples) or `SpanSeconds`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

SAMPLE_RATE = 16000  # Hz: the one rate of every stage (Whisper's, the VADs')


@dataclass(frozen=True)
class SpanSamples:
    """Samples [start, end) of an input at SAMPLE_RATE."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SpanSeconds:
    """A stretch of an input's timeline, in seconds."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def _offsets(spans: tuple[SpanSamples, ...]) -> list[int]:
    out = [0]
    for p in spans[:-1]:
        out.append(out[-1] + p.length)
    return out


def to_timeline(spans: tuple[SpanSamples, ...], t: float, *, end: bool = False) -> float:
    """Seconds into `spans` concatenated -> seconds on the input's timeline. A time on the seam
    of two spans belongs to the later one, or to the earlier one with `end=True`."""
    offsets = [o / SAMPLE_RATE for o in _offsets(spans)]
    i = (bisect.bisect_left if end else bisect.bisect_right)(offsets, t) - 1
    i = min(max(i, 0), len(spans) - 1)
    return spans[i].start / SAMPLE_RATE + (t - offsets[i])


def _r(t: float) -> float:
    return round(t, 3)


def _timed(
    out: dict[str, Any], start: float | None, end: float | None, score: float | None
) -> dict[str, Any]:
    """`out` with the start, end (when both are known) and score of a word or character, as
    WhisperX writes them."""
    if start is not None and end is not None:
        out.update(start=_r(start), end=_r(end))
    if score is not None:
        out["score"] = round(score, 3)
    return out


def _speaker(out: dict[str, Any], speaker: str | None, overlap: bool) -> dict[str, Any]:
    """`out` with the speaker of a word or segment, and `"overlap": true` in overlapped speech."""
    if speaker is not None:
        out["speaker"] = speaker
    if overlap:
        out["overlap"] = True
    return out


@dataclass(frozen=True)
class Turn:
    """A speaker's turn: `speaker` talks from `start` to `end` (seconds on the input's
    timeline). Turns of different speakers may overlap."""

    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class Word:
    word: str
    start: float | None
    end: float | None
    score: float | None = None
    speaker: str | None = None
    interpolated: bool = False  # timed from its neighbours: the aligner could not time it
    overlap: bool = False  # spoken (mostly) while two or more speakers talk at once

    def to_dict(self) -> dict[str, Any]:
        out = _timed({"word": self.word}, self.start, self.end, self.score)
        if self.interpolated:
            out["interpolated"] = True
        return _speaker(out, self.speaker, self.overlap)


@dataclass(frozen=True)
class CharTime:
    """One character of a transcript, timed in seconds (None: the aligner gave it no frames)."""

    char: str
    start: float | None
    end: float | None
    score: float | None

    def to_dict(self) -> dict[str, Any]:
        return _timed({"char": self.char}, self.start, self.end, self.score)


@dataclass(frozen=True)
class Segment:
    """A stretch of transcript; times in seconds on the input's timeline."""

    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0
    words: tuple[Word, ...] = ()
    speaker: str | None = None
    chars: tuple[CharTime, ...] = ()  # with --return-char-alignments (wav2vec2)
    overlap: bool = False  # (mostly) overlapped speech, by the speaker turns

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start": _r(self.start),
            "end": _r(self.end),
            "text": self.text,
            "words": [w.to_dict() for w in self.words],
            "avg_logprob": round(self.avg_logprob, 4),
            "no_speech_prob": round(self.no_speech_prob, 4),
            "compression_ratio": round(self.compression_ratio, 3),
            "temperature": self.temperature,
        }
        _speaker(out, self.speaker, self.overlap)
        if self.chars:
            out["chars"] = [c.to_dict() for c in self.chars]
        return out

    def with_words(self, words: Sequence[Word]) -> Segment:
        """This segment holding `words`; its times become theirs (first start, last end) when
        they have times."""
        starts = [w.start for w in words if w.start is not None]
        ends = [w.end for w in words if w.end is not None]
        if not starts or not ends:
            return replace(self, words=tuple(words))
        return replace(self, start=starts[0], end=max(ends[-1], starts[0]), words=tuple(words))

    def cut(self, before: Sequence[int]) -> list[Segment]:
        """This segment cut before each word index in `before` (ascending, within 1..words-1):
        each part keeps its stretch of the text (and of `chars`), its words and their times; the
        decoder's statistics are the segment's. Uncut when a word is not found in the text."""
        ends, at = [], 0
        for w in self.words:
            found = self.text.find(w.word, at)
            if found < 0:
                return [self]
            at = found + len(w.word)
            ends.append(at)
        out, text_at, n = [], 0, len(self.words)
        for a, b in zip([0, *before], [*before, n], strict=True):
            text_end = ends[b - 1] if b < n else len(self.text)
            chars = self.chars[text_at:text_end] if self.chars else ()
            part = replace(self, text=self.text[text_at:text_end], tokens=(), chars=chars)
            out.append(part.with_words(self.words[a:b]))
            text_at = text_end
        return out


@dataclass(frozen=True)
class AudioChunk:
    """Audio the recogniser reads as one stretch: `pieces` of input `file`, concatenated.

    Without VAD a chunk is a whole input (or a long part of one); with VAD, speech regions merged
    into at most `chunk_size` seconds: one piece spanning them (WhisperX), or only the speech,
    one piece per region (faster-whisper's batched mode).
    """

    file: int  # the input's position in the run
    audio: Any  # (samples,) float32 mx.array: the pieces' samples, concatenated
    pieces: tuple[SpanSamples, ...]  # where those samples lie on the input's timeline

    @property
    def length(self) -> int:
        return sum(p.length for p in self.pieces)

    def _offsets(self) -> list[int]:
        return _offsets(self.pieces)

    def to_file(self, t: float, *, end: bool = False) -> float:
        """Seconds from the chunk's start -> seconds on the input's timeline. A time on the seam
        of two pieces belongs to the later piece, or to the earlier one with `end=True`."""
        return to_timeline(self.pieces, t, end=end)

    def file_spans(self, start: int, end: int) -> tuple[SpanSamples, ...]:
        """Chunk samples [start, end) as spans of the input's timeline (one per piece crossed)."""
        out = []
        for offset, p in zip(self._offsets(), self.pieces, strict=True):
            a, b = max(start, offset), min(end, offset + p.length)
            if b > a:
                out.append(SpanSamples(p.start + a - offset, p.start + b - offset))
        return tuple(out)

    def split(self, at: int) -> tuple[AudioChunk, AudioChunk]:
        """The chunk cut before its sample `at` (0 < at < length)."""
        left, right = self.file_spans(0, at), self.file_spans(at, self.length)
        return (
            AudioChunk(self.file, self.audio[:at], left),
            AudioChunk(self.file, self.audio[at:], right),
        )


@dataclass(frozen=True)
class TokenTimes:
    """When Whisper's alignment heads attend each text token of a window (cross-attention DTW).

    `tokens` are the window's text tokens, `counts` how many belong to each of its segments.
    `texts[i]` is the text that token i completes: a character spread over several tokens is
    the last one's text, the others' is "". Token i is attended over seconds
    [starts[i], starts[i + 1]) from the window's start (`starts` has one entry more: the end of
    the last token), openai-whisper's token times; it is spoken `lag` seconds earlier (the
    model's heads trail speech: `mlxwx.weights.heads.LAGS`). `probs`: each token's probability
    under the model, teacher-forced.
    """

    tokens: tuple[int, ...]
    counts: tuple[int, ...]
    texts: tuple[str, ...]
    starts: tuple[float, ...]
    probs: tuple[float, ...]
    lag: float = 0.0

    def spoken(self, i: int) -> float:
        """When token i starts being spoken, in seconds from the window's start."""
        return max(0.0, self.starts[i] - self.lag)


@dataclass(frozen=True)
class Window:
    """One decoded window (at most 30 s of a chunk), as the decoder saw and decoded it.

    An aligner recomputes the decoder's cross-attention from these: the window's audio is the
    input's samples `spans` concatenated (log-mel zero-padded past them to 30 s), its prompt the
    SOT sequence of `language`, and the tokens those of `segments` (timestamp tokens included).
    """

    file: int  # the input's position in the run
    spans: tuple[SpanSamples, ...]  # its audio on the input's timeline (VAD chunk mapped back)
    language: str | None
    segments: tuple[Segment, ...]  # on the input's timeline, tokens with their timestamps
    temperature: float = 0.0
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    token_times: TokenTimes | None = None  # Whisper's own timing of its text tokens, if asked

    @property
    def start(self) -> float:
        return self.spans[0].start / SAMPLE_RATE if self.spans else 0.0

    def to_file(self, t: float, *, end: bool = False) -> float:
        """Seconds from the window's start -> seconds on the input's timeline."""
        return to_timeline(self.spans, t, end=end)


@dataclass(frozen=True)
class Result:
    """The transcript of one input; `windows` are the decode records it was built from."""

    segments: tuple[Segment, ...]
    language: str | None
    duration: float
    source: str = ""
    word_segments: tuple[Word, ...] = field(default=())
    windows: tuple[Window, ...] = field(default=(), repr=False)
    speaker_embeddings: dict[str, tuple[float, ...]] | None = field(default=None, repr=False)

    @classmethod
    def from_windows(
        cls, windows: tuple[Window, ...], language: str | None, duration: float, source: str = ""
    ) -> Result:
        """The transcript of decoded windows: their segments in time order."""
        ordered = tuple(sorted(windows, key=lambda w: w.start))
        segments = tuple(sorted((s for w in ordered for s in w.segments), key=lambda s: s.start))
        return cls(segments, language, duration, source, windows=ordered)

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()

    def to_dict(self) -> dict[str, Any]:
        words = self.word_segments or tuple(w for s in self.segments for w in s.words)
        out: dict[str, Any] = {
            "segments": [s.to_dict() for s in self.segments],
            "word_segments": [w.to_dict() for w in words],
            "language": self.language,
        }
        if self.speaker_embeddings is not None:
            out["speaker_embeddings"] = {k: list(v) for k, v in self.speaker_embeddings.items()}
        return out
