"""pyannote segmentation v2 port: parity with pyannote.audio on the same checkpoint.

The checkpoint is WhisperX's default VAD model, taken from the whisperx 3.8.6 wheel by
`fetch_checkpoint` (pip download, cached under $MLXWX_CACHE). The reference is pyannote.audio's
own `Model.from_pretrained` and the `Inference` of its `VoiceActivityDetection` pipeline, which
is what WhisperX calls, run once in a child interpreter (see tests/pyannote_ref.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlxwx.audio import load_audio
from mlxwx.errors import ModelError
from mlxwx.vad.pyannote import PyannoteOptions, PyannoteVad
from mlxwx.weights import packs
from mlxwx.weights import pyannote as pyannote_load
from tests.pyannote_ref import run_reference
from tests.speech import DATA, LIBRIVOX

TOL = 1e-3


def noise(seconds: float) -> np.ndarray:
    """Seeded white noise at a speech-like level; 7.0 s fills windows exactly (no padding)."""
    return (0.05 * np.random.default_rng(0).standard_normal(int(seconds * 16000))).astype(
        np.float32
    )


CLIPS = {
    "sample": lambda: np.array(load_audio(DATA / "sample.wav")),  # 30 s, two speakers
    "synthconv": lambda: np.array(load_audio(DATA / "synthconv.wav")),  # 22.7 s, padded tail
    "librivox": lambda: np.array(  # 7.1 s read speech
        load_audio(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0870.wav")
    ),
    "short": lambda: np.array(  # 3.0 s: shorter than one window
        load_audio(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav")
    ),
    "noise": lambda: noise(7.0),
}


@pytest.fixture(scope="session")
def checkpoint() -> Path:
    return pyannote_load.fetch_checkpoint()


@pytest.fixture(scope="session")
def folder(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from convert.__main__ import main

    dst = tmp_path_factory.mktemp("pyannote") / "seg"
    assert main(["pyannote", str(checkpoint), str(dst)]) == 0
    return dst


@pytest.fixture(scope="session")
def vad(folder: Path) -> PyannoteVad:
    return PyannoteVad.load(folder, PyannoteOptions(batch_size=64))


RAW = ["sample", "librivox", "noise"]  # clips whose raw window outputs are compared


@pytest.fixture(scope="session")
def ref(
    checkpoint: Path, vad: PyannoteVad, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, np.ndarray]:
    """pyannote.audio's outputs for every clip (frames) and the RAW clips' windows."""
    request = {}
    for name, clip in CLIPS.items():
        audio = clip()
        request[f"audio:{name}"] = audio
        if name in RAW:
            layout = vad.layout(audio.shape[0])
            request[f"windows:{name}"] = np.array(vad.windows(mx.array(audio), layout))
    out = run_reference(checkpoint, request, tmp_path_factory.mktemp("pyannote-ref"))
    if out is None:
        pytest.skip("pyannote.audio missing: see .ci/run")
    return out


@pytest.mark.slow
def test_reader_matches_torch_state_dict(checkpoint: Path, ref: dict[str, np.ndarray]) -> None:
    from mlxwx.weights import torchbin

    ours = torchbin.load(checkpoint)["state_dict"]
    theirs = {k.split(":", 1)[1]: v for k, v in ref.items() if k.startswith("state:")}
    assert set(ours) == set(theirs)
    for name, value in theirs.items():
        np.testing.assert_array_equal(ours[name], value, err_msg=name)


@pytest.mark.slow  # the torch reference outputs take 20 s to compute
@pytest.mark.parametrize("clip", RAW)
def test_window_outputs_match(clip: str, vad: PyannoteVad, ref: dict[str, np.ndarray]) -> None:
    """Raw outputs per window, against pyannote.audio's float64 outputs: ours (float32) must be
    as close to them as torch's own float32 outputs are, within a factor of 2 (or TOL). Band-
    limited audio (sample.wav is telephone speech) leaves some SincNet bands near-empty; instance
    norm then scales their rounding noise up to 300x, so a float32 output can differ from float64
    by ~1.6e-2 there, by an amount that depends on the CPU's BLAS kernels (torch's and ours
    differ in both directions from one CPU to another: bench/RESULTS.md). A wrong weight or
    layout is off by 1e-1 or more."""
    audio = CLIPS[clip]()
    layout = vad.layout(audio.shape[0])
    expected, exact = ref[f"raw:{clip}"], ref[f"raw64:{clip}"]
    got = np.array(vad.window_scores(mx.array(audio)))
    assert got.shape == expected.shape == (len(layout.window_starts), 293, 3)
    ours, torch32 = np.abs(got - exact), np.abs(expected - exact)
    assert ours.max() <= max(TOL, 2 * torch32.max())
    assert ours.mean() <= max(TOL, 2 * torch32.mean())


@pytest.mark.slow
@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_frame_scores_match(clip: str, vad: PyannoteVad, ref: dict[str, np.ndarray]) -> None:
    audio = CLIPS[clip]()
    expected = ref[f"frames:{clip}"]
    hop, middle = ref[f"layout:{clip}"]
    got = vad(mx.array(audio))
    assert got.frames == expected.shape[0]
    assert got.hop == pytest.approx(hop, abs=1e-12)
    assert got.offset == pytest.approx(middle, abs=1e-12)
    assert np.abs(np.array(got.probs) - expected).max() <= TOL


def test_speech_and_noise_are_told_apart(vad: PyannoteVad) -> None:
    speech = vad(mx.array(CLIPS["librivox"]()))
    silence = vad(mx.zeros((16000 * 6,)))
    assert float(mx.mean(speech.probs > 0.5)) > 0.5
    assert float(mx.max(silence.probs)) < 0.5


def test_convert_refuses_overwrite_and_roundtrips(folder: Path, checkpoint: Path) -> None:
    from convert.__main__ import main

    assert main(["pyannote", str(checkpoint), str(folder)]) == 1  # exists
    cfg, weights = pyannote_load.read_checkpoint(checkpoint)
    loaded = dict(mx.load(str(folder / "weights.safetensors")))  # type: ignore[arg-type]
    assert set(loaded) == set(weights)
    for name, value in weights.items():
        np.testing.assert_array_equal(np.array(loaded[name]), value, err_msg=name)
    assert cfg.num_frames(80000) == 293


def test_not_a_checkpoint(tmp_path: Path) -> None:
    junk = tmp_path / "x.bin"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a PyTorch zip checkpoint"):
        pyannote_load.read_checkpoint(junk)
    with pytest.raises(ModelError, match=r"cannot read .*config\.json"):
        pyannote_load.load_folder(tmp_path)


def test_fetch_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLXWX_CACHE", str(tmp_path))

    def offline(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(packs.subprocess, "run", offline)
    with pytest.raises(ModelError) as err:
        PyannoteVad.load()
    assert "No matching distribution" in str(err.value) and "\n" not in str(err.value)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        PyannoteOptions(batch_size=0)
    with pytest.raises(ValueError, match="step"):
        PyannoteOptions(step=0.0)
