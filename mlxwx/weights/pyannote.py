"""pyannote segmentation v2 weights: fetch, convert, load.

The checkpoint WhisperX uses by default ships inside the `whisperx` wheel
(`whisperx/assets/pytorch_model.bin`, a PyTorch Lightning checkpoint of pyannote.audio's PyanNet).
The first use downloads that wheel with pip (no install), keeps the one file under
`$MLXWX_CACHE/downloads/`, and converts it once into an MLX folder under `$MLXWX_CACHE/models/`
(`mlxwx.weights.folder`'s format). Reading the checkpoint needs no torch (`mlxwx.weights.torchbin`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from ..errors import ModelError
from ..models.pyannote_seg import MODEL_TYPE, PyanNet, PyanNetConfig
from . import torchbin
from .folder import cache_dir, cached, save_folder
from .folder import load_folder as load_any
from .packs import wheel_member

logger = logging.getLogger(__name__)

WHISPERX_VERSION = "3.8.6"
WHEEL_ASSET = "whisperx/assets/pytorch_model.bin"
MULTI_LABEL = 2  # pyannote.audio.core.task.Problem.MULTI_LABEL_CLASSIFICATION


def _state(obj: Any) -> dict[str, Any]:
    """Attributes of an object the unpickler kept opaque (a dataclass-like pickle state)."""
    state = getattr(obj, "state", None)
    return state if isinstance(state, dict) else {}


def read_config(checkpoint: dict[str, Any]) -> PyanNetConfig:
    """PyanNetConfig from a pyannote.audio checkpoint's hyper-parameters and specifications."""
    meta = checkpoint.get("pyannote.audio", {})
    arch = meta.get("architecture", {})
    if arch.get("class") != "PyanNet":
        raise ValueError(f"expected a PyanNet checkpoint, got architecture {arch or 'none'}")
    hp = checkpoint["hyper_parameters"]
    lstm, linear = hp["lstm"], hp["linear"]
    if not lstm.get("bidirectional", True) or not lstm.get("monolithic", True):
        raise ValueError(f"unsupported LSTM layout {lstm}")
    spec = _state(meta.get("specifications"))
    problem = spec.get("problem")
    if problem is not None and getattr(problem, "args", (MULTI_LABEL,)) != (MULTI_LABEL,):
        raise ValueError(f"expected a multi-label segmentation task, got {problem}")
    return PyanNetConfig(
        sample_rate=int(hp.get("sample_rate", 16000)),
        sinc_stride=int(hp["sincnet"]["stride"]),
        lstm_hidden=int(lstm["hidden_size"]),
        lstm_layers=int(lstm["num_layers"]),
        linear_hidden=int(linear["hidden_size"]),
        linear_layers=int(linear["num_layers"]),
        num_classes=int(checkpoint["state_dict"]["classifier.weight"].shape[0]),
        duration=float(spec.get("duration", 5.0)),
    )


