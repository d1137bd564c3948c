"""The one folder format of every model mlxwx runs, its one save, its one load, its one cache.

A model folder holds
- `config.json`: the architecture's config fields (its dataclass's `to_dict`), `"model_type"`
  naming the architecture, and, when quantized, `"quantization": {"group_size", "bits"}`;
- `weights.safetensors` (or `weights.npz`, as some mlx-community Whisper folders have): the
  parameters under the names of `mlxwx.models`, MLX layout (convs channels-last `(out, k, in)`);
- files of the model's own beside them (Whisper: `tokenizer.json`, `mlxwx.json`).

This is the layout mlx-whisper and the mlx-community repos use for Whisper; Silero VAD and
pyannote segmentation are stored the same way. Weights that ship in other formats (CTranslate2,
torch zip, ONNX) are converted once into `cache_dir()/models/<name>` (`cached`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from ..errors import ModelError
from ..models.pyannote_seg import MODEL_TYPE as PYANNOTE
from ..models.pyannote_seg import PyanNet, PyanNetConfig
from ..models.silero import SileroConfig, SileroVadNet
from ..models.whisper import ModelDimensions, Whisper
from ..writers import atomic_folder

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
WEIGHTS_FILES = (WEIGHTS_FILE, "weights.npz")


def _alignment_heads(model: nn.Module, weights: dict[str, mx.array]) -> None:
    """Whisper's (N, 2) alignment heads vary in number per checkpoint: take the file's."""
    heads = weights.get("alignment_heads", model.alignment_heads).astype(mx.int32)
    model.alignment_heads = weights["alignment_heads"] = heads


@dataclass(frozen=True)
class Architecture:
    """How a `model_type` is built: its config dataclass (`from_dict` ignores unknown keys,
    `to_dict`), its network, and an optional hook fitting the network to a file's weights."""

    config: Any
    network: Callable[[Any], nn.Module]
    fit: Callable[[nn.Module, dict[str, mx.array]], None] | None = None


ARCHITECTURES: dict[str, Architecture] = {
    "whisper": Architecture(ModelDimensions, Whisper, _alignment_heads),
    "silero_vad": Architecture(SileroConfig, SileroVadNet),
    PYANNOTE: Architecture(PyanNetConfig, PyanNet),
}


def cache_dir() -> Path:
    """Where converted models live: `$MLXWX_CACHE`, default `~/.cache/mlxwx`."""
    return Path(os.environ.get("MLXWX_CACHE") or Path.home() / ".cache" / "mlxwx")


def parameters(model: nn.Module) -> dict[str, mx.array]:
    return dict(tree_flatten(model.parameters()))  # type: ignore[arg-type]


def save_folder(
    dst: str | Path,
    model_type: str,
    config: Any,
    model: nn.Module,
    *,
    files: Mapping[str, str | Path] | None = None,
    texts: Mapping[str, str] | None = None,
    info: Mapping[str, Any] | None = None,
    quantization: tuple[int, int] | None = None,
) -> Path:
    """Write `model` (its parameters as they are, quantized or not) as a folder at `dst`, which
    must not exist, atomically.

    config: the architecture's config dataclass. files: names in the folder -> files to copy
    there; texts: names -> contents. info: extra keys for config.json (ignored on load).
    quantization: (group_size, bits) the model was quantized with.
    """
    dst = Path(dst)
    if dst.exists():
        raise FileExistsError(f"refusing to overwrite {dst}")
    if model_type not in ARCHITECTURES:
        raise ValueError(f"unknown model_type {model_type!r}")
    data: dict[str, Any] = {**config.to_dict(), **(info or {}), "model_type": model_type}
    if quantization is not None:
        data["quantization"] = {"group_size": quantization[0], "bits": quantization[1]}
    with atomic_folder(dst) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n")
        mx.save_safetensors(str(tmp / WEIGHTS_FILE), parameters(model))
        for name, source in (files or {}).items():
            (tmp / name).write_bytes(Path(source).read_bytes())
        for name, text in (texts or {}).items():
            (tmp / name).write_text(text)
    return dst


def read_config(path: Path) -> dict[str, Any]:
    """config.json of a folder, with its model_type (folders without one hold Whisper)."""
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read {path / CONFIG_FILE}: {err}") from None
    if not isinstance(config, dict):
        raise ModelError(f"{path / CONFIG_FILE} does not hold a JSON object")
    config.setdefault("model_type", "whisper")  # mlx-community Whisper folders may omit it
    return config


def read_weights(path: Path) -> dict[str, mx.array]:
    for name in WEIGHTS_FILES:
        if (path / name).exists():
            try:
                return dict(mx.load(str(path / name)).items())  # type: ignore[union-attr]
            except (OSError, ValueError, RuntimeError) as err:
                raise ModelError(f"cannot read {path / name}: {err}") from None
    raise ModelError(f"{path} has no {' or '.join(WEIGHTS_FILES)}")


def load_folder(
    path: str | Path, model_type: str | None = None, dtype: mx.Dtype | None = None
) -> nn.Module:
    """The network of a model folder, every parameter loaded (strictly) and evaluated.

    model_type: the architecture expected (ModelError if the folder holds another). dtype:
    floating-point parameters are cast to it; None keeps them as stored.
    """
    path = Path(path)
    config = read_config(path)
    found = config["model_type"]
    if model_type is not None and found != model_type:
        raise ModelError(f"{path} holds a {found!r} model, not {model_type!r}")
    arch = ARCHITECTURES.get(found)
    if arch is None:
        raise ModelError(f"{path}: unknown model_type {found!r}")
    try:
        model = arch.network(arch.config.from_dict(config))
    except (TypeError, ValueError) as err:
        raise ModelError(f"{path / CONFIG_FILE}: {err}") from None
    weights = read_weights(path)
    if "quantization" in config:
        q = config["quantization"]
        nn.quantize(
            model, q["group_size"], q["bits"], class_predicate=lambda p, _: f"{p}.scales" in weights
        )
    if arch.fit is not None:
        arch.fit(model, weights)
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as err:
        raise ModelError(f"{path}: weights do not match the {found} network: {err}") from None
    if dtype is not None:
        model.set_dtype(dtype, lambda x: mx.issubdtype(x, mx.floating))
    model.eval()
    mx.eval(model.parameters())
    return model


def cached(name: str, convert: Callable[[Path], object]) -> Path:
    """The folder `cache_dir()/models/name`, written by `convert(folder)` on first use.

    `convert` writes the folder (which does not exist yet) atomically, e.g. with `save_folder`;
    when a concurrent conversion wins the race, its folder is used."""
    target = cache_dir() / "models" / name
    if (target / CONFIG_FILE).exists():
        return target
    try:
        convert(target)
    except (FileExistsError, OSError):
        if not (target / CONFIG_FILE).exists():  # not a concurrent conversion: a real error
            raise
    return target
