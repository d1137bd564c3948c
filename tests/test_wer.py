"""Word error rate of mlxwx against faster-whisper on the offline corpus, same weights and settings.

The corpus (`tests.speech.corpus`: jfk, five LibriVox utterances, synthconv, pyannote's sample;
89 s in all) is loaded once with `mlxwx.audio.load_audio`; mlxwx transcribes all eight waveforms
in one batched `Pipeline.transcribe` call, faster-whisper (the reference, CTranslate2) the same
waveforms one by one. Both run each tool's default temperature fallback, no VAD, no conditioning
on previous text; on the multilingual base the language is fixed to English in both, so language
detection is not a variable. WER is corpus-level (`tests.speech.wer`: one reference per clip).

faster-whisper runs in float32 (`compute_type="float32"`), as mlxwx does on CPU: int8 is
faster-whisper's fast CPU type (docs/OFFLINE.md) but quantizes the weights, which changes the
transcripts, so it would compare two different models. float32 is fast enough here: the three
reference runs take about 60 s on 2 cores (int8 would save about 35 s).

Windows failing the quality checks are decoded again by sampling (temperature > 0): at beam 5
base samples sample.wav's first window, so both tools are seeded (SEED). Unseeded, the outcome
is a random draw: two runs gave mlxwx 17.3 % / 19.6 % against faster-whisper 21.0 % / 20.6 %,
and another run (an earlier edit of this file) saw mlxwx's T=0.2 fallback loop on "Oh, I don't
hear that." in sample.wav's tail (compression ratio 2.07, under the 2.4 threshold): 22.9 %
against 18.2 %. Seeded (SEED = 0) both give 19.2 % and no loop.

Every mlxwx run also guards against a stalled engine: a batch that advances no audio would
repeat forever (see `StallGuard`), so the test fails instead of hanging.
"""

from __future__ import annotations

import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlxwx.asr.decoding import DecodingOptions
from mlxwx.asr.engine import TranscribeOptions
from mlxwx.asr.model import load_model
from mlxwx.audio import load_audio
from mlxwx.pipeline import Pipeline, PipelineOptions

from .speech import corpus, normalize, wer

faster_whisper = pytest.importorskip("faster_whisper")
pytestmark = pytest.mark.slow  # eight clips through six configurations, two tools

TOLERANCE = 0.01  # mlxwx's corpus WER may exceed faster-whisper's by at most 1 point
MAX_PHRASE = 8  # longest phrase (words) checked for loops
MAX_REPEATS = 2  # a phrase may occur twice in a row, not three times
BATCH = 16  # all eight clips in one batch
SEED = 0  # fallback sampling seed of both tools
# (model, beam size): the configurations compared
CONFIGS = [("base", 1), ("base", 5), ("tiny.en", 5)]
IDS = [f"{n}-beam{b}" for n, b in CONFIGS]


class StallGuard:
    """Progress hook that fails a run whose batch advanced no audio: the engine would otherwise
    decode the same window forever (each batch must move at least one lane forward)."""

    def __init__(self) -> None:
        self.completed = -1
        self.batches = 0
        self.stage = ""

    def __call__(self, stage: str, completed: int = 0, total: int = 0, **_: object) -> None:
        if stage != self.stage:  # each stage counts its own work (VAD: input audio first)
            self.stage, self.completed, self.batches = stage, -1, 0
        self.batches += 1
        if completed <= self.completed:
            raise AssertionError(
                f"engine stalled: batch {self.batches} of stage {stage!r} advanced no audio "
                f"({completed} of {total} samples done)"
            )
        self.completed = completed


def repeated_phrases(text: str, n_max: int = MAX_PHRASE, limit: int = MAX_REPEATS) -> set[str]:
    """Every phrase of 1..n_max normalized words that occurs more than `limit` times in a row."""
    words = normalize(text).split()
    found = set()
    for n in range(1, n_max + 1):
        for i in range(len(words) - n * (limit + 1) + 1):
            phrase = words[i : i + n]
            if all(words[i + k * n : i + (k + 1) * n] == phrase for k in range(1, limit + 1)):
                found.add(" ".join(phrase))
    return found


