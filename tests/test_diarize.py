"""The diarize stage end to end: speakers from an RTTM on real transcripts (words on the right
speaker against exact and hand-made references), the CLI's flags and failures, and a pyannote
`SpeakerDiarization` pipeline assembled locally (`tests.pyannote_pipeline`), run offline."""

from __future__ import annotations

import difflib
import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlxwx.cli import app
from mlxwx.diarize import DiarizeOptions, Diarizers, diarize
from mlxwx.diarize.pyannote import load_diarizer
from mlxwx.errors import ModelError
from mlxwx.pipeline import Pipeline, PipelineOptions
from mlxwx.rttm import read_turns
from mlxwx.types import Result

from .pyannote_pipeline import child
from .speech import normalize

DATA = Path(__file__).parent / "data"


def right_speakers(result: Result, truth: list[tuple[str, str]]) -> tuple[float, float]:
    """(share of the matched words whose speaker is right, share of the reference matched):
    our words matched in order to the reference's (word, speaker) after `normalize`."""
    hyp = [(p, w.speaker) for w in result.word_segments for p in normalize(w.word).split()]
    ref = [(p, s) for w, s in truth for p in normalize(w).split()]
    matcher = difflib.SequenceMatcher(a=[w for w, _ in hyp], b=[w for w, _ in ref], autojunk=False)
    pairs = [
        (hyp[i + k][1], ref[j + k][1])
        for i, j, n in matcher.get_matching_blocks()
        for k in range(n)
    ]
    right = sum(h == r for h, r in pairs)
    return right / max(len(pairs), 1), len(pairs) / len(ref)


def stm_truth() -> list[tuple[str, str]]:
    """sample.wav's words with their speaker, from sample.stm, its speakers named as in
    sample.rttm (each STM speaker -> the RTTM speaker whose turns overlap its lines most)."""
    lines = [ln.split(maxsplit=5) for ln in (DATA / "sample.stm").read_text().splitlines()]
    turns = read_turns(DATA / "sample.rttm")["sample"]
    overlap: dict[tuple[str, str], float] = {}
    for _, _, who, a, b, _ in lines:
        for t in turns:
            key = (who, t.speaker)
            overlap[key] = overlap.get(key, 0.0) + max(
                0.0, min(float(b), t.end) - max(float(a), t.start)
            )
    names = {who for _, _, who, *_ in lines}
    label = {n: max((k for k in overlap if k[0] == n), key=overlap.__getitem__)[1] for n in names}
    assert len(set(label.values())) == 2
    return [(w, label[who]) for _, _, who, _, _, text in lines for w in text.split()]


@pytest.fixture(scope="module")
def pipeline(wm) -> Pipeline:
    return Pipeline(wm)


@pytest.mark.slow
def test_rttm_speakers_on_synthconv_words(pipeline):
    options = PipelineOptions(diarize=DiarizeOptions("rttm", rttm=DATA / "synthconv.rttm"))
    result = pipeline.transcribe(str(DATA / "synthconv.wav"), options)
    assert isinstance(result, Result)
    truth = [
        (w["word"], w["speaker"]) for w in json.loads((DATA / "synthconv.words.json").read_text())
    ]
    right, matched = right_speakers(result, truth)
    assert matched >= 0.9 and right >= 0.98, (right, matched)
    assert all(s.speaker in ("slt", "rms") for s in result.segments)


@pytest.mark.slow
def test_rttm_speakers_on_pyannotes_sample(pipeline):
    options = PipelineOptions(diarize=DiarizeOptions("rttm", rttm=DATA / "sample.rttm"))
    result = pipeline.transcribe(str(DATA / "sample.wav"), options)
    assert isinstance(result, Result)
    right, matched = right_speakers(result, stm_truth())
    assert matched >= 0.8 and right >= 0.95, (right, matched)


def test_an_rttm_without_the_inputs_file_id_is_one_line_and_keeps_the_transcript(tmp_path, caplog):
    rttm = tmp_path / "two.rttm"
    rttm.write_text(
        "SPEAKER a 1 0 1 <NA> <NA> x <NA> <NA>\nSPEAKER b 1 0 1 <NA> <NA> y <NA> <NA>\n"
    )
    result = Result((), "en", 1.0, "c.wav")
    with caplog.at_level(logging.ERROR, logger="mlxwx.diarize"):
        out = diarize(result, None, DiarizeOptions("rttm", rttm=rttm), Diarizers())  # type: ignore[arg-type]
    assert out is result
    assert ["c.wav: no turns for 'c' in" in r.getMessage() for r in caplog.records] == [True]


def test_cli_writes_speakers_from_an_rttm(tiny_en_dir, tmp_path):
    args = ["run", str(DATA / "synthconv.wav"), "--model", str(tiny_en_dir), "-o", str(tmp_path)]
    got = CliRunner().invoke(
        app, [*args, "--diarization-rttm", str(DATA / "synthconv.rttm"), "-f", "json,txt,srt"]
    )
    assert got.exit_code == 0, got.output
    data = json.loads((tmp_path / "synthconv.json").read_text())
    assert all(w["speaker"] in ("slt", "rms") for w in data["word_segments"])
    assert (tmp_path / "synthconv.txt").read_text().startswith("[slt]: Hello")
    assert "[rms]: " in (tmp_path / "synthconv.srt").read_text()
    assert "] [slt]: Hello" in got.stdout


