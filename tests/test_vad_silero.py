"""Silero VAD in MLX against silero-vad's own ONNX model (onnxruntime), on speech and noise.

The reference is fed exactly as silero's `OnnxWrapper` feeds it: each 512-sample window with the
64 samples before it (zeros first) and the LSTM state of the previous call, the last window
zero-padded.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from convert.__main__ import main as convert_main
from mlxwx.audio import load_audio
from mlxwx.errors import ModelError
from mlxwx.vad import SileroOptions, SileroVad, SpeechProbs, VadOptions, binarize, load_silero
from mlxwx.weights import silero as silero_mod

from .speech import import_silero

DATA = Path(__file__).parent / "data"
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def _package_data() -> Path:
    silero = import_silero()
    return Path(silero.__file__).parent / "data"


@pytest.fixture(scope="session")
def silero_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The installed package's weights converted by `python -m convert silero`."""
    dst = tmp_path_factory.mktemp("silero") / "silero-vad"
    assert convert_main(["silero", str(_package_data().parent), str(dst)]) == 0
    return dst


@pytest.fixture(scope="session")
def vad(silero_dir: Path) -> SileroVad:
    return SileroVad(load_silero(silero_dir), SileroOptions(sequential=True))


@pytest.fixture(scope="session")
def onnx_session():  # type: ignore[no-untyped-def]
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime missing: pip install -e '.[dev]'")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    path = str(_package_data() / "silero_vad.onnx")
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=opts)


