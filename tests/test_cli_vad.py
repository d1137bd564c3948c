"""`mlxwx vad` and `mlxwx vad-eval` on real audio: outputs parse back, scores equal the library's
(and silero regions equal silero-vad's own `get_speech_timestamps` as WhisperX calls it), failures
give one `error:` line."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import mlxwx.vad
from mlxwx.audio import load_audio
from mlxwx.cli import app
from mlxwx.vad import methods
from mlxwx.vad.base import SpanSeconds
from mlxwx.vad.methods import default_options, load_vad, speech_regions
from mlxwx.vad.metrics import combine, evaluate
from mlxwx.vad.regions import binarize, merge_chunks
from mlxwx.vad.rttm import read_rttm

DATA = Path(__file__).parent / "data"
SAMPLE, SAMPLE_RTTM = DATA / "sample.wav", DATA / "sample.rttm"
SYNTH = Path("/work/shared/data/synthconv.wav")
if not SYNTH.exists():
    SYNTH = DATA / "synthconv.wav"
SYNTH_RTTM = SYNTH.with_suffix(".rttm")


def invoke(runner: CliRunner, *args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def regions(items: list[dict[str, float]]) -> list[SpanSeconds]:
    return [SpanSeconds(r["start"], r["end"]) for r in items]


def test_evaluate_is_the_function_metrics_the_module() -> None:
    assert mlxwx.vad.evaluate is evaluate
    assert importlib.util.find_spec("mlxwx.vad.metrics") is not None
    assert importlib.util.find_spec("mlxwx.vad.evaluate") is None


def test_vad_writes_rttm_and_json(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["vad", SAMPLE, SYNTH, "--method", "energy", "-o", out, "-f", "rttm,json", "--chunks"]
    result = invoke(runner, *args, "--onset", 0.6, "--pad", 0.05, "--chunk-size", 10)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "sample.json",
        "sample.rttm",
        "synthconv.json",
        "synthconv.rttm",
    ]
    options = default_options("energy", onset=0.6, pad=0.05, chunk_size=10.0)
    assert options.max_speech == 10.0
    vad = load_vad("energy")
    for path in (SAMPLE, SYNTH):
        expected = speech_regions(load_audio(path), vad, options)
        data = json.loads((out / f"{path.stem}.json").read_text())
        assert regions(data["regions"]) == expected and len(expected) >= 2
        assert data["options"] == {**asdict(options), "offset_used": 0.363}
        assert (data["id"], data["method"], data["hop"]) == (path.stem, "energy", 0.01)
        chunks = merge_chunks(expected, options)
        assert [regions(c["regions"]) for c in data["chunks"]] == [list(c.regions) for c in chunks]
        assert all(c["duration"] <= 10.0 for c in data["chunks"]) and len(chunks) >= 2
        rttm = read_rttm(out / f"{path.stem}.rttm", merge=False)[path.stem]  # cuts touch
        assert len(rttm) == len(expected)
        for got, want in zip(rttm, expected, strict=True):
            assert got.start == pytest.approx(want.start, abs=1e-3)
            assert got.end == pytest.approx(want.end, abs=1e-3)
        assert f"{path}: {len(expected)} regions" in result.stdout
    assert not list(out.glob(".*"))  # atomic writes leave no temporary file


def test_vad_silero_is_whisperx_get_speech_timestamps(runner: CliRunner, tmp_path: Path) -> None:
    """WhisperX's Silero VAD: get_speech_timestamps(threshold=onset, max_speech=chunk_size)."""
    torch = pytest.importorskip("torch", reason="torch missing: pip install -e '.[dev]'")
    threads = torch.get_num_threads()
    silero = pytest.importorskip("silero_vad", reason="silero-vad missing: pip install -e '.[dev]'")
    torch.set_num_threads(threads)  # its import pins torch to one thread
    args = ["vad", SAMPLE, "--method", "silero", "-o", tmp_path, "-f", "json", "-q"]
    result = invoke(runner, *args, "--onset", 0.6, "--chunk-size", 8)
    assert result.exit_code == 0 and result.stdout == "", result.output
    got = json.loads((tmp_path / "sample.json").read_text())["regions"]
    audio = np.array(load_audio(SAMPLE))
    model = silero.load_silero_vad(onnx=True)
    ref = silero.get_speech_timestamps(
        torch.from_numpy(audio), model, threshold=0.6, max_speech_duration_s=8.0
    )
    found = [{"start": round(r["start"] * 16000), "end": round(r["end"] * 16000)} for r in got]
    assert found == ref and len(ref) >= 4