def map_weights(state: dict[str, np.ndarray], cfg: PyanNetConfig) -> dict[str, np.ndarray]:
    """pyannote.audio parameter names and layouts -> ours. Every source tensor is used once."""
    src = dict(state)
    out: dict[str, np.ndarray] = {}

    def take(ours: str, theirs: str, transpose: tuple[int, ...] | None = None) -> None:
        value = src.pop(theirs)
        out[ours] = np.ascontiguousarray(value.transpose(transpose) if transpose else value)

    take("sincnet.wav_norm.weight", "sincnet.wav_norm1d.weight")
    take("sincnet.wav_norm.bias", "sincnet.wav_norm1d.bias")
    for ours, theirs in (("low_hz", "low_hz_"), ("band_hz", "band_hz_"), ("window", "window_")):
        take(f"sincnet.sinc.{ours}", f"sincnet.conv1d.0.filterbank.{theirs}")
    take("sincnet.sinc.n", "sincnet.conv1d.0.filterbank.n_")
    for i in range(2):  # torch Conv1d (out, in, k) -> MLX (out, k, in)
        take(f"sincnet.convs.{i}.weight", f"sincnet.conv1d.{i + 1}.weight", (0, 2, 1))
        take(f"sincnet.convs.{i}.bias", f"sincnet.conv1d.{i + 1}.bias")
    for i in range(3):
        for p in ("weight", "bias"):
            take(f"sincnet.norms.{i}.{p}", f"sincnet.norm1d.{i}.{p}")
    for layer in range(cfg.lstm_layers):
        for direction, suffix in (("fwd", ""), ("bwd", "_reverse")):
            for ours, theirs in (("w_ih", "weight_ih"), ("w_hh", "weight_hh")):
                take(f"lstm.{layer}.{direction}.{ours}", f"lstm.{theirs}_l{layer}{suffix}")
            for ours, theirs in (("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
                take(f"lstm.{layer}.{direction}.{ours}", f"lstm.{theirs}_l{layer}{suffix}")
    for i in range(cfg.linear_layers):
        for p in ("weight", "bias"):
            take(f"linear.{i}.{p}", f"linear.{i}.{p}")
    for p in ("weight", "bias"):
        take(f"classifier.{p}", f"classifier.{p}")
    if src:
        raise ValueError(f"unused tensors {sorted(src)[:8]} ({len(src)} in all)")
    return out


def read_checkpoint(path: str | Path) -> tuple[PyanNetConfig, dict[str, np.ndarray]]:
    """Config and MLX-named float32 weights of a pyannote.audio PyanNet checkpoint file."""
    checkpoint = torchbin.load(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a pyannote.audio checkpoint (no state_dict)")
    cfg = read_config(checkpoint)
    state = {k: np.asarray(v, dtype=np.float32) for k, v in checkpoint["state_dict"].items()}
    return cfg, map_weights(state, cfg)


def build(cfg: PyanNetConfig, weights: dict[str, Any]) -> PyanNet:
    """The network with `weights` loaded strictly (every parameter, matching shapes)."""
    model = PyanNet(cfg)
    model.load_weights([(k, mx.array(v)) for k, v in weights.items()], strict=True)
    model.eval()
    mx.eval(model.parameters())
    return model


def save_pyannote(dst: str | Path, cfg: PyanNetConfig, weights: dict[str, np.ndarray]) -> Path:
    """Write the model folder `dst` (must not exist); names and shapes checked first."""
    return save_folder(dst, MODEL_TYPE, cfg, build(cfg, weights))


def load_folder(path: str | Path) -> PyanNet:
    """PyanNet from a converted folder."""
    return load_any(path, MODEL_TYPE)  # type: ignore[return-value]


def fetch_checkpoint(version: str = WHISPERX_VERSION) -> Path:
    """The checkpoint file from the `whisperx==version` wheel, downloaded once (not installed)."""
    target = cache_dir() / "downloads" / f"whisperx-{version}" / "pytorch_model.bin"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading the whisperx==%s wheel for its pyannote checkpoint", version)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        try:
            part = wheel_member(f"whisperx=={version}", WHEEL_ASSET, Path(tmp))
        except ModelError as err:
            raise ModelError(
                f"cannot fetch the pyannote segmentation checkpoint ({err}); "
                "pass a converted folder instead"
            ) from err
        os.replace(part, target)
    return target


def _convert(version: str, target: Path) -> None:
    checkpoint = fetch_checkpoint(version)
    logger.info("converting %s into %s (once)", checkpoint, target)
    try:
        cfg, weights = read_checkpoint(checkpoint)
    except (ValueError, KeyError, OSError) as err:
        raise ModelError(f"cannot read pyannote checkpoint {checkpoint}: {err}") from err
    save_pyannote(target, cfg, weights)


def default_folder(version: str = WHISPERX_VERSION) -> Path:
    """The converted folder in the cache, fetching and converting the checkpoint on first use."""
    return cached(f"pyannote-segmentation-whisperx-{version}", lambda t: _convert(version, t))
