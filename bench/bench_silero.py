"""Silero VAD throughput on CPU: the MLX port (sequential, parallel streams) vs silero's ONNX.

Input: the offline corpus (`tests.speech.corpus`, 89 s of speech) in seeded random order, each
clip followed by 0.5-3 s of low white noise, until it lasts --minutes. Systems, in one process,
each timed as the best of --repeat runs after a short warm-up call (weights already loaded; audio
already in memory):
- mlxwx-sequential: `SileroVad(options=SileroOptions(sequential=True))`, one LSTM stream.
- mlxwx-streamed: `SileroOptions(sequential=False)`: parallel streams of 4096 windows, each with
  6144 windows of warm-up (the defaults).
- silero-onnx: `silero_vad.get_speech_timestamps(audio, load_silero_vad(onnx=True))`, the
  package's own loop: one onnxruntime call per 512-sample window (1 thread, as its wrapper sets).
- fw-onnx-batched: faster-whisper's `SileroVADModel` (its bundled silero v6 ONNX), which encodes
  all windows in one batched call (1 thread).
Throughput = audio seconds / wall seconds. Also prints how far the MLX probabilities are from
silero's ONNX ones, and the streamed ones from the sequential ones.

    nice -n 10 python bench/bench_silero.py [--minutes 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
import mlxwx  # first: preloads a fast BLAS (MKL or OpenBLAS) on Linux before mlx.core loads

# isort: split
import mlx.core as mx
import numpy as np

from mlxwx.audio import load_audio
from mlxwx.vad import SileroOptions, SileroVad, load_silero
from tests.speech import corpus


def build_input(minutes: float, seed: int = 0) -> np.ndarray:
    clips = [np.array(load_audio(c.path)) for c in corpus()]
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    while total < minutes * 60 * 16000:
        for i in rng.permutation(len(clips)):
            gap = rng.normal(0, 0.003, int(16000 * rng.uniform(0.5, 3.0))).astype(np.float32)
            parts += [clips[i], gap]
            total += len(clips[i]) + len(gap)
    return np.concatenate(parts)[: int(minutes * 60 * 16000)]


def timed(fn, audio, repeat: int):  # type: ignore[no-untyped-def]
    """Best wall time of `repeat` runs (the machine is shared), after a 10 s warm-up call."""
    fn(audio[: 10 * 16000])
    walls = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(audio)
        walls.append(time.perf_counter() - start)
    return min(walls), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per system; the best counts")
    args = parser.parse_args()
    import onnxruntime
    import silero_vad
    import torch
    from faster_whisper.vad import get_vad_model

    audio = build_input(args.minutes)
    seconds = len(audio) / 16000
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores,")
    print(f"load average at start: {os.getloadavg()}")
    print(f"mlxwx {mlxwx.__version__ if hasattr(mlxwx, '__version__') else '-'}")
    print(f"mlx {mx.__version__}, onnxruntime {onnxruntime.__version__}, torch {torch.__version__}")
    print(f"input: {seconds:.1f} s")
    net = load_silero()
    seq_vad = SileroVad(net, SileroOptions(sequential=True))
    stream_vad = SileroVad(net, SileroOptions(sequential=False))
    onnx = silero_vad.load_silero_vad(onnx=True)
    seen: list[float] = []

    def recording(x, sr):  # type: ignore[no-untyped-def]
        out = onnx(x, sr)
        seen.append(out.item())
        return out

    recording.reset_states = onnx.reset_states  # type: ignore[attr-defined]
    fw = get_vad_model()
    systems = {
        "mlxwx-sequential": lambda a: np.array(seq_vad(mx.array(a)).probs),
        "mlxwx-streamed": lambda a: np.array(stream_vad(mx.array(a)).probs),
        "silero-onnx": lambda a: silero_vad.get_speech_timestamps(torch.from_numpy(a), recording),
        "fw-onnx-batched": lambda a: fw(np.pad(a, (0, -len(a) % 512))).reshape(-1),
    }
    results = {}
    for name, fn in systems.items():
        seen.clear()
        wall, out = timed(fn, audio, args.repeat)
        if name == "silero-onnx":  # the probabilities of its last run
            windows = -(-len(audio) // 512)
            out = np.asarray(seen[-windows:], np.float32)
        results[name] = out
        print(f"{name:18s} {wall:7.2f} s  {seconds / wall:7.1f} x real time", flush=True)
    ref = results["silero-onnx"]
    for name in ("mlxwx-sequential", "mlxwx-streamed", "fw-onnx-batched"):
        d = np.abs(results[name] - ref)
        print(f"max |{name} - silero-onnx| = {d.max():.2e} (mean {d.mean():.1e})")
    diff = np.abs(results["mlxwx-streamed"] - results["mlxwx-sequential"])
    print(f"max |streamed - sequential| = {diff.max():.2e} (mean {diff.mean():.1e})")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
