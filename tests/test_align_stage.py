"""The align stage: method dispatch (auto, whisper, wav2vec2), fallbacks with one log line,
sentence segments with their characters, and the CLI's fail-fast check of the wav2vec2 model."""

from __future__ import annotations

import gc
import logging
import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlxwx.align import Aligners, AlignOptions, align, wav2vec2_installed
from mlxwx.align.whisper import align_whisper
from mlxwx.audio import read_audio
from mlxwx.cli import app
from mlxwx.errors import LoadOnce, MlxwxError
from mlxwx.pipeline import Pipeline, PipelineOptions
from mlxwx.types import Result

from .test_wav2vec2 import save_tiny_model

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def jfk(wm):
    audio = read_audio(DATA / "jfk.flac")
    result = Pipeline(wm, PipelineOptions(vad=None)).transcribe(audio)
    assert isinstance(result, Result) and result.windows[0].token_times is not None
    return audio, result


@pytest.fixture(scope="module")
def tiny_w2v(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("w2v") / "m", "group")


def test_options_are_checked():
    bad_ones = ({"method": "ctc"}, {"segment_resolution": "word"}, {"interpolate": "cubic"},
                {"precision": "half"})  # fmt: skip
    for bad in bad_ones:
        with pytest.raises(ValueError, match="choose from"):
            AlignOptions(**bad)
    assert AlignOptions().token_times and not AlignOptions("wav2vec2").token_times


def test_each_precision_gets_its_own_wav2vec2_model(tiny_w2v):
    torch = pytest.importorskip("torch")
    aligners, folder = Aligners(), str(tiny_w2v)
    low = aligners.get("en", AlignOptions("wav2vec2", model=folder, precision="bfloat16"))
    full = aligners.get("en", AlignOptions("wav2vec2", model=folder))  # auto: float32 here
    assert (low.autocast, full.autocast) == (torch.bfloat16, None)


