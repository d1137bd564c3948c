"""Model shapes and dtypes: large-v3/turbo-shaped configs, float16/bfloat16 inference."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlxwx.asr.decoding import DecodingOptions, decode
from mlxwx.asr.model import load_model
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