def test_vad_eval_scores_equal_the_library(runner: CliRunner) -> None:
    for method in ("energy", "silero"):
        result = invoke(
            runner,
            "vad-eval",
            "-r",
            SAMPLE_RTTM,
            "-r",
            SYNTH_RTTM,
            SAMPLE,
            SYNTH,
            "--method",
            method,
            "--collar",
            0.25,
            "--sweep",
            "0.3,0.5,0.7",
            "--json",
        )
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        options, vad = default_options(method), load_vad(method)
        assert data["options"]["onset"] == options.onset and data["collar"] == 0.25
        per_file = []
        for path, item in zip((SAMPLE, SYNTH), data["files"], strict=True):
            audio = load_audio(path)
            duration = audio.shape[0] / 16000
            reference = read_rttm(path.with_suffix(".rttm"), merge=False)[path.stem]
            probs = vad(audio)
            hyp = binarize(probs, options, duration)
            metrics = evaluate(reference, hyp, collar=0.25, duration=duration)
            assert item["metrics"] == asdict(metrics) and regions(item["regions"]) == hyp
            assert metrics.detection_error_rate < 0.1  # both methods find this speech
            for row in item["sweep"]:
                t = row["onset"]
                offset = None if options.offset is None else min(options.offset, t)
                at = binarize(probs, replace(options, onset=t, offset=offset), duration)
                assert row["metrics"] == asdict(
                    evaluate(reference, at, collar=0.25, duration=duration)
                )
            per_file.append(metrics)
        assert data["total"] == asdict(combine(per_file))
        assert [r["onset"] for r in data["sweep_total"]] == [0.3, 0.5, 0.7]


def test_vad_eval_text_tables(runner: CliRunner) -> None:
    args = ["vad-eval", "--reference", SAMPLE_RTTM, SAMPLE, "--method", "energy"]
    result = invoke(runner, *args, "--sweep", "0.3,0.5")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    audio = load_audio(SAMPLE)
    hyp = speech_regions(audio, "energy")
    m = evaluate(read_rttm(SAMPLE_RTTM, merge=False)["sample"], hyp, duration=30.0)
    row = next(line for line in lines if line.startswith("sample.wav"))
    assert row.split()[1:3] == [f"{100 * m.detection_error_rate:.2f}", f"{100 * m.miss:.2f}"]
    assert next(line for line in lines if line.startswith("total")).split()[1:] == row.split()[1:]
    sweep = lines[lines.index("== sample.wav") + 1 :]
    assert len(sweep) == 3 and "DetER%" in sweep[0] and sum(s.endswith("*") for s in sweep) == 1


def test_combine_is_pyannote_accumulated() -> None:
    """`combine` (the CLI's total) = pyannote.metrics accumulated over the files."""
    pytest.importorskip(
        "pyannote.metrics", reason="pyannote.metrics missing: pip install -e '.[dev]'"
    )
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.detection import DetectionErrorRate, DetectionPrecision

    def annotation(items: list[SpanSeconds]) -> Annotation:
        out = Annotation()
        for i, r in enumerate(items):
            out[Segment(r.start, r.end), i] = "speech"
        return out

    der, precision, ours = DetectionErrorRate(collar=0.5), DetectionPrecision(collar=0.5), []
    vad = load_vad("energy")
    for path in (SAMPLE, SYNTH):
        audio = load_audio(path)
        duration = audio.shape[0] / 16000
        ref = read_rttm(path.with_suffix(".rttm"))[path.stem]
        hyp = speech_regions(audio, vad, default_options("energy", onset=0.2))
        uem = Timeline([Segment(0, duration)])
        der(annotation(ref), annotation(hyp), uem=uem)
        precision(annotation(ref), annotation(hyp), uem=uem)
        ours.append(evaluate(ref, hyp, collar=0.5, duration=duration))
    total = combine(ours)
    assert total.detection_error_rate == pytest.approx(abs(der), abs=1e-9)
    assert total.precision == pytest.approx(abs(precision), abs=1e-9)
    assert total.detection_error_rate > 0.02  # a hypothesis with errors in both files


