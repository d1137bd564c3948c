"""Where MLX runs the pipeline: the GPU when MLX has one (Metal on Apple Silicon, CUDA with
`mlx[cuda]`), else the CPU. One process-wide choice, MLX's default device, made before models
load, because the default dtype follows it (float16 on a GPU, float32 on the CPU)."""

from __future__ import annotations

import logging
from typing import Any

import mlx.core as mx

from .errors import MlxwxError

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "gpu")
_chosen = "auto"  # what `use_device` was last asked for


class DeviceError(MlxwxError, ValueError):
    """The device asked for does not exist here."""


def gpu_available() -> bool:
    return bool(mx.is_available(mx.gpu))


def use_device(name: str = "auto") -> mx.Device:
    """Make `name` (auto, cpu or gpu) MLX's default device and return it; auto picks the GPU
    when there is one."""
    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}; choose auto, cpu or gpu")
    if name == "gpu" and not gpu_available():
        raise DeviceError(
            "this MLX has no GPU backend: run on Apple Silicon (Metal), install mlx[cuda] on "
            "Linux with an NVIDIA GPU, or use --device cpu"
        )
    global _chosen
    _chosen = name
    gpu = name == "gpu" or (name == "auto" and gpu_available())
    device = mx.Device(mx.gpu if gpu else mx.cpu)
    mx.set_default_device(device)
    return device


def torch_device(torch: Any) -> str:
    """Where the torch stages (wav2vec2, pyannote) run: the CPU when the run was put on the CPU
    (`use_device("cpu")`), else cuda when torch has it, else mps when it has it, else cpu."""
    if _chosen == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def check_cudnn(torch: Any, device: str, doing: str) -> None:
    """On a cuda `device`, turn torch's cuDNN off when it cannot start in this process: MLX's
    CUDA backend loads its own cuDNN first, and torch refuses an older one than it was built
    with (its convolutions and LSTMs would then fail on every input). Without cuDNN torch runs
    the same layers with its own kernels; the log says so once, with what is being done
    (`doing`)."""
    if not device.startswith("cuda") or not torch.backends.cudnn.enabled:
        return
    try:
        torch.backends.cudnn.is_acceptable(torch.zeros(1, device="cuda"))
    except RuntimeError as err:
        logger.warning("torch cannot use cuDNN in this process (%s); %s without it",
                       str(err).split(".")[0], doing)  # fmt: skip
        torch.backends.cudnn.enabled = False