def test_auto_without_a_local_wav2vec2_model_aligns_with_whisper(jfk, caplog, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    audio, result = jfk
    aligners = Aligners()
    with caplog.at_level(logging.INFO, logger="mlxwx.align"):
        first = align(result, audio, AlignOptions(), aligners)
        again = align(result, audio, AlignOptions(), aligners)
    assert first == again == align_whisper(result, True, audio)
    said = [r.getMessage() for r in caplog.records if "cross-attention" in r.getMessage()]
    assert len(said) == 1  # once per language, not per input


def test_a_remembered_load_failure_keeps_no_caller_alive():
    """A failed load is raised again as a fresh error: one instance raised for every input
    would chain each raise into its traceback, holding every caller's frame (and audio)."""
    once, raised = LoadOnce(), []

    def fail() -> None:
        raise MlxwxError("no model")

    def caller(audio: np.ndarray) -> None:
        with pytest.raises(MlxwxError, match="no model") as err:
            once.get("key", fail)
        raised.append(err.value.with_traceback(None))

    inputs = [np.zeros(4, np.float32) for _ in range(3)]
    held = [weakref.ref(a) for a in inputs]
    for a in inputs:
        caller(a)
    del inputs, a
    gc.collect()
    assert [h() for h in held] == [None] * 3
    assert len({id(e) for e in raised}) == 3


def test_inputs_whose_aligner_failed_to_load_are_released(jfk, tmp_path, monkeypatch):
    pytest.importorskip("torch", reason="pip install 'mlxwx[align]'")
    # pytest keeps every log record, and with the error logged its frames: not a run's doing
    monkeypatch.setattr(logging.getLogger("mlxwx.align"), "disabled", True)
    audio, result = jfk
    options, aligners = AlignOptions("wav2vec2", model=str(tmp_path / "missing")), Aligners()
    copies = [audio.copy() for _ in range(2)]
    held = [weakref.ref(a) for a in copies]
    for a in copies:
        align(result, a, options, aligners)
    del copies, a
    gc.collect()
    assert [h() for h in held] == [None, None]


def test_wav2vec2_times_every_word_and_keeps_characters_across_sentences(jfk, tiny_w2v):
    pytest.importorskip("torch")
    audio, result = jfk
    options = AlignOptions("wav2vec2", model=str(tiny_w2v), return_char_alignments=True)
    aligned = align(result, audio, options)
    words = aligned.to_dict()["word_segments"]
    assert [w["word"] for w in words] == result.text.split()
    assert all(w["start"] <= w["end"] for w in words)
    for s in aligned.segments:
        assert "".join(c.char for c in s.chars) == s.text
        assert s.words and s.start == s.words[0].start
    assert aligned.windows[0].token_times == result.windows[0].token_times  # records kept
    chunked = align(result, audio, AlignOptions("wav2vec2", "chunk", model=str(tiny_w2v)))
    assert [w.word for w in chunked.word_segments] == [w["word"] for w in words]


def test_a_wav2vec2_model_that_cannot_load_leaves_interpolated_words(jfk, caplog, tmp_path):
    pytest.importorskip("torch", reason="pip install 'mlxwx[align]'")
    audio, result = jfk
    options = AlignOptions("wav2vec2", model=str(tmp_path / "missing"))
    untimed = replace(result, windows=tuple(replace(w, token_times=None) for w in result.windows))
    with caplog.at_level(logging.ERROR, logger="mlxwx.align"):
        aligned = align(untimed, audio, options)
        assert align(result, audio, options) == align_whisper(result, True, audio)
    first, second = [r.getMessage() for r in caplog.records]
    assert "alignment model folder not found" in first and "\n" not in first
    assert first.endswith("words interpolated")
    assert second.endswith("aligned with Whisper's cross-attention")
    assert aligned.word_segments and all(w.interpolated for w in aligned.word_segments)


def test_cli_stops_before_reading_audio_when_wav2vec2_cannot_load(tiny_en_dir, tmp_path):
    pytest.importorskip("torch", reason="pip install 'mlxwx[align]'")
    args = ["run", str(tmp_path / "not-read.wav"), "--model", str(tiny_en_dir), "-o", str(tmp_path)]
    result = CliRunner().invoke(
        app, [*args, "--align", "wav2vec2", "--align-model", str(tmp_path / "no")]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: alignment model folder not found: {tmp_path / 'no'}"
    ]


@pytest.mark.skipif(not wav2vec2_installed(), reason="pip install 'mlxwx[align]'")
def test_cli_aligns_with_a_wav2vec2_folder(tiny_en_dir, tiny_w2v, tmp_path):
    import json

    args = ["run", str(DATA / "jfk.flac"), "--model", str(tiny_en_dir), "-o", str(tmp_path), "-q"]
    extra = ["--align", "wav2vec2", "--align-model", str(tiny_w2v), "--return-char-alignments"]
    result = CliRunner().invoke(app, [*args, *extra, "-f", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "jfk.json").read_text())
    assert all("start" in w and "end" in w for w in out["word_segments"])
    assert all(s["chars"] for s in out["segments"])
    assert np.all(np.diff([w["start"] for w in out["word_segments"]]) >= 0)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """Speech with a sum of money, numbers, a date and an email address (flite)."""
    import shutil
    import subprocess

    if shutil.which("flite") is None:
        pytest.skip("flite missing: apt install flite")
    path = tmp_path_factory.mktemp("flite") / "digits.wav"
    text = "I paid 25 dollars for 3 books on May 4th, 2024. Write to bob at example dot com."
    subprocess.run(["flite", "-t", text, "-o", str(path)], check=True)
    return path


@pytest.mark.parametrize("method", ["whisper", "wav2vec2"])
def test_every_word_has_a_start_and_an_end(wm, digits, tiny_w2v, method):
    """Digits, currency and an email address included (WhisperX leaves such words without
    times, and downstream tools fail on the missing keys)."""
    if method == "wav2vec2":
        pytest.importorskip("torch")
    options = AlignOptions(method, model=str(tiny_w2v) if method == "wav2vec2" else None)
    result = Pipeline(wm, PipelineOptions(align=options)).transcribe(str(digits))
    assert isinstance(result, Result)
    words = result.to_dict()["word_segments"]
    assert any(c.isdigit() for w in words for c in w["word"])  # "$25", "2024," ...
    assert any("$" in w["word"] for w in words) and any(".com" in w["word"] for w in words)
    for segment in result.to_dict()["segments"]:
        for w in segment["words"]:
            assert w["start"] <= w["end"] and segment["start"] <= w["start"] <= segment["end"]
    assert all(w["start"] <= w["end"] for w in words) and len(words) >= 12
