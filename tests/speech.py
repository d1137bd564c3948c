"""The offline speech corpus with ground truth, shared by tests and benchmarks.

jfk.flac (11 s), Debian pocketsphinx-testdata's five LibriVox utterances (25 s), synthconv.wav (23 s
two-voice flite conversation, exact words and turns) and pyannote's sample.wav (30 s telephone
conversation, sample.stm transcript; from the pyannote-audio 4.0.7 wheel).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import numpy as np

from mlxwx.audio import SAMPLE_RATE
from mlxwx.vad.base import SpanSeconds, SpeechProbs
from mlxwx.vad.regions import VadOptions, binarize

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


def _parts(words: list[tuple[str, float]]) -> list[tuple[str, float | None]]:
    """Each word's `normalize`d parts ("half-sisters": half, sisters), only the first keeping
    the word's start."""
    return [
        (part, start if k == 0 else None)
        for word, start in words
        for k, part in enumerate(normalize(word).split())
    ]


def start_errors(hyp: list[tuple[str, float]], ref: list[tuple[str, float]]) -> np.ndarray:
    """Seconds by which each hypothesis word that matches a reference word starts late (negative:
    early): (word, start) lists, words matched in order after `normalize` (difflib; a word
    normalised into several, as a hyphenated one, is matched by its parts, timed by its first)."""
    import difflib

    a, b = _parts(hyp), _parts(ref)
    matcher = difflib.SequenceMatcher(a=[w for w, _ in a], b=[w for w, _ in b], autojunk=False)
    pairs = [
        (a[i + k][1], b[j + k][1]) for i, j, n in matcher.get_matching_blocks() for k in range(n)
    ]
    return np.array([h - r for h, r in pairs if h is not None and r is not None])


def pocketsphinx_words(clip: Clip) -> list[tuple[str, float]]:
    """The words of a clip and their starts, by pocketsphinx's forced alignment of its text
    (the en-us model pocketsphinx ships; 10 ms frames; silences and fillers dropped): an
    independent reference for word times on real speech."""
    import soundfile as sf
    from pocketsphinx import Decoder

    audio, rate = sf.read(clip.path, dtype="int16")
    decoder = Decoder(samprate=rate, bestpath=False, loglevel="ERROR")
    decoder.set_align_text(clip.text)
    decoder.start_utt()
    decoder.process_raw(audio.tobytes(), full_utt=True)
    decoder.end_utt()
    frames = decoder.config["frate"]
    return [
        (re.sub(r"\(\d+\)$", "", s.word), s.start_frame / frames)
        for s in decoder.seg()
        if not s.word.startswith(("<", "["))
    ]


def synthconv_words() -> list[tuple[str, float]]:
    """synthconv's exact words and start times."""
    return [
        (w["word"], w["start"]) for w in json.loads((DATA / "synthconv.words.json").read_text())
    ]


def noises(seconds: float, level_db: float, seed: int = 0) -> dict[str, np.ndarray]:
    """White, pink (1/f), brown (1/f^2) noise and 50 Hz mains hum with harmonics, at `level_db`
    dB RMS re full scale."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    t = np.arange(n) / SAMPLE_RATE
    raw = {
        "white": rng.standard_normal(n),
        "pink": np.fft.irfft(spectrum / np.sqrt(f), n),
        "brown": np.fft.irfft(spectrum / f, n),
        "hum": sum(np.sin(2 * np.pi * 50 * h * t + h) / h for h in range(1, 12)),
    }
    gain = 10 ** (level_db / 20)
    return {k: (x * gain / np.sqrt(np.mean(x**2))).astype(np.float32) for k, x in raw.items()}


def hysteresis(probs: SpeechProbs, onset: float = 0.5, offset: float = 0.363) -> list[SpanSeconds]:
    """Regions by the shared binarize with WhisperX's plain hysteresis: speech from a frame
    >= onset to the next frame < min(onset, offset), no padding, durations or cuts."""
    options = VadOptions(onset=onset, offset=min(onset, offset), max_speech=math.inf)
    return binarize(probs, options, probs.offset + probs.frames * probs.hop)


def import_silero() -> ModuleType:
    """silero_vad, or a skip; its import pins torch to one thread, which is undone here."""
    import pytest

    torch = pytest.importorskip("torch", reason="torch missing: pip install -e '.[dev]'")
    threads = torch.get_num_threads()
    silero = pytest.importorskip("silero_vad", reason="silero-vad missing: pip install -e '.[dev]'")
    torch.set_num_threads(threads)
    return silero


def transcribe_arrays(
    wm, audios, options=None, vad=None, progress=None, vad_options=None, aligned=True
):
    """`Pipeline.transcribe` of 16 kHz arrays with a loaded Whisper: transcribe-stage `options`
    (default: the library's), no VAD unless `vad` (a loaded one) is given; `aligned`: the
    library's default word alignment, else none (segment times are Whisper's timestamps)."""
    from mlxwx.asr.engine import TranscribeOptions
    from mlxwx.pipeline import Pipeline, PipelineOptions

    options = PipelineOptions(options or TranscribeOptions(), vad=None, vad_options=vad_options)
    options = options if aligned else replace(options, align=None)
    return Pipeline(wm, options, vad=vad).transcribe(list(audios), progress=progress)


WAV2VEC2_CHARS = "abcdefghijklmnopqrstuvwxyz'"


def save_random_wav2vec2(folder: Path, **config: object) -> Path:
    """A `Wav2Vec2ForCTC` of random weights over upper-case letters (as facebook's English
    models spell them), with its processor, saved in `folder`; `config`: `Wav2Vec2Config`
    arguments (default: base-sized)."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    vocab.update({c.upper(): i + 5 for i, c in enumerate(WAV2VEC2_CHARS)})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(
        str(folder / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|"
    )
    features = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    processor = transformers.Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer)
    processor.save_pretrained(folder)
    torch.manual_seed(0)
    settings = transformers.Wav2Vec2Config(vocab_size=len(vocab), pad_token_id=0, **config)
    model = transformers.Wav2Vec2ForCTC(settings)
    with torch.no_grad():
        model.lm_head.weight.mul_(50)  # peaky emissions: decisive paths
    model.save_pretrained(folder)
    return folder