def onnx_probs(session, audio: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    n = -(-len(audio) // 512)
    padded = np.pad(audio, (0, n * 512 - len(audio)))[None]
    state, context, out = np.zeros((2, 1, 128), np.float32), np.zeros((1, 64), np.float32), []
    sr = np.array(16000, np.int64)
    for i in range(n):
        x = np.concatenate([context, padded[:, i * 512 : (i + 1) * 512]], axis=1)
        prob, state = session.run(None, {"input": x, "state": state, "sr": sr})
        context = x[:, -64:]
        out.append(prob[0, 0])
    return np.asarray(out, np.float32)


def clips() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    out = {
        "jfk": np.array(load_audio(DATA / "jfk.flac")),
        "sample": np.array(load_audio(DATA / "sample.wav")),
        "synthconv": np.array(load_audio(DATA / "synthconv.wav")),
        "white-noise": rng.normal(0, 0.2, 8 * 16000 + 77).astype(np.float32),
        "brown-noise": (np.cumsum(rng.normal(0, 0.01, 8 * 16000)) * 0.05).astype(np.float32),
        "silence": np.zeros(3 * 16000, np.float32),
    }
    librivox = LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0890.wav"
    if librivox.exists():
        out["librivox"] = np.array(load_audio(librivox))
    return out


CLIPS = clips()


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_probabilities_match_onnx(vad: SileroVad, onnx_session, name: str) -> None:  # type: ignore[no-untyped-def]
    audio = CLIPS[name]
    ref = onnx_probs(onnx_session, audio)
    got = vad(mx.array(audio))
    assert got.hop == 0.032 and got.frames == len(ref)
    assert np.abs(np.array(got.probs) - ref).max() <= 1e-3
    if name in ("jfk", "sample", "synthconv"):  # speech: both states are really visited
        assert ref.max() > 0.9 and ref.min() < 0.1


def test_timestamps_match_get_speech_timestamps(vad: SileroVad) -> None:
    silero = import_silero()
    import torch

    model = silero.load_silero_vad(onnx=True)
    audio = np.concatenate([CLIPS["sample"], CLIPS["white-noise"] * 0.1, CLIPS["jfk"]])
    cases = [
        ({}, VadOptions.silero()),
        (
            {"threshold": 0.6, "max_speech_duration_s": 5.0},
            VadOptions.silero(onset=0.6, max_speech=5.0),
        ),
    ]
    for kwargs, o in cases:
        ref = silero.get_speech_timestamps(torch.from_numpy(audio), model, **kwargs)
        found = binarize(vad(mx.array(audio)), o, len(audio) / 16000)
        got = [{"start": round(r.start * 16000), "end": round(r.end * 16000)} for r in found]
        assert got == ref and len(ref) >= 5


@pytest.mark.slow
def test_streams_equal_sequential(silero_dir: Path) -> None:
    """Streams whose warm-up reaches back to the file start are exact (their state is held at
    zero before it); with the default warm-up (197 s) a stream starting 262 s in has settled."""
    net = load_silero(silero_dir)
    speech = np.concatenate([CLIPS["sample"], CLIPS["synthconv"], CLIPS["white-noise"] * 0.05])
    audio = mx.array(np.tile(speech, 7)[: 6 * 60 * 16000])  # 6 min: 11250 windows, 3 streams
    seq = np.array(SileroVad(net, SileroOptions(sequential=True))(audio).probs)
    small = SileroOptions(
        sequential=False, block=400, warmup=1000, scan_steps=300, encode_windows=700
    )
    short = np.array(SileroVad(net, small)(audio[: 60 * 16000]).probs)  # 1875 windows, 5 streams
    assert len(short) == 1875
    assert np.abs(short[:1200] - seq[:1200]).max() < 1e-5  # streams 0-2 start before window 0
    default = SileroVad(net, SileroOptions(sequential=False))  # default block and warm-up
    assert len(audio) // 512 > default.options.warmup + default.options.block  # really streamed
    streamed = np.array(default(audio).probs)
    assert len(streamed) == len(seq)
    assert np.abs(streamed - seq).max() < 1e-4


def test_empty_and_short_inputs(vad: SileroVad) -> None:
    assert vad(mx.zeros((0,))).frames == 0
    p = vad(mx.zeros((1,)))
    assert isinstance(p, SpeechProbs) and p.frames == 1


def test_converter_refuses_and_reports(silero_dir: Path, tmp_path: Path) -> None:
    assert convert_main(["silero", str(_package_data()), str(silero_dir)]) == 1  # exists
    assert convert_main(["silero", str(tmp_path), str(tmp_path / "out")]) == 1  # no weights
    # the package's safetensors file converts (same names and shapes) ...
    out = tmp_path / "st"
    assert (
        convert_main(["silero", str(_package_data() / "silero_vad_16k.safetensors"), str(out)]) == 0
    )
    # ... but holds other weights than the models silero-vad runs (see mlxwx/vad/silero.py)
    audio = mx.array(CLIPS["jfk"])
    a = np.array(SileroVad(load_silero(out), SileroOptions(sequential=True))(audio).probs)
    b = np.array(SileroVad(load_silero(silero_dir), SileroOptions(sequential=True))(audio).probs)
    assert np.abs(a - b).max() > 0.05


def test_shipped_folder_is_the_conversion_of_its_source(tmp_path: Path) -> None:
    """The folder shipped in mlxwx is exactly what `write_shipped` makes from the installed
    silero-vad 6.2.3 (so it cannot drift from its source): tensors, config.json, LICENSE."""
    if silero_mod.installed_onnx() is None:
        pytest.skip("silero-vad missing (the shipped folder's source): pip install -e '.[dev]'")
    fresh = silero_mod.write_shipped(tmp_path / "fresh")
    shipped = silero_mod.SHIPPED
    assert sorted(p.name for p in shipped.iterdir()) == [
        "LICENSE",
        "config.json",
        "weights.safetensors",
    ]
    assert sorted(p.name for p in fresh.iterdir()) == sorted(p.name for p in shipped.iterdir())
    for name in ("LICENSE", "config.json"):
        assert (fresh / name).read_text() == (shipped / name).read_text()
    assert "MIT License" in (shipped / "LICENSE").read_text()
    ours, theirs = (
        mx.load(str(shipped / "weights.safetensors")),
        mx.load(str(fresh / "weights.safetensors")),
    )
    assert isinstance(ours, dict) and isinstance(theirs, dict) and ours.keys() == theirs.keys()
    for k, v in ours.items():
        assert v.dtype == mx.float32 and np.array_equal(np.array(v), np.array(theirs[k])), k
    with pytest.raises(FileExistsError):
        silero_mod.write_shipped()  # never over the shipped folder


def test_write_shipped_wants_its_release(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(silero_mod, "installed_onnx", lambda: (tmp_path / "x.onnx", "6.3.0"))
    with pytest.raises(ModelError, match=r"pip install --no-deps silero-vad==6\.2\.3"):
        silero_mod.write_shipped(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _no_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent() -> None:
        raise AssertionError("the silero-vad package was looked for")

    monkeypatch.setattr(silero_mod, "installed_onnx", absent)


def test_default_is_the_shipped_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, silero_dir: Path
) -> None:
    """No package, no cache, no subprocess: `load_silero()` reads the folder inside mlxwx,
    which runs as the installed package's converted weights do."""
    monkeypatch.setenv("MLXWX_CACHE", str(tmp_path))
    _no_package(monkeypatch)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("subprocess run"))
    assert silero_mod.silero_folder() == silero_mod.SHIPPED
    audio = mx.array(CLIPS["jfk"])
    a = np.array(SileroVad(load_silero(), SileroOptions(sequential=True))(audio).probs)
    b = np.array(SileroVad(load_silero(silero_dir), SileroOptions(sequential=True))(audio).probs)
    assert np.array_equal(a, b) and a.max() > 0.9
    assert not any(tmp_path.iterdir())


def test_cache_converts_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the shipped folder, the installed package's weights are converted once."""
    _package_data()
    monkeypatch.setenv("MLXWX_CACHE", str(tmp_path))
    monkeypatch.setattr(silero_mod, "SHIPPED", tmp_path / "not-shipped")
    folder = silero_mod.silero_folder()
    assert folder.parent == tmp_path / "models" and (folder / "weights.safetensors").exists()
    stamp = (folder / "weights.safetensors").stat().st_mtime_ns
    load_silero()
    assert (folder / "weights.safetensors").stat().st_mtime_ns == stamp


def test_missing_weights_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither shipped folder nor package: one line naming a torch-free install, no pip run."""
    monkeypatch.setenv("MLXWX_CACHE", str(tmp_path))
    monkeypatch.setattr(silero_mod, "SHIPPED", tmp_path / "not-shipped")
    monkeypatch.setattr(silero_mod, "installed_onnx", lambda: None)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("subprocess run"))
    with pytest.raises(
        ModelError, match=r"reinstall mlxwx.*pip install --no-deps silero-vad==6\.2\.3"
    ) as err:
        load_silero()
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="cannot read"):
        load_silero(tmp_path / "nothing")
