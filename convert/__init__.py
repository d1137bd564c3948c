"""Checkpoint converters: CTranslate2, Hugging Face and OpenAI Whisper -> MLX Whisper folders.

Each module has `convert(src, dst, *, dtype="float16", quantize=None, ...) -> Path`; they map names
and layouts, then hand the weights to `mlxwx.weights.whisper.save_model`, which checks the key
set and shapes, refuses to overwrite and writes atomically. `python -m convert {ct2,hf,openai}
SRC DST` is the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlxwx.weights.heads import alignment_pairs
from mlxwx.weights.whisper import DTYPES

__all__ = ["alignment_pairs", "check_consumed", "check_output"]


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
