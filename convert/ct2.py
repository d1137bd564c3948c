"""CTranslate2 Whisper folder (`model.bin`, `config.json`, `tokenizer.json`) -> MLX folder."""

from __future__ import annotations

from pathlib import Path

from mlxwx.weights.ct2 import read_ct2
from mlxwx.weights.whisper import save_model

from . import check_output


def convert(
    src: str | Path,
    dst: str | Path,
    *,
    dtype: str = "float16",
    quantize: tuple[int, int] | None = None,
) -> Path:
    """Convert the CTranslate2 folder `src` into a new MLX folder `dst`.

    quantize: (group_size, bits). Carries the alignment heads and suppress lists of config.json
    and copies tokenizer.json when present.
    """
    dst = check_output(dst, dtype)
    src = Path(src)
    dims, weights, meta = read_ct2(src)
    tokenizer = src / "tokenizer.json"
    return save_model(
        dst,
        dims,
        weights,
        tokenizer_json=tokenizer if tokenizer.exists() else None,
        alignment_heads=meta.pop("alignment_heads", None),
        meta=meta,
        dtype=dtype,
        quantize=quantize,
    )
