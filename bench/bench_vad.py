"""VAD throughput on about an hour of speech: mlxwx's MLX VADs against Silero's ONNX model run by
silero-vad's own code and pyannote's torch model.

The input is the offline corpus (`tests.speech.corpus`: jfk, five LibriVox utterances, synthconv,
pyannote's sample; 89 s) repeated with 0.5 s of silence between clips until it lasts --minutes,
held in memory (an `mx.array`; numpy / torch views of it for the references). Every method gets
one untimed warm-up on the first 10 s, then one timed run over the whole input; the timing ends
when its output is computed (`mx.eval` for MLX). Reported: audio seconds per wall second ("x real
time", higher is faster), RTF = wall / audio (lower is faster), and the process CPU time (the
machine may be shared: CPU s / wall s above 1 means several cores were used).

Methods (a registry: `@method("name")` on a function that returns a runner, or raises `Skip`):
- mlxwx energy: `mlxwx.vad.energy.EnergyVad()` per-10 ms probabilities, on the MLX default device.
- silero onnx: `silero_vad.get_speech_timestamps(wav, load_silero_vad(onnx=True))`, which is how
  silero-vad (and WhisperX's silero option) runs it: one 512-sample window per ONNX call, in a
  Python loop, onnxruntime with one thread (silero-vad's OnnxWrapper setting). CPU only.
- pyannote torch: pyannote.audio's `Inference` (10 s windows, its default step) with the WhisperX
  checkpoint, if pyannote.audio imports (CPU, or CUDA with --device gpu when torch has it).

Adding a method, e.g. the MLX ports (module and constructor as they land):

    @method("mlxwx silero")
    def _mlxwx_silero(args: argparse.Namespace) -> Runner:
        try:
            from mlxwx.vad.silero import SileroVad
        except ImportError as err:
            raise Skip(f"mlxwx.vad.silero: {err}") from err
        vad = SileroVad()
        return lambda audio: mx.eval(vad(audio.samples).probs)

    python bench/bench_vad.py [--minutes 60] [--device cpu|gpu] [--methods a,b,...]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
import mlxwx  # first: preloads a fast BLAS (MKL or OpenBLAS) on Linux before mlx.core loads

# isort: split
import mlx.core as mx
import numpy as np

from mlxwx.audio import load_audio
from tests.speech import corpus

SAMPLE_RATE = 16000
GAP_SECONDS = 0.5
WARMUP_SECONDS = 10


class Skip(Exception):
    """A method that cannot run here; the message says why."""


@dataclass
class Audio:
    """The benchmark input in the forms the methods take (created on first use)."""

    samples: mx.array  # (n,) float32 16 kHz

    @cached_property
    def numpy(self) -> np.ndarray:
        return np.asarray(self.samples)

    @cached_property
    def torch(self) -> Any:
        import torch

        return torch.from_numpy(self.numpy)

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / SAMPLE_RATE

    def head(self, seconds: float) -> Audio:
        return Audio(self.samples[: int(seconds * SAMPLE_RATE)])


Runner = Callable[[Audio], object]
METHODS: dict[str, Callable[[argparse.Namespace], Runner]] = {}


def method(name: str) -> Callable[[Callable[[argparse.Namespace], Runner]], Any]:
    def register(factory: Callable[[argparse.Namespace], Runner]) -> Any:
        METHODS[name] = factory
        return factory

    return register


@method("mlxwx energy")
def _mlxwx_energy(args: argparse.Namespace) -> Runner:
    from mlxwx.vad.energy import EnergyVad

    vad = EnergyVad()
    return lambda audio: mx.eval(vad(audio.samples).probs)


@method("mlxwx silero")
def _mlxwx_silero(args: argparse.Namespace) -> Runner:
    from mlxwx.vad.silero import SileroVad

    vad = SileroVad()
    return lambda audio: mx.eval(vad(audio.samples).probs)


@method("mlxwx pyannote")
def _mlxwx_pyannote(args: argparse.Namespace) -> Runner:
    from mlxwx.vad.pyannote import PyannoteVad

    vad = PyannoteVad.load()
    return lambda audio: mx.eval(vad(audio.samples).probs)


@method("silero onnx")
def _silero_onnx(args: argparse.Namespace) -> Runner:
    try:
        from silero_vad import get_speech_timestamps, load_silero_vad
    except ImportError as err:
        raise Skip(f"silero-vad not installed (pip install silero-vad==6.2.3): {err}") from err
    model = load_silero_vad(onnx=True)

    def run(audio: Audio) -> object:
        model.reset_states()
        return get_speech_timestamps(audio.torch, model, sampling_rate=SAMPLE_RATE)

    return run


@method("pyannote torch")
def _pyannote_torch(args: argparse.Namespace) -> Runner:
    os.environ["PYANNOTE_METRICS_ENABLED"] = "0"  # no telemetry
    checkpoint = Path(args.pyannote_checkpoint).expanduser()
    if not checkpoint.exists():
        raise Skip(f"no checkpoint at {checkpoint} (--pyannote-checkpoint)")
    try:
        import torch

        from tests.pyannote_ref import without_torchaudio  # an inert torchaudio if it is missing

        with without_torchaudio():  # the model classes import torchaudio when loaded
            from pyannote.audio import Inference, Model

            model = Model.from_pretrained(checkpoint)
    except ImportError as err:
        raise Skip(f"pyannote.audio does not import: {err}") from err
    if model is None:
        raise Skip(f"pyannote.audio could not load {checkpoint}")
    cuda = args.device == "gpu" and torch.cuda.is_available()
    inference = Inference(model, device=torch.device("cuda" if cuda else "cpu"))
    return lambda audio: inference({"waveform": audio.torch[None], "sample_rate": SAMPLE_RATE})


def build_input(minutes: float) -> Audio:
    """The corpus' clips with 0.5 s gaps, repeated until `minutes` (cut at that length)."""
    gap = mx.zeros(int(GAP_SECONDS * SAMPLE_RATE))
    clips = [x for clip in corpus() for x in (load_audio(clip.path), gap)]
    one_pass = mx.concatenate(clips)
    target = int(minutes * 60 * SAMPLE_RATE)
    repeats = -(-target // one_pass.shape[0])
    audio = mx.concatenate([one_pass] * repeats)[:target]
    mx.eval(audio)
    return Audio(audio)


def time_one(name: str, runner: Runner, audio: Audio) -> str:
    runner(audio.head(WARMUP_SECONDS))
    cpu, wall = time.process_time(), time.perf_counter()
    runner(audio)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    speed = audio.seconds / wall
    return f"| {name} | {wall:.2f} | {speed:,.0f} | {wall / audio.seconds:.2e} | {cpu:.2f} |"


def header(args: argparse.Namespace, audio: Audio) -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"platform: {platform.platform()}, python {platform.python_version()}, "
        f"{os.cpu_count()} cores ({usable} usable)",
        f"mlx {getattr(mx, '__version__', '?')}, mlxwx {mlxwx.__version__}, "
        f"MLX device {mx.default_device()}",
        f"input: {audio.seconds / 60:.1f} min of speech clips (corpus repeated), float32 16 kHz",
    ]
    if mx.default_device() == mx.gpu:
        lines.append(f"gpu: {mx.device_info().get('device_name', '?')}")
    if hasattr(os, "getloadavg"):
        lines.append("load average at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the input")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="MLX device")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated names")
    parser.add_argument(
        "--pyannote-checkpoint",
        default="~/.cache/mlxwx/downloads/whisperx-3.8.6/pytorch_model.bin",
        help="pyannote segmentation checkpoint for the torch reference",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        mlxwx.use_device(args.device)
    except mlxwx.MlxwxError as err:
        sys.exit(f"--device {args.device}: {err}")
    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        sys.exit(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    audio = build_input(args.minutes)
    print("\n".join(header(args, audio)) + "\n")
    print("| method | wall s | audio s / s | RTF (wall / audio) | CPU s |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        try:
            runner = METHODS[name](args)
        except Skip as why:
            print(f"| {name} | skipped: {why} | | | |")
            continue
        print(time_one(name, runner, audio), flush=True)


if __name__ == "__main__":
    main()
