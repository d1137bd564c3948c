"""The offline speech corpus with ground truth, shared by tests and benchmarks.

jfk.flac (11 s), Debian pocketsphinx-testdata's five LibriVox utterances (25 s), synthconv.wav (23 s
two-voice flite conversation, exact words and turns) and pyannote's sample.wav (30 s telephone
conversation, sample.stm transcript; from the pyannote-audio 4.0.7 wheel).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


@dataclass(frozen=True)
class Clip:
    name: str
    path: Path
    text: str


def librivox() -> list[Clip]:
    lines = (LIBRIVOX / "transcription").read_text().splitlines()
    found = []
    for line in lines:
        m = re.fullmatch(r"<s> (.*) </s> \((.*)\)", line.strip())
        if m:
            found.append(Clip(m.group(2), LIBRIVOX / f"{m.group(2)}.wav", m.group(1)))
    assert found, "Debian's pocketsphinx-testdata is not installed (.ci/run installs it)"
    return found


def corpus() -> list[Clip]:
    synth = " ".join(w["word"] for w in json.loads((DATA / "synthconv.words.json").read_text()))
    stm = [
        line.split(maxsplit=5)[5]
        for line in (DATA / "sample.stm").read_text().splitlines()
        if line.strip()
    ]
    return [
        Clip("jfk", DATA / "jfk.flac", JFK_TEXT),
        *librivox(),
        Clip("synthconv", DATA / "synthconv.wav", synth),
        Clip("sample", DATA / "sample.wav", " ".join(stm)),
    ]


SPELLINGS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "ok": "okay"}


def normalize(text: str) -> str:
    """Lower case, hyphens to spaces, punctuation dropped, a few spellings unified."""
    text = text.lower().replace("-", " ")
    return " ".join(SPELLINGS.get(w, w) for w in re.sub(r"[^a-z0-9' ]", " ", text).split())


def wer(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    return float(jiwer.wer([normalize(r) for r in references], [normalize(h) for h in hypotheses]))
