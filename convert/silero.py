"""Silero VAD (16 kHz network) -> MLX folder (config.json + weights.safetensors).

SRC is silero-vad's `silero_vad_16k_op15.onnx` (the weights its ONNX and TorchScript models run),
a `.safetensors` file under the tinygrad model's names, or a folder holding the op15 ONNX file
(the installed `silero_vad` package, an unzipped wheel). Note: the package's own
`silero_vad_16k.safetensors` (6.2.3) holds weights that differ from the models it runs.
"""

from __future__ import annotations

from pathlib import Path

from mlxwx.weights.silero import ONNX_FILE, read_weights, save_silero


def source_file(src: str | Path) -> Path:
    """The weights file named by `src` (a file, or a folder searched for the op15 ONNX file)."""
    src = Path(src)
    if src.is_dir():
        found = sorted(src.rglob(ONNX_FILE))
        if not found:
            raise ValueError(f"{src} holds no {ONNX_FILE}")
        return found[0]
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist")
    return src


def convert(src: str | Path, dst: str | Path) -> Path:
    """Convert silero weights at `src` into a new MLX folder `dst` (which must not exist)."""
    dst = Path(dst)
    if dst.exists():
        raise FileExistsError(f"refusing to overwrite {dst}")
    path = source_file(src)
    return save_silero(read_weights(path), dst, source=str(path))
