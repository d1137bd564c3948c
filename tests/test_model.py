"""Model shapes and dtypes: large-v3/turbo-shaped configs, float16/bfloat16 inference."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlxwx.asr.decoding import DecodingOptions, decode
from mlxwx.asr.model import column_major, column_major_steps, load_model
from mlxwx.audio import load_audio, window_mel
from mlxwx.models.whisper import ModelDimensions, Whisper


@pytest.mark.parametrize("n_text_layer", [4, 2])  # turbo keeps 4 of large-v3's 32 decoder layers
def test_large_v3_shapes(n_text_layer):
    """128 mel bins and vocabulary 51866 (large-v3 / turbo), scaled down in width and depth."""
    dims = ModelDimensions(
        n_mels=128,
        n_audio_ctx=1500,
        n_audio_state=64,
        n_audio_head=2,
        n_audio_layer=2,
        n_vocab=51866,
        n_text_ctx=448,
        n_text_state=64,
        n_text_head=2,
        n_text_layer=n_text_layer,
    )
    model = Whisper(dims)
    audio = model.encoder(mx.zeros((2, 3000, 128)))
    cache = model.decoder.new_cache(2, mx.float32)
    logits = model.decoder(mx.zeros((2, 3), mx.int32), model.decoder.cross_kv(audio), cache, 0)
    assert audio.shape == (2, 1500, 64) and logits.shape == (2, 3, 51866)
    assert dims.is_multilingual and model.alignment_heads.shape == (n_text_layer // 2 * 2, 2)
    with pytest.raises(ValueError, match="3000 mel frames"):
        model.encoder(mx.zeros((1, 2000, 128)))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_half_precision_decodes_like_float32(tiny_en_dir, jfk_path, dtype):
    mel = window_mel(a := load_audio(jfk_path), 0, a.shape[0], 80)[None]
    greedy = DecodingOptions(beam_size=1)
    ref = decode(load_model(str(tiny_en_dir), dtype=mx.float32), mel, greedy)[0]
    wm = load_model(str(tiny_en_dir), dtype=dtype)
    assert wm.model.decoder.token_embedding.weight.dtype == dtype
    out = decode(wm, mel, greedy)[0]
    words = lambda t: "".join(c for c in t.lower() if c.isalpha() or c == " ").split()  # noqa: E731
    assert words(out.text) == words(ref.text)
    assert np.isfinite(out.avg_logprob) and abs(out.avg_logprob - ref.avg_logprob) < 0.1


def test_fused_projections_compute_what_the_three_layers_do():
    """`Whisper.fuse`: one (3D, D) matmul for query, key and value gives the encoder's features
    and the decoder's logits of the separate layers; the parameters keep their names and values
    (views of the fused matrix: no more memory), so the checkpoint saves as before."""
    dims = ModelDimensions(80, 1500, 64, 2, 2, 51864, 448, 64, 1, 2)
    model = Whisper(dims)
    mx.eval(model.parameters())
    before = {k: np.array(v) for k, v in tree_flatten(model.parameters())}
    mel = mx.random.normal((2, 3000, 80), key=mx.random.key(0))
    tokens = mx.array([[50257, 50362, 440, 1110], [50257, 50362, 50363, 290]])

    def run() -> tuple[np.ndarray, np.ndarray]:
        audio = model.encoder(mel)
        cache = model.decoder.new_cache(2, mx.float32)
        return np.array(audio), np.array(
            model.decoder(tokens, model.decoder.cross_kv(audio), cache, 0)
        )

    plain = run()
    model.fuse()
    assert all(getattr(b.attn, "_qkv", None) is not None for b in model.decoder.blocks)
    fused = run()
    for a, b in zip(plain, fused, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    after = {k: np.array(v) for k, v in tree_flatten(model.parameters())}
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # weights replaced after fusing are used, not the fused copy of the old ones
    block = model.encoder.blocks[0].attn
    block.update({"key": {"weight": mx.random.normal(block.key.weight.shape)}})
    changed = run()
    assert not np.allclose(changed[0], fused[0], atol=1e-3)
    del block["_qkv"]
    np.testing.assert_allclose(run()[0], changed[0], rtol=1e-4, atol=1e-4)


def test_column_major_step_matrices_compute_the_same():
    """`column_major_steps` (the CPU's layout for a decode step's matrices) changes how the
    weights are stored, not what they are: the same parameters, the same logits, prompt and
    one-token steps alike."""
    dims = ModelDimensions(80, 1500, 64, 2, 2, 51864, 448, 64, 1, 2)
    model = Whisper(dims)
    mx.eval(model.parameters())
    audio = model.encoder(mx.random.normal((2, 3000, 80), key=mx.random.key(1)))
    tokens = mx.array([[50257, 50362, 440, 1110], [50257, 50362, 50363, 290]])

    def run() -> list[np.ndarray]:
        cache = model.decoder.new_cache(2, mx.float32)
        kv = model.decoder.cross_kv(audio)
        prompt = model.decoder(tokens[:, :3], kv, cache, 0)
        return [np.array(prompt), np.array(model.decoder(tokens[:, 3:], kv, cache, 3))]

    model.fuse()
    before = {k: np.array(v) for k, v in tree_flatten(model.parameters())}
    plain = run()
    model.fuse(column_major)
    column_major_steps(model)
    for a, b in zip(plain, run(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    after = {k: np.array(v) for k, v in tree_flatten(model.parameters())}
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_loaded_models_are_fused(wm):
    assert all(getattr(b.attn, "_qkv", None) is not None for b in wm.model.encoder.blocks)
