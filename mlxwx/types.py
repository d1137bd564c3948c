"""Typed results passed between stages, with WhisperX's JSON schema in `to_dict`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _r(t: float) -> float:
    return round(t, 3)


@dataclass(frozen=True)
class Word:
    word: str
    start: float | None
    end: float | None
    score: float | None = None
    speaker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"word": self.word}
        if self.start is not None and self.end is not None:
            out.update(start=_r(self.start), end=_r(self.end))
        if self.score is not None:
            out["score"] = round(self.score, 3)
        if self.speaker is not None:
            out["speaker"] = self.speaker
        return out


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
        if self.speaker is not None:
            out["speaker"] = self.speaker
        return out


@dataclass(frozen=True)
class Result:
    """The transcript of one input."""

    segments: tuple[Segment, ...]
    language: str | None
    duration: float
    source: str = ""
    word_segments: tuple[Word, ...] = field(default=())

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()

    def to_dict(self) -> dict[str, Any]:
        words = self.word_segments or tuple(w for s in self.segments for w in s.words)
        return {
            "segments": [s.to_dict() for s in self.segments],
            "word_segments": [w.to_dict() for w in words],
            "language": self.language,
        }
