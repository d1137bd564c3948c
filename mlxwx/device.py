"""Where MLX runs the pipeline: the GPU when MLX has one (Metal on Apple Silicon, CUDA with
`mlx[cuda]`), else the CPU. One process-wide choice, MLX's default device, made before models
load, because the default dtype follows it (float16 on a GPU, float32 on the CPU)."""

from __future__ import annotations

import mlx.core as mx

from .errors import MlxwxError

DEVICES = ("auto", "cpu", "gpu")


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
    gpu = name == "gpu" or (name == "auto" and gpu_available())
    device = mx.Device(mx.gpu if gpu else mx.cpu)
    mx.set_default_device(device)
    return device
