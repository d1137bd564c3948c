"""Hugging Face `WhisperForConditionalGeneration` folder -> MLX folder.

Reads `config.json`, the weights (`model.safetensors`, sharded `model-*.safetensors` with
`model.safetensors.index.json`, or `pytorch_model.bin`[.index.json] through torch), and
`generation_config.json` (alignment heads, suppress lists) and `tokenizer.json` when present.
`to_hf_weights` and `hf_config` go the other way (our weights into a transformers model, for
benchmarks on the same weights).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlxwx.models.whisper import ModelDimensions, sinusoids
from mlxwx.weights.ct2 import check_sinusoids
from mlxwx.weights.whisper import save_model

from . import alignment_pairs, check_consumed, check_output

# HF module names inside an encoder/decoder layer -> ours inside a block.
LAYER_NAMES = {
    "self_attn.q_proj": "attn.query",
    "self_attn.k_proj": "attn.key",
    "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out",
    "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query",
    "encoder_attn.k_proj": "cross_attn.key",
    "encoder_attn.v_proj": "cross_attn.value",
    "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln",
    "fc1": "mlp1",
    "fc2": "mlp2",
    "final_layer_norm": "mlp_ln",
}
TOP_NAMES = {
    "encoder.conv1": "encoder.conv1",
    "encoder.conv2": "encoder.conv2",
    "encoder.layer_norm": "encoder.ln_post",
    "decoder.embed_tokens": "decoder.token_embedding",
    "decoder.layer_norm": "decoder.ln",
}
_LAYER = re.compile(r"(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)")
_TOP = re.compile(r"(.+)\.(weight|bias)")


def hf_dims(config: dict[str, Any]) -> ModelDimensions:
    """Dimensions from an HF WhisperConfig dict; ValueError for variants our model lacks."""
    if config.get("model_type") != "whisper":
        raise ValueError(f"not a Whisper config (model_type {config.get('model_type')!r})")
    try:
        return _hf_dims(config)
    except KeyError as err:
        raise ValueError(f"Whisper config lacks {err.args[0]}") from None


def _hf_dims(config: dict[str, Any]) -> ModelDimensions:
    d = config["d_model"]
    checks = {
        "activation_function": (config.get("activation_function", "gelu"), "gelu"),
        "scale_embedding": (bool(config.get("scale_embedding", False)), False),
        "encoder_ffn_dim": (config.get("encoder_ffn_dim", 4 * d), 4 * d),
        "decoder_ffn_dim": (config.get("decoder_ffn_dim", 4 * d), 4 * d),
    }
    for key, (got, want) in checks.items():
        if got != want:
            raise ValueError(f"unsupported Whisper variant: {key}={got!r} (need {want!r})")
    return ModelDimensions(
        n_mels=config["num_mel_bins"],
        n_audio_ctx=config["max_source_positions"],
        n_audio_state=d,
        n_audio_head=config["encoder_attention_heads"],
        n_audio_layer=config["encoder_layers"],
        n_vocab=config["vocab_size"],
        n_text_ctx=config["max_target_positions"],
        n_text_state=d,
        n_text_head=config["decoder_attention_heads"],
        n_text_layer=config["decoder_layers"],
    )


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(path), framework="np") as f:
        bf16 = any(f.get_slice(k).get_dtype() == "BF16" for k in f.keys())  # noqa: SIM118
    if not bf16:
        return load_file(str(path))
    # numpy has no bfloat16: let MLX read the file and widen those tensors to float32.
    import mlx.core as mx

    loaded = mx.load(str(path))
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: not a safetensors file")
    return {
        k: np.array(v.astype(mx.float32) if v.dtype == mx.bfloat16 else v)
        for k, v in loaded.items()
    }


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ValueError(f"{path} needs torch to read: pip install torch") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in state.items()}


def read_hf_weights(folder: Path) -> dict[str, np.ndarray]:
    """All tensors of an HF folder, whichever of the usual files holds them."""
    for index, reader in (
        ("model.safetensors.index.json", _read_safetensors),
        ("pytorch_model.bin.index.json", _read_torch),
    ):
        if (folder / index).exists():
            shards = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
            out: dict[str, np.ndarray] = {}
            for shard in shards:
                out.update(reader(folder / shard))
            return out
    if (folder / "model.safetensors").exists():
        return _read_safetensors(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").exists():
        return _read_torch(folder / "pytorch_model.bin")
    raise ValueError(f"{folder} has no model.safetensors or pytorch_model.bin")


def hf_name(key: str) -> str | None:
    """Our name for an HF tensor name (with or without the `model.` prefix); None if none."""
    name = key.removeprefix("model.")  # WhisperModel checkpoints lack the prefix
    if m := _LAYER.fullmatch(name):
        side, i, module, param = m.groups()
        if module in LAYER_NAMES and (side == "decoder" or "encoder_attn" not in module):
            return f"{side}.blocks.{i}.{LAYER_NAMES[module]}.{param}"
        return None
    if name == "decoder.embed_positions.weight":
        return "decoder.positional_embedding"
    if (m := _TOP.fullmatch(name)) and m[1] in TOP_NAMES:
        return f"{TOP_NAMES[m[1]]}.{m[2]}"
    return None


def map_hf_weights(src: dict[str, np.ndarray], dims: ModelDimensions) -> dict[str, np.ndarray]:
    """Pop every mapped tensor of `src` (HF names) into mlx-whisper names; leftovers stay."""
    out: dict[str, np.ndarray] = {}
    proj = None
    for key in list(src):
        if key.removeprefix("model.") == "encoder.embed_positions.weight":
            check_sinusoids(key, src.pop(key), dims.n_audio_ctx, dims.n_audio_state)
        elif key == "proj_out.weight":  # tied to the embedding: usually not saved at all
            proj = src.pop(key)
        elif (name := hf_name(key)) is not None:
            out[name] = src.pop(key)
    for conv in ("conv1", "conv2"):  # PyTorch convs are (out, in, k); MLX's are (out, k, in)
        if (key := f"encoder.{conv}.weight") in out:
            out[key] = out[key].transpose(0, 2, 1)
    embed = out.get("decoder.token_embedding.weight")
    if proj is not None and (embed is None or not np.array_equal(proj, embed)):
        raise ValueError("proj_out.weight is not tied to embed_tokens; Whisper ties them")
    return out


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def convert(
    src: str | Path,
    dst: str | Path,
    *,
    dtype: str = "float16",
    quantize: tuple[int, int] | None = None,
) -> Path:
    """Convert the Hugging Face Whisper folder `src` into a new MLX folder `dst`.

    quantize: (group_size, bits). Alignment heads and suppress lists come from
    generation_config.json (or config.json, where older checkpoints keep them).
    """
    dst = check_output(dst, dtype)
    src = Path(src)
    config = _read_json(src / "config.json")
    if not config:
        raise ValueError(f"{src} has no config.json")
    dims = hf_dims(config)
    tensors = read_hf_weights(src)
    weights = map_hf_weights(tensors, dims)
    check_consumed(tensors, src)
    generation = _read_json(src / "generation_config.json")
    keys = ("alignment_heads", "suppress_tokens", "begin_suppress_tokens")
    settings = {k: generation[k] if generation.get(k) is not None else config.get(k) for k in keys}
    heads = settings.pop("alignment_heads")
    meta = {k: [int(t) for t in v] for k, v in settings.items() if v is not None}
    tokenizer = src / "tokenizer.json"
    return save_model(
        dst,
        dims,
        weights,
        tokenizer_json=tokenizer if tokenizer.exists() else None,
        alignment_heads=alignment_pairs(heads, dims) if heads is not None else None,
        meta={**meta, "source": "huggingface"},
        dtype=dtype,
        quantize=quantize,
    )


# ------------------------------------------------------------------ MLX -> Hugging Face (reverse)


def hf_config(dims: ModelDimensions) -> dict[str, Any]:
    """WhisperConfig keyword arguments for `dims` (the inverse of `hf_dims`). Token ids are left
    to the caller: they belong to the vocabulary, not the dimensions."""
    if dims.n_audio_state != dims.n_text_state:
        raise ValueError("transformers' Whisper needs n_audio_state == n_text_state")
    d = dims.n_text_state
    return {
        "vocab_size": dims.n_vocab,
        "num_mel_bins": dims.n_mels,
        "d_model": d,
        "encoder_layers": dims.n_audio_layer,
        "encoder_attention_heads": dims.n_audio_head,
        "decoder_layers": dims.n_text_layer,
        "decoder_attention_heads": dims.n_text_head,
        "encoder_ffn_dim": 4 * d,
        "decoder_ffn_dim": 4 * d,
        "max_source_positions": dims.n_audio_ctx,
        "max_target_positions": dims.n_text_ctx,
        "activation_function": "gelu",
        "scale_embedding": False,
    }


def to_hf_name(name: str) -> str | None:
    """The HF `WhisperForConditionalGeneration` name of one of our parameters; None for names
    HF does not store (alignment_heads)."""
    if name == "decoder.positional_embedding":
        return "model.decoder.embed_positions.weight"
    if m := re.fullmatch(r"(encoder|decoder)\.blocks\.(\d+)\.(.+)\.(weight|bias)", name):
        side, i, module, param = m.groups()
        hf_module = {v: k for k, v in LAYER_NAMES.items()}[module]
        return f"model.{side}.layers.{i}.{hf_module}.{param}"
    if (m := _TOP.fullmatch(name)) and m[1] in TOP_NAMES.values():
        hf_module = {v: k for k, v in TOP_NAMES.items()}[m[1]]
        return f"model.{hf_module}.{m[2]}"
    return None


def to_hf_weights(weights: Mapping[str, Any], dims: ModelDimensions) -> dict[str, np.ndarray]:
    """HF state dict (numpy, dtype kept) for our weights (mlx-whisper names, convs (out, k, in)).

    Adds the encoder's sinusoidal table, which HF stores and we compute; leaves out `proj_out`
    (tied to the token embedding: call `model.tie_weights()` after loading) and alignment heads.
    Raises ValueError for a name with no HF counterpart.
    """
    out: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        if name == "alignment_heads":
            continue
        hf = to_hf_name(name)
        if hf is None:
            raise ValueError(f"no Hugging Face name for {name!r}")
        array = np.asarray(value)
        if name in ("encoder.conv1.weight", "encoder.conv2.weight"):
            array = array.transpose(0, 2, 1)  # MLX (out, k, in) -> PyTorch (out, in, k)
        out[hf] = np.ascontiguousarray(array)
    dtype = out["model.decoder.embed_tokens.weight"].dtype
    table = np.array(sinusoids(dims.n_audio_ctx, dims.n_audio_state))
    out["model.encoder.embed_positions.weight"] = table.astype(dtype)
    return out
