"""pyannote segmentation v2 checkpoint (PyanNet, e.g. WhisperX's `assets/pytorch_model.bin`) ->
MLX folder (`config.json` + `weights.safetensors`), read without torch."""

from __future__ import annotations

from pathlib import Path

from mlxwx.weights.pyannote import fetch_checkpoint, read_checkpoint, save_pyannote


def convert(src: str | Path | None, dst: str | Path) -> Path:
    """Convert the checkpoint file `src` into a new folder `dst` (float32, as trained).

    src None: the checkpoint inside the whisperx wheel, fetched with pip into the cache."""
    dst = Path(dst)
    if dst.exists():
        raise FileExistsError(f"refusing to overwrite {dst}")
    cfg, weights = read_checkpoint(fetch_checkpoint() if src is None else src)
    return save_pyannote(dst, cfg, weights)