def test_cli_checks_diarization_flags_before_any_audio(tmp_path):
    missing = tmp_path / "none.rttm"
    wav = str(DATA / "jfk.flac")
    got = CliRunner().invoke(
        app, ["run", wav, "--model", "tiny.en", "--diarization-rttm", str(missing)]
    )
    assert got.exit_code == 2 and "cannot read RTTM file" in got.output
    got = CliRunner().invoke(app, ["run", wav, "--model", "tiny.en", "--num-speakers", "2"])
    assert got.exit_code == 2 and "--num-speakers need --diarize" in got.output
    got = CliRunner().invoke(
        app, ["run", wav, "--diarize", "--min-speakers", "3", "--max-speakers", "2"]
    )
    assert got.exit_code == 2 and "more than --max-speakers" in got.output
    assert not list(tmp_path.iterdir())


def test_cli_without_the_extra_writes_the_transcript_without_speakers(
    tiny_en_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr("mlxwx.diarize.pyannote.installed", lambda: False)
    args = [
        "run",
        str(DATA / "jfk.flac"),
        "--model",
        str(tiny_en_dir),
        "-o",
        str(tmp_path),
        "-f",
        "json",
    ]
    got = CliRunner().invoke(app, [*args, "--diarize"])
    assert got.exit_code == 1
    assert "pip install 'mlxwx[diarize]'; transcripts are written without speakers" in got.output
    data = json.loads((tmp_path / "jfk.json").read_text())
    assert data["segments"] and all("speaker" not in s for s in data["segments"])


def test_a_gated_pipeline_without_a_token_says_how_to_get_one(monkeypatch):
    from huggingface_hub.errors import GatedRepoError

    def gated(repo_id: str, **kwargs: object) -> str:
        if kwargs.get("local_files_only"):
            raise FileNotFoundError("not cached")
        err = GatedRepoError.__new__(GatedRepoError)  # as the hub raises it, without an HTTP reply
        Exception.__init__(err, "401: gated")
        raise err

    monkeypatch.setattr("huggingface_hub.snapshot_download", gated)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    said = r"is gated: accept its conditions once at https://hf.co/pyannote/speaker-diarization-community-1 .* --hf-token or set HF_TOKEN"  # noqa: E501
    with pytest.raises(ModelError, match=said):
        load_diarizer("pyannote/speaker-diarization-community-1")


def test_an_uncached_pipeline_offline_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(
        ModelError, match="is not in the Hugging Face cache; pass a local pipeline folder"
    ):
        load_diarizer("pyannote/speaker-diarization-community-1", local_files_only=True)
    with pytest.raises(ModelError, match=r"has no config\.yaml"):
        load_diarizer(str(tmp_path))
    with pytest.raises(ModelError, match="not found"):
        load_diarizer(str(tmp_path / "nowhere"))


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory) -> Path:
    from mlxwx.weights.pyannote import fetch_checkpoint

    folder = tmp_path_factory.mktemp("diarization") / "pipeline"
    done = child("build", fetch_checkpoint(), folder)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("speakers", [None, 2])
def test_pyannote_pipeline_turns_cover_the_speech(pipeline_folder, tmp_path, speakers):
    """The real segmentation model finds synthconv's speech in the audio we hand over; the
    number of speakers reaches the clustering."""
    out = tmp_path / "turns.json"
    done = child(
        "turns",
        pipeline_folder,
        DATA / "synthconv.wav",
        out,
        *([str(speakers)] if speakers else []),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(out.read_text())
    truth = read_turns(DATA / "synthconv.rttm")["synthconv"]
    covered = sum(
        max(0.0, min(b, t.end) - max(a, t.start)) for a, b, _ in found["turns"] for t in truth
    )
    assert covered >= 0.9 * sum(t.end - t.start for t in truth)
    labels = {s for _, _, s in found["turns"]}
    assert set(found["embeddings"]) == labels
    if speakers:
        assert len(labels) == speakers


@pytest.mark.slow
def test_cli_diarizes_with_a_local_pipeline_folder(pipeline_folder, tiny_en_dir, tmp_path):
    done = child(
        "run",
        "run",
        DATA / "synthconv.wav",
        "--model",
        tiny_en_dir,
        "-o",
        tmp_path,
        "-f",
        "json,txt",
        "--diarize",
        "--diarize-model",
        pipeline_folder,
        "--num-speakers",
        "2",
        "--speaker-embeddings",
        "--fill-nearest",
        "-q",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((tmp_path / "synthconv.json").read_text())
    assert all(w.get("speaker", "").startswith("SPEAKER_") for w in data["word_segments"])
    assert all(s["speaker"].startswith("SPEAKER_") for s in data["segments"])
    assert set(data["speaker_embeddings"]) <= {"SPEAKER_00", "SPEAKER_01"}
    assert (tmp_path / "synthconv.txt").read_text().startswith("[SPEAKER_0")