def test_repeated_phrases_helper() -> None:
    assert repeated_phrases("Thank you. Thank you. Thank you.") == {"thank you"}
    assert repeated_phrases("no, no, no") == {"no"}
    assert "a b c d" in repeated_phrases("a b c d a b c d a b c d e")
    assert repeated_phrases("ask not, ask what; ask not, ask what") == set()
    assert repeated_phrases("one two three four five six seven eight " * 3)
    assert repeated_phrases("very very good") == set()
    assert repeated_phrases("Hello? Hello? Oh, hello.") == set()


@pytest.fixture(scope="module")
def clips():
    return corpus()


@pytest.fixture(scope="module")
def audios(clips) -> list[mx.array]:
    return [load_audio(c.path) for c in clips]


@pytest.fixture(scope="module")
def folders(tiny_en_dir, tiny_en_ct2_dir, base_dir, base_ct2_dir) -> dict[str, tuple[Path, Path]]:
    """Model name -> (MLX folder, CTranslate2 folder) of the same weights."""
    return {"tiny.en": (tiny_en_dir, tiny_en_ct2_dir), "base": (base_dir, base_ct2_dir)}


@pytest.fixture(scope="module")
def transcripts(folders, audios) -> dict[tuple[str, str, int], list[str]]:
    """Lazily: (system, model, beam) -> one transcript per clip; each computed once."""

    class Transcripts(dict):
        def __missing__(self, key: tuple[str, str, int]) -> list[str]:
            system, name, beam = key
            bits = 8 if system.endswith("@kv8") else None  # 8-bit cross-attention keys
            system = system.removesuffix("@kv8")
            mlx_dir, ct2_dir = folders[name]
            language = "en" if name == "base" else None
            start = time.perf_counter()
            if system.startswith("mlxwx"):  # mlxwx, or mlxwx+METHOD: that VAD first
                vad = system.partition("+")[2] or None
                texts = run_mlxwx(mlx_dir, audios, beam, language, vad, bits)
            else:
                texts = run_faster_whisper(ct2_dir, audios, beam, language)
            print(f"\n{system} {name} beam {beam}: {time.perf_counter() - start:.1f} s")
            self[key] = texts
            return texts

    return Transcripts()


def run_mlxwx(
    folder: Path,
    audios: list[mx.array],
    beam: int,
    language: str | None,
    vad: str | None = None,
    kv_bits: int | None = None,
) -> list[str]:
    mx.random.seed(SEED)
    wm = load_model(str(folder), dtype=mx.float32)
    # one sample a window when falling back, as these figures were first measured with
    decoding = DecodingOptions(beam_size=beam, best_of=1, language=language, cross_kv_bits=kv_bits)
    options = PipelineOptions(TranscribeOptions(decoding, batch_size=BATCH), vad=vad)
    results = Pipeline(wm, options).transcribe(audios, progress=StallGuard())
    return [r.text for r in results]


