"""The pipeline as a whole: streaming, later stages overlapping decoding, outputs per input,
nothing lost to a kill, transcripts unchanged by the rewrite into stages."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from typer.testing import CliRunner

from mlxwx.asr.decoding import DecodingOptions
from mlxwx.asr.engine import TranscribeOptions
from mlxwx.cli import app
from mlxwx.pipeline import Pipeline, PipelineOptions
from mlxwx.types import Result
from mlxwx.writers import ALL_FORMATS

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"
CLIPS = ["jfk.flac", "sample.wav", "synthconv.wav"]
GREEDY = PipelineOptions(
    TranscribeOptions(DecodingOptions(beam_size=1), batch_size=1, workers=1), vad=None
)


@pytest.mark.parametrize(
    "variant", ["tiny.en", pytest.param("tiny.en-novad", marks=pytest.mark.slow)]
)
def test_run_gives_the_json_of_the_engine_before_the_stages(variant, tiny_en_dir, tmp_path):
    """`mlxwx run` on the bundled clips, seeded, writes the JSON that the engine wrote before
    the pipeline was split into stages (tests/data/golden, written by commit 24cff24 with
    `mlxwx run CLIPS --model tiny.en -f json` and `--vad none`, mx.random.seed(0)), when told
    to follow openai-whisper's seek rule as that engine did (`--no-finish-chunks`)."""
    extra = ["--vad", "none"] if variant.endswith("novad") else []
    mx.random.seed(0)
    args = [
        "run",
        *(str(DATA / c) for c in CLIPS),
        "--model",
        str(tiny_en_dir),
        "-o",
        str(tmp_path),
    ]
    options = ["-f", "json", "-q", "--no-align", "--no-finish-chunks", *extra]
    result = CliRunner().invoke(app, [*args, *options])
    assert result.exit_code == 0, result.output
    for clip in CLIPS:
        name = Path(clip).stem + ".json"
        assert json.loads((tmp_path / name).read_text()) == json.loads(
            (GOLDEN / variant / name).read_text()
        )


@pytest.mark.slow
def test_alignment_keeps_the_decoded_text(tiny_en_dir, tmp_path):
    """Aligned (the default), the same segments as the golden JSON but for their times, and
    every word timed within its segment."""
    mx.random.seed(0)
    args = [
        "run",
        *(str(DATA / c) for c in CLIPS),
        "--model",
        str(tiny_en_dir),
        "--segment-resolution",
        "chunk",
        "--no-finish-chunks",
    ]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path), "-f", "json", "-q"])
    assert result.exit_code == 0, result.output
    for clip in CLIPS:
        name = Path(clip).stem + ".json"
        ours, golden = (
            json.loads(p.read_text()) for p in (tmp_path / name, GOLDEN / "tiny.en" / name)
        )
        untimed = [
            {k: v for k, v in s.items() if k not in ("start", "end", "words")}
            for s in ours["segments"]
        ]
        assert untimed == [
            {k: v for k, v in s.items() if k not in ("start", "end", "words")}
            for s in golden["segments"]
        ]
        for s in ours["segments"]:
            assert (
                s["words"]
                and s["start"] == s["words"][0]["start"]
                and s["end"] == s["words"][-1]["end"]
            )
            assert "".join(w["word"] for w in s["words"]) == s["text"].replace(" ", "")
        assert ours["word_segments"] == [w for s in ours["segments"] for w in s["words"]]


def test_later_stages_run_while_the_decoder_works_on_the_next_inputs(wm, clips):
    """A slow stand-in for alignment holds the first finished input until the decoder reports
    progress on another one: it can only return in time if the two overlap."""
    progress = threading.Condition()
    seen = {"transcribe": 0}
    overlapped: list[bool] = []

    def hook(stage, completed=0, total=0, **_):
        with progress:
            seen[stage] = seen.get(stage, 0) + 1
            progress.notify_all()

    def slow_stage(result: Result, audio: np.ndarray) -> Result:
        if not overlapped:
            with progress:
                mark = seen["transcribe"]
                overlapped.append(progress.wait_for(lambda: seen["transcribe"] > mark, timeout=60))
        return result

    results: dict[int, Result] = {}
    pipeline = Pipeline(wm, GREEDY)
    pipeline.run(
        clips[:3], lambda i, r: results.setdefault(i, r), progress=hook, extra_stages=[slow_stage]
    )
    assert overlapped == [True] and sorted(results) == [0, 1, 2]


@pytest.mark.slow
def test_inputs_are_loaded_ahead_of_need_not_all_at_once(wm, clips):
    """However many inputs a run has, only a few are loaded and not yet finished at any time."""
    events: list[str] = []
    inputs = [clips[i % 2][:16000] for i in range(8)]
    options = replace(GREEDY, prefetch=1, backlog=1)
    Pipeline(wm, options).run(
        inputs, lambda i, r: None, progress=lambda stage, **_: events.append(stage)
    )
    in_flight, most = 0, 0
    for stage in events:
        in_flight += {"load": 1, "finish": -1}.get(stage, 0)
        most = max(most, in_flight)
    assert events.count("load") == events.count("finish") == 8
    assert most <= 5  # a lane, the loader's queue and its hand, the stages' queue and thread


def test_a_run_killed_after_its_first_outputs_keeps_them_whole(tiny_en_dir, jfk_path, tmp_path):
    """SIGKILL once the first .json appears: every file left is complete (byte for byte what a
    whole run writes) and nothing else is there: no partial, no temporary file."""
    inputs = []
    for i in range(6):
        inputs.append(tmp_path / f"jfk{i}.flac")
        shutil.copyfile(jfk_path, inputs[-1])
    args = ["--model", str(tiny_en_dir), "--batch-size", "1", "--beam-size", "1", "--vad", "none"]
    args += ["--workers", "1", "-q"]
    reference = tmp_path / "reference"
    done = subprocess.run(
        [sys.executable, "-m", "mlxwx", "run", str(jfk_path), *args, "-o", str(reference)],
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    command = [sys.executable, "-m", "mlxwx", "run", *map(str, inputs), *args, "-o", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    files = sorted(out.iterdir())
    assert any(p.suffix == ".json" for p in files)
    for path in files:
        assert path.name.startswith("jfk") and not path.name.startswith("."), path.name
        assert path.read_bytes() == (reference / f"jfk{path.suffix}").read_bytes(), path.name
    for path in out.glob("*.json"):  # an input with its json has all of its outputs
        assert len(list(out.glob(f"{path.stem}.*"))) == len(ALL_FORMATS)
