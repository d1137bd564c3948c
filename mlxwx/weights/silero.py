"""Silero VAD (v6, 16 kHz) weights: from the `silero-vad` package into an MLX model folder.

The package (6.2.3) ships its network as ONNX and TorchScript models and as
`silero_vad_16k.safetensors`; that safetensors file holds OTHER weights than the models the package
runs (its probabilities differ from `silero_vad.onnx` by up to 0.4), so the converter reads the
tensors of `silero_vad_16k_op15.onnx` (the same weights as `silero_vad.onnx` and `.jit`, under
PyTorch names) with `mlxwx.weights.onnx`: no `onnx` or `torch` needed. The first use converts
them into `$MLXWX_CACHE/models/silero-vad-<version>` (from the installed package, or else from the
wheel that `pip download` fetches); later uses read that folder.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import tempfile
from pathlib import Path

import mlx.core as mx
import numpy as np

from ..errors import ModelError
from ..models.silero import SileroConfig, SileroVadNet
from .folder import cached, load_folder, parameters, save_folder
from .onnx import read_onnx
from .packs import wheel_member

logger = logging.getLogger(__name__)

MODEL_TYPE = "silero_vad"
PACKAGE = "silero-vad"
VERSION = "6.2.3"  # the wheel fetched when the package is not installed
ONNX_FILE = "silero_vad_16k_op15.onnx"
_ONNX_PREFIX = "model."
_ONNX_NAMES = {  # PyTorch names in the package's models -> ours (those of its tinygrad model)
    "stft.forward_basis_buffer": "stft_conv.weight",
    **{
        f"encoder.{i}.reparam_conv.{p}": f"conv{i + 1}.{p}"
        for i in range(4)
        for p in ("weight", "bias")
    },
    **{
        f"decoder.rnn.{p}": f"lstm_cell.{p}"
        for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    },
    "decoder.decoder.2.weight": "final_conv.weight",
    "decoder.decoder.2.bias": "final_conv.bias",
}


def _ours(name: str) -> str | None:
    return _ONNX_NAMES.get(name.removeprefix(_ONNX_PREFIX))


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Tensors of a silero `.onnx` (PyTorch names) or `.safetensors` (tinygrad names) file,
    in PyTorch layout under our names."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return dict(load_file(str(path)))
    found = read_onnx(path, keep=lambda name: _ours(name) is not None)
    return {_ours(k) or k: v for k, v in found.items()}


def save_silero(weights: dict[str, np.ndarray], dst: str | Path, source: str = "") -> Path:
    """Write an MLX model folder at `dst`, which must not exist.

    weights: PyTorch layout under our names; convs become channels-last `(out, kernel, in)`.
    Raises ValueError unless the names and shapes are exactly the network's.
    """
    config = SileroConfig()
    model = SileroVadNet(config)
    expected = {k: tuple(v.shape) for k, v in parameters(model).items()}
    mlx_weights = {
        k: mx.array(v.transpose(0, 2, 1) if v.ndim == 3 else v) for k, v in weights.items()
    }
    got = {k: tuple(v.shape) for k, v in mlx_weights.items()}
    if got != expected:
        missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
        bad = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
        raise ValueError(
            f"not a Silero VAD 16 kHz network: missing {missing}, unexpected {extra}, shapes {bad}"
        )
    model.load_weights(list(mlx_weights.items()), strict=True)
    return save_folder(dst, MODEL_TYPE, config, model, info={"source": source})


def _installed_onnx() -> tuple[Path, str] | None:
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / ONNX_FILE
    if not path.exists():
        return None
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return path, version


def _convert(installed: tuple[Path, str] | None, version: str, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if installed:
            source = installed[0]
        else:
            try:
                source = wheel_member(
                    f"{PACKAGE}=={VERSION}", f"silero_vad/data/{ONNX_FILE}", Path(tmp)
                )
            except ModelError as err:
                raise ModelError(
                    f"Silero VAD weights not found: pip install {PACKAGE}=={VERSION} ({err})"
                ) from err
        logger.info("converting Silero VAD %s from %s into %s (once)", version, source, target)
        try:
            save_silero(read_weights(source), target, source=f"{PACKAGE}=={version}/{ONNX_FILE}")
        except (ValueError, OSError) as err:
            if isinstance(err, FileExistsError):
                raise
            raise ModelError(f"cannot convert Silero VAD weights from {source}: {err}") from err


def silero_folder() -> Path:
    """The converted folder in the user cache, converting it on first use."""
    installed = _installed_onnx()
    version = installed[1] if installed else VERSION
    return cached(f"silero-vad-{version}", lambda target: _convert(installed, version, target))


def load_silero(path: str | Path | None = None) -> SileroVadNet:
    """The Silero network from an MLX folder, or from the cache (converted on first use)."""
    folder = path if path is not None else silero_folder()
    return load_folder(folder, MODEL_TYPE)  # type: ignore[return-value]
