"""The MLX Whisper folder (`mlxwx.weights.folder`'s format): what converters write and
`mlxwx.asr.model` reads.

A folder holds
- `config.json`: the `ModelDimensions` fields, `"model_type": "whisper"` and, when quantized,
  `"quantization": {"group_size", "bits"}`. Nothing else: mlx-whisper passes every other key to its
  dimensions dataclass, so extra keys would break loading there.
- `weights.safetensors`: parameters under mlx-whisper's names (convs channels-last `(out, k, in)`),
  plus `alignment_heads` (N, 2) int32, as mlx-whisper stores them.
- `tokenizer.json`: the Hugging Face `tokenizers` file for the vocabulary.
- `mlxwx.json`: decoding metadata the checkpoint came with (`suppress_tokens`,
  `begin_suppress_tokens`, `source`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..models.whisper import ModelDimensions, Whisper
from .folder import parameters, save_folder

TOKENIZER_FILE = "tokenizer.json"
META_FILE = "mlxwx.json"
DTYPES = {"float16": mx.float16, "bfloat16": mx.bfloat16, "float32": mx.float32}


def quantize_predicate(group_size: int):
    """Linear and Embedding layers whose input width divides into groups; convs stay dense."""

    def predicate(_path: str, module: nn.Module) -> bool:
        if not isinstance(module, (nn.Linear, nn.Embedding)):
            return False
        return module.weight.shape[-1] % group_size == 0

    return predicate


def check_weights(dims: ModelDimensions, weights: Mapping[str, Any]) -> None:
    """Raise ValueError unless `weights` has exactly the model's parameter names and shapes."""
    expected = {k: v.shape for k, v in parameters(Whisper(dims)).items()}
    expected.pop("alignment_heads")
    got = {k: tuple(v.shape) for k, v in weights.items() if k != "alignment_heads"}
    missing, unexpected = expected.keys() - got.keys(), got.keys() - expected.keys()
    if missing or unexpected:
        raise ValueError(
            f"weights do not match the model: missing {sorted(missing)[:5]}"
            f" ({len(missing)}), unexpected {sorted(unexpected)[:5]} ({len(unexpected)})"
        )
    bad = [f"{k}: {got[k]} != {tuple(s)}" for k, s in expected.items() if got[k] != tuple(s)]
    if bad:
        raise ValueError(f"weight shapes do not match the model: {bad[:5]}")


def save_model(
    dst: str | Path,
    dims: ModelDimensions,
    weights: Mapping[str, Any],
    *,
    tokenizer_json: str | Path | None,
    alignment_heads: Any = None,
    meta: Mapping[str, Any] | None = None,
    dtype: str = "float16",
    quantize: tuple[int, int] | None = None,
) -> Path:
    """Write an MLX Whisper folder at `dst` (which must not exist), atomically.

    weights: mlx-whisper names -> numpy or MLX arrays, checked against the model's names and
    shapes. alignment_heads: (N, 2) [layer, head] pairs. quantize: (group_size, bits).
    """
    dst = Path(dst)
    if dst.exists():
        raise FileExistsError(f"refusing to overwrite {dst}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    check_weights(dims, weights)
    model = Whisper(dims)
    if alignment_heads is None:
        alignment_heads = weights.get("alignment_heads", model.alignment_heads)
    model.alignment_heads = mx.array(np.asarray(alignment_heads, dtype=np.int32).reshape(-1, 2))
    cast = DTYPES[dtype]
    dense = [
        (k, mx.array(np.asarray(v)).astype(cast))
        for k, v in weights.items()
        if k != "alignment_heads"
    ]
    model.load_weights([*dense, ("alignment_heads", model.alignment_heads)], strict=True)
    if quantize is not None:
        nn.quantize(model, *quantize, class_predicate=quantize_predicate(quantize[0]))
    return save_folder(
        dst,
        "whisper",
        dims,
        model,
        files={TOKENIZER_FILE: tokenizer_json} if tokenizer_json is not None else None,
        texts={META_FILE: json.dumps(dict(meta or {}), indent=2) + "\n"},
        quantization=quantize,
    )
