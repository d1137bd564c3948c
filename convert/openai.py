"""OpenAI Whisper `.pt` checkpoint (`{"dims": {...}, "model_state_dict": {...}}`) -> MLX folder.

The names are mlx-whisper's already, except the MLP (`mlp.0`/`mlp.2` -> `mlp1`/`mlp2`); convs are
transposed to channels-last and the encoder's sinusoidal table is checked and dropped. The file
holds no tokenizer and, usually, no alignment heads (openai-whisper keeps those as base85 dumps in
`whisper/__init__.py`): pass them in, or the default (every head of the last half of the layers) is
written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from mlxwx.models.whisper import ModelDimensions
from mlxwx.weights.ct2 import check_sinusoids
from mlxwx.weights.whisper import save_model

from . import alignment_pairs, check_consumed, check_output

_MODULE = r"(?:weight|bias)"
# Block parameters under their openai names; mlp.0/mlp.2 are renamed below.
_BLOCK = re.compile(
    rf"(encoder|decoder)\.blocks\.\d+\.((?:cross_)?attn\.(?:query|key|value|out)\.{_MODULE}"
    rf"|(?:cross_)?attn_ln\.{_MODULE}|mlp\.[02]\.{_MODULE}|mlp_ln\.{_MODULE})"
)
_TOP = {
    "encoder.conv1.weight",
    "encoder.conv1.bias",
    "encoder.conv2.weight",
    "encoder.conv2.bias",
    "encoder.ln_post.weight",
    "encoder.ln_post.bias",
    "decoder.token_embedding.weight",
    "decoder.positional_embedding",
    "decoder.ln.weight",
    "decoder.ln.bias",
}


def _numpy(value: Any) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_sparse:
            value = value.to_dense()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def load_checkpoint(path: str | Path) -> tuple[ModelDimensions, dict[str, np.ndarray]]:
    """Dimensions and numpy state dict of an openai-whisper `.pt` file (needs torch)."""
    try:
        import torch
    except ImportError:
        raise ValueError("reading a .pt checkpoint needs torch: pip install torch") from None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors have many types; report them in one line
        # torch's weights_only errors bury the reason after a long preamble
        lines = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()
        reason = lines[0] if lines else type(err).__name__
        raise ValueError(f"cannot read {path} as a PyTorch checkpoint: {reason}") from None
    if not isinstance(checkpoint, dict) or not {"dims", "model_state_dict"} <= checkpoint.keys():
        raise ValueError(f"{path} is not an openai-whisper checkpoint (no dims/model_state_dict)")
    dims = ModelDimensions.from_dict(dict(checkpoint["dims"]))
    state = {k: _numpy(v) for k, v in checkpoint["model_state_dict"].items()}
    if checkpoint.get("alignment_heads") is not None:  # some re-savers keep it beside the dict
        state.setdefault("alignment_heads", _numpy(checkpoint["alignment_heads"]))
    return dims, state


def map_openai_weights(src: dict[str, np.ndarray], dims: ModelDimensions) -> dict[str, np.ndarray]:
    """Pop every known tensor of `src` into mlx-whisper names; unknown ones stay in `src`."""
    out: dict[str, np.ndarray] = {}
    for key in list(src):
        if _BLOCK.fullmatch(key) or key in _TOP:
            name = key.replace(".mlp.0.", ".mlp1.").replace(".mlp.2.", ".mlp2.")
            out[name] = src.pop(key)
    for conv in ("conv1", "conv2"):  # PyTorch convs are (out, in, k); MLX's are (out, k, in)
        if (key := f"encoder.{conv}.weight") in out:
            out[key] = out[key].transpose(0, 2, 1)
    if "encoder.positional_embedding" in src:
        check_sinusoids(
            "encoder.positional_embedding",
            src.pop("encoder.positional_embedding"),
            dims.n_audio_ctx,
            dims.n_audio_state,
        )
    mask = src.get("decoder.mask")  # a non-persistent causal-mask buffer, if someone saved it
    if mask is not None and mask.shape == (dims.n_text_ctx, dims.n_text_ctx):
        del src["decoder.mask"]
    return out


def convert(
    src: str | Path,
    dst: str | Path,
    *,
    dtype: str = "float16",
    quantize: tuple[int, int] | None = None,
    tokenizer: str | Path | None = None,
    alignment_heads: Any = None,
) -> Path:
    """Convert the openai-whisper checkpoint `src` into a new MLX folder `dst`.

    quantize: (group_size, bits). tokenizer: a tokenizer.json to copy (the runtime fetches one by
    vocabulary size when absent). alignment_heads: pairs, a bool mask or openai's base85 dump;
    it overrides an `alignment_heads` buffer found in the checkpoint.
    """
    dst = check_output(dst, dtype)
    if tokenizer is not None and not Path(tokenizer).is_file():
        raise ValueError(f"tokenizer file not found: {tokenizer}")
    dims, state = load_checkpoint(src)
    stored = state.pop("alignment_heads", None)
    weights = map_openai_weights(state, dims)
    check_consumed(state, src)
    heads = alignment_heads if alignment_heads is not None else stored
    return save_model(
        dst,
        dims,
        weights,
        tokenizer_json=tokenizer,
        alignment_heads=alignment_pairs(heads, dims) if heads is not None else None,
        meta={"source": "openai"},
        dtype=dtype,
        quantize=quantize,
    )