def test_missing_audio_fails_alone(runner: CliRunner, tmp_path: Path) -> None:
    args = ["vad", tmp_path / "missing.wav", SAMPLE, "--method", "energy", "-o", tmp_path, "-q"]
    result = invoke(runner, *args)
    errors = error_lines(result.stderr)
    assert result.exit_code == 1 and len(errors) == 2
    assert "missing.wav" in errors[0] and "1 of 2 files failed" in errors[1]
    assert (tmp_path / "sample.rttm").exists()
    result = invoke(runner, "vad-eval", "-r", SAMPLE_RTTM, SAMPLE, SYNTH, "--method", "energy")
    errors = error_lines(result.stderr)
    assert result.exit_code == 1 and len(errors) == 2, result.output
    assert "no reference for" in errors[0] and "'synthconv'" in errors[0]
    assert "sample.wav" in result.stdout  # the other file is still scored


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["vad", SAMPLE, "--method", "webrtc"], "unknown VAD method 'webrtc'"),
        (["vad", SAMPLE, "--method", "energy", "--onset", "1.5"], "onset must be within"),
        (["vad", SAMPLE, "--method", "energy", "--pad", "-1"], "pad must be >= 0"),
        (["vad", SAMPLE, "--method", "energy", "-f", "srt"], "unknown output format"),
        (["vad", SAMPLE, "--method", "energy", "--merge", "glue"], "merge must be"),
        (["vad-eval", "-r", SAMPLE_RTTM, SAMPLE, "--method", "hmm"], "unknown VAD method"),
        (["vad-eval", "-r", "no.rttm", SAMPLE, "--method", "energy"], "cannot read RTTM"),
        (["vad-eval", "-r", SAMPLE_RTTM, SAMPLE, "--method", "energy", "--sweep", "a"], "--sweep"),
        (["vad-eval", "-r", SAMPLE_RTTM, SAMPLE, "--method", "energy", "--sweep", "2"], "[0, 1]"),
        (["vad-eval", "-r", SAMPLE_RTTM, SAMPLE, "--method", "energy", "--collar", "-1"], "collar"),
        (["vad-eval", "-r", SAMPLE_RTTM, "-r", SAMPLE_RTTM, SAMPLE], "also in an earlier"),
    ],
)
def test_bad_options_one_line(runner: CliRunner, tmp_path: Path, args: list, message: str) -> None:
    result = invoke(runner, *args, "-o", tmp_path) if args[0] == "vad" else invoke(runner, *args)
    errors = error_lines(result.stderr)
    assert result.exit_code == 2 and len(errors) == 1 and message in errors[0], result.output
    assert not list(tmp_path.iterdir())


def test_bad_rttm_one_line(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.rttm"
    bad.write_text("SPEAKER sample 1 0.5 1.0 <NA> <NA> a <NA> <NA>\nSPEAKER sample 1 x y\n")
    result = invoke(runner, "vad-eval", "-r", bad, SAMPLE, "--method", "energy")
    errors = error_lines(result.stderr)
    assert result.exit_code == 2 and len(errors) == 1 and "bad.rttm:2" in errors[0]


def test_unavailable_pyannote_one_line(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(methods, "_PYANNOTE", ("mlxwx.vad.no_such_module", "PyannoteVad"))
    result = invoke(runner, "vad", SAMPLE, "--method", "pyannote")
    errors = error_lines(result.stderr)
    assert result.exit_code == 2 and len(errors) == 1
    assert "pyannote VAD is not available" in errors[0]


@pytest.mark.slow
def test_pyannote(runner: CliRunner, tmp_path: Path) -> None:
    module, _ = methods._PYANNOTE
    pytest.importorskip(module, reason=f"{module} not in this tree (the pyannote port)")
    result = invoke(runner, "vad", SAMPLE, "--method", "pyannote", "-o", tmp_path, "-f", "json")
    assert result.exit_code == 0, result.output
    vad = load_vad("pyannote")
    audio = load_audio(SAMPLE)
    probs = vad(audio)
    assert 0 < probs.offset < probs.hop * 4  # scores timed at their frame middles
    got = regions(json.loads((tmp_path / "sample.json").read_text())["regions"])
    assert got == speech_regions(audio, vad, default_options("pyannote"))
    m = evaluate(read_rttm(SAMPLE_RTTM)["sample"], got, duration=30.0)
    assert m.detection_error_rate <= 0.10