def run_faster_whisper(
    folder: Path, audios: list[mx.array], beam: int, language: str | None
) -> list[str]:
    import ctranslate2

    ctranslate2.set_random_seed(SEED)
    model = faster_whisper.WhisperModel(str(folder), device="cpu", compute_type="float32")
    texts = []
    for audio in audios:
        segments, _ = model.transcribe(
            np.array(audio),
            beam_size=beam,
            language=language,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        texts.append("".join(s.text for s in segments).strip())
    return texts


@pytest.mark.parametrize(("name", "beam"), CONFIGS, ids=IDS)
def test_wer_within_one_point_of_faster_whisper(name, beam, clips, transcripts):
    refs = [c.text for c in clips]
    ours, theirs = transcripts["mlxwx", name, beam], transcripts["faster-whisper", name, beam]
    ours_wer, theirs_wer = wer(refs, ours), wer(refs, theirs)
    lines = [f"{name} beam {beam}: WER mlxwx {ours_wer:.4f}, faster-whisper {theirs_wer:.4f}"]
    for clip, a, b in zip(clips, ours, theirs, strict=True):
        lines.append(f"  {clip.name}: mlxwx {wer([clip.text], [a]):.3f} {a!r}")
        lines.append(f"  {' ' * len(clip.name)}  f-w   {wer([clip.text], [b]):.3f} {b!r}")
    report = "\n".join(lines)
    print("\n" + report)
    assert ours_wer <= theirs_wer + TOLERANCE, report


@pytest.mark.parametrize(("name", "beam"), CONFIGS, ids=IDS)
def test_8_bit_cross_attention_keys_keep_the_wer(name, beam, clips, transcripts):
    """Cross-attention keys and values read in 8 bits (`DecodingOptions.cross_kv_bits`): the
    corpus WER against the references within 0.3 points of the model's own float keys (issue
    18's criterion), on the real weights of tiny.en and base."""
    refs = [c.text for c in clips]
    plain, packed = transcripts["mlxwx", name, beam], transcripts["mlxwx@kv8", name, beam]
    lines = [f"{name} beam {beam}: WER float keys {wer(refs, plain):.4f}, 8-bit "
             f"{wer(refs, packed):.4f}"]  # fmt: skip
    for clip, a, b in zip(clips, plain, packed, strict=True):
        if a != b:
            lines.append(f"  {clip.name}: {a!r}\n  {' ' * len(clip.name)}  {b!r}")
    report = "\n".join(lines)
    print("\n" + report)
    assert wer(refs, packed) <= wer(refs, plain) + 0.003, report


@pytest.mark.parametrize(("name", "beam"), CONFIGS, ids=IDS)
def test_no_phrase_repeated_three_times(name, beam, clips, transcripts):
    """No mlxwx transcript holds a phrase of 1..8 words three or more times in a row.

    A run that faster-whisper's transcript of the same clip (same weights and settings) also
    holds is the model's reading of the audio, not an engine loop: it is printed, not failed on.
    Seen: tiny.en hears sample.wav's "Hello? Hello? Oh, hello." as "hello hello hello" in both.
    """
    loops, shared = {}, {}
    for clip, ours, theirs in zip(
        clips,
        transcripts["mlxwx", name, beam],
        transcripts["faster-whisper", name, beam],
        strict=True,
    ):
        found = repeated_phrases(ours)
        if found - repeated_phrases(theirs):
            loops[clip.name] = sorted(found)
        elif found:
            shared[clip.name] = sorted(found)
    if shared:
        print(f"\n{name} beam {beam}: repeats faster-whisper also makes: {shared}")
    assert not loops, f"{name} beam {beam}: phrases repeated 3+ times in a row: {loops}"


@pytest.mark.parametrize(("method", "beam"), [("silero", 5), ("pyannote", 1), ("energy", 1)])
def test_vad_first_does_not_raise_wer(method, beam, clips, transcripts):
    """With a VAD first, base's corpus WER is no worse than without it: the VAD drops the clips'
    pauses, edges and noise, never their words. Silero (`mlxwx run`'s default) at beam 5, the run
    default; pyannote and energy greedy, whose transcripts without VAD the faster-whisper test
    computes anyway (CI time). Each with its transcription options (`transcribe_options`)."""
    refs = [c.text for c in clips]
    plain = transcripts["mlxwx", "base", beam]
    with_vad = transcripts[f"mlxwx+{method}", "base", beam]
    lines = [f"base beam {beam}: WER {wer(refs, plain):.4f}, {method} {wer(refs, with_vad):.4f}"]
    for clip, a, b in zip(clips, plain, with_vad, strict=True):
        lines.append(f"  {clip.name}: {wer([clip.text], [a]):.3f} -> {wer([clip.text], [b]):.3f}")
    report = "\n".join(lines)
    print("\n" + report)
    assert wer(refs, with_vad) <= wer(refs, plain), report
