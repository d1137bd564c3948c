"""Checkpoint converters: CTranslate2, Hugging Face and OpenAI Whisper -> MLX Whisper folders.

Each module has `convert(src, dst, *, dtype="float16", quantize=None, ...) -> Path`; they map names
and layouts, then hand the weights to `mlxwx.weights.whisper.save_model`, which checks the key
set and shapes, refuses to overwrite and writes atomically. `python -m convert {ct2,hf,openai}
SRC DST` is the command line.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlxwx.models.whisper import ModelDimensions
from mlxwx.weights.whisper import DTYPES


def check_output(dst: str | Path, dtype: str) -> Path:
    """Fail before reading the source: `dst` must not exist and `dtype` must be known."""
    dst = Path(dst)
    if dst.exists():
        raise FileExistsError(f"refusing to overwrite {dst}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return dst


def check_consumed(leftover: Mapping[str, Any], src: str | Path) -> None:
    """Raise if any source tensor was not mapped: a silently dropped tensor is a wrong model."""
    if leftover:
        names = sorted(leftover)
        raise ValueError(f"{src}: unused tensors {names[:8]} ({len(names)} in all)")


def alignment_pairs(value: Any, dims: ModelDimensions) -> list[list[int]]:
    """[[layer, head], ...] from pairs, a JSON string of pairs, a (n_text_layer, n_text_head)
    boolean mask, or openai-whisper's base85 gzip dump of that mask (`_ALIGNMENT_HEADS`)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            raw = gzip.decompress(base64.b85decode(text))
            value = np.frombuffer(raw, dtype=bool).copy()
            if value.size != dims.n_text_layer * dims.n_text_head:
                raise ValueError(
                    f"alignment-head dump holds {value.size} flags, the decoder "
                    f"has {dims.n_text_layer}x{dims.n_text_head} heads"
                )
            value = value.reshape(dims.n_text_layer, dims.n_text_head)
    array = np.asarray(value)
    if array.dtype == bool:
        if array.shape != (dims.n_text_layer, dims.n_text_head):
            raise ValueError(
                f"alignment-head mask shape {array.shape} != "
                f"{(dims.n_text_layer, dims.n_text_head)}"
            )
        array = np.argwhere(array)
    pairs = [[int(layer), int(head)] for layer, head in array.reshape(-1, 2)]
    bad = [p for p in pairs if not (0 <= p[0] < dims.n_text_layer and 0 <= p[1] < dims.n_text_head)]
    if bad:
        raise ValueError(
            f"alignment heads out of range for {dims.n_text_layer} layers x "
            f"{dims.n_text_head} heads: {bad[:4]}"
        )
    return pairs
