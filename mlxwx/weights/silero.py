"""Silero VAD (v6, 16 kHz) weights: shipped inside mlxwx as an MLX model folder.

`SHIPPED` (`mlxwx/weights/data/silero-vad-6.2.3`: config.json, weights.safetensors (float32,
1.2 MB) and silero-vad's MIT LICENSE) is what `load_silero()` reads: no network, no torch, no
`silero-vad` package. It was converted by `write_shipped` from `silero_vad_16k_op15.onnx` of
`silero-vad==6.2.3`; tests/test_vad_silero.py checks that the conversion still gives exactly
its tensors. To regenerate it (with that package installed: `pip install --no-deps
silero-vad==6.2.3`):

    rm -r mlxwx/weights/data/silero-vad-6.2.3
    python -c "from mlxwx.weights.silero import write_shipped; write_shipped()"

The package (6.2.3) ships its network as ONNX and TorchScript models and as
`silero_vad_16k.safetensors`; that safetensors file holds OTHER weights than the models the package
runs (its probabilities differ from `silero_vad.onnx` by up to 0.4), so the converter reads the
tensors of `silero_vad_16k_op15.onnx` (the same weights as `silero_vad.onnx` and `.jit`, under
PyTorch names) with `mlxwx.weights.onnx`: no `onnx` or `torch` needed. Other files convert with
`python -m convert silero SRC DST` (from a checkout) and load with `load_silero(DST)`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path

import mlx.core as mx
import numpy as np

from ..errors import ModelError
from ..models.silero import SileroConfig, SileroVadNet
from .folder import CONFIG_FILE, cached, load_folder, parameters, save_folder
from .onnx import read_onnx

logger = logging.getLogger(__name__)

MODEL_TYPE = "silero_vad"
PACKAGE = "silero-vad"
VERSION = "6.2.3"  # the release whose weights ship in SHIPPED
ONNX_FILE = "silero_vad_16k_op15.onnx"
SHIPPED = Path(__file__).parent / "data" / f"silero-vad-{VERSION}"
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


def save_silero(
    weights: dict[str, np.ndarray],
    dst: str | Path,
    source: str = "",
    files: Mapping[str, str | Path] | None = None,
) -> Path:
    """Write an MLX model folder at `dst`, which must not exist.

    weights: PyTorch layout under our names; convs become channels-last `(out, kernel, in)`.
    source: recorded in config.json. files: names in the folder -> files to copy there.
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
    return save_folder(dst, MODEL_TYPE, config, model, files=files, info={"source": source})


def installed_onnx() -> tuple[Path, str] | None:
    """The installed `silero-vad` package's op15 ONNX file and the package's version, if any
    (found without importing the package, which imports torch)."""
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


def _license() -> Path | None:
    """The installed silero-vad distribution's LICENSE file."""
    try:
        files = importlib.metadata.distribution(PACKAGE).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [f for f in files if f.name == "LICENSE"]
    return Path(str(found[0].locate())) if found else None


def write_shipped(dst: str | Path = SHIPPED) -> Path:
    """Convert the installed `silero-vad==VERSION` package's op15 ONNX file into the folder
    `dst` (default: the shipped one; must not exist), with the package's LICENSE beside it.

    Raises ModelError when that package version (or its LICENSE) is not installed."""
    installed, notice = installed_onnx(), _license()
    if installed is None or installed[1] != VERSION or notice is None:
        raise ModelError(
            f"{PACKAGE}=={VERSION} not installed: pip install --no-deps {PACKAGE}=={VERSION}"
        )
    source = f"{PACKAGE}=={VERSION}/{ONNX_FILE}"
    return save_silero(read_weights(installed[0]), dst, source, files={"LICENSE": notice})


def _convert(installed: tuple[Path, str], target: Path) -> None:
    source, version = installed
    logger.info("converting Silero VAD %s from %s into %s (once)", version, source, target)
    try:
        save_silero(read_weights(source), target, source=f"{PACKAGE}=={version}/{ONNX_FILE}")
    except (ValueError, OSError) as err:
        if isinstance(err, FileExistsError):  # a concurrent conversion: `cached` takes it
            raise
        raise ModelError(f"cannot convert Silero VAD weights from {source}: {err}") from err


def silero_folder() -> Path:
    """The shipped folder; if this install lacks it, the installed `silero-vad` package's
    weights, converted into the user cache on first use."""
    if (SHIPPED / CONFIG_FILE).exists():
        return SHIPPED
    installed = installed_onnx()
    if installed is None:
        raise ModelError(
            f"Silero VAD weights missing from this mlxwx install ({SHIPPED}): reinstall mlxwx, "
            f"or pip install --no-deps {PACKAGE}=={VERSION} to convert them from its ONNX file"
        )
    return cached(f"silero-vad-{installed[1]}", lambda target: _convert(installed, target))


def load_silero(path: str | Path | None = None) -> SileroVadNet:
    """The Silero network from an MLX folder, by default the one shipped with mlxwx."""
    folder = path if path is not None else silero_folder()
    return load_folder(folder, MODEL_TYPE)  # type: ignore[return-value]
