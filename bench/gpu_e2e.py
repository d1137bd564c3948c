"""End to end through the library on a GPU: VAD, then the batched engine, on a long input.

The input is bench_engine's (the offline corpus repeated in seeded orders with 0.5 s gaps until
--minutes long); every run transcribes it with `mlxwx.Pipeline.transcribe` after the chosen
VAD, on each --devices entry (MLX's default device set by `mlxwx.use_device`; float16 on a GPU,
float32 on the CPU, as `mlxwx run` does) and each --batches size, and prints wall time (VAD
included, audio already in memory), real-time factor, corpus WER against the ground truth and
MLX's peak memory. One warm-up run on the first minute precedes each device's runs.

    python bench/gpu_e2e.py --model DIR [--minutes 10] [--devices gpu,cpu] [--batches 16,32,64]
        [--beam 5] [--vad silero] [--cpu-minutes 2] [--cpu-batches 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
import mlxwx  # first: preloads OpenBLAS on Linux before mlx.core loads

# isort: split
import mlx.core as mx

from bench.bench_engine import SAMPLE_RATE, build_input
from mlxwx.asr.decoding import DecodingOptions
from mlxwx.asr.engine import TranscribeOptions
from tests.speech import wer


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model name or MLX folder")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--cpu-minutes", type=float, default=2.0, help="input length on the CPU")
    p.add_argument("--devices", default="gpu,cpu")
    p.add_argument("--batches", default="16,32,64")
    p.add_argument("--cpu-batches", default="16", help="batch sizes on the CPU")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--vad", default="silero", help="silero, pyannote, energy or none")
    return p.parse_args()


def run_once(pipeline, audio, options) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = pipeline.transcribe(audio, options)
    return time.perf_counter() - start, result.text


def bench_device(device: str, args: argparse.Namespace, long) -> None:  # type: ignore[no-untyped-def]
    mlxwx.use_device(device)
    pipeline = mlxwx.load_model(args.model)
    wm = pipeline.whisper
    method = None if args.vad == "none" else args.vad
    pipeline.vad(method)
    minutes = args.minutes if device == "gpu" else args.cpu_minutes
    samples, reference = long.excerpt(minutes)
    audio = mx.array(long.audio[:samples])
    warm, _ = long.excerpt(1.0)
    batches = args.batches if device == "gpu" else args.cpu_batches
    for batch in [int(b) for b in batches.split(",")]:
        options = mlxwx.PipelineOptions(
            TranscribeOptions(
                DecodingOptions(beam_size=args.beam, best_of=1, language="en"), batch_size=batch
            ),
            vad=method,
        )
        run_once(pipeline, audio[:warm], options)
        mx.reset_peak_memory()
        wall, text = run_once(pipeline, audio, options)
        seconds, dtype = samples / SAMPLE_RATE, str(wm.model.dtype).split(".")[-1]
        print(
            f"| {device} | {dtype} | {batch} | {args.beam} | {args.vad} "
            f"| {seconds / 60:.1f} | {wall:.1f} | {seconds / wall:.1f}x "
            f"| {100 * wer([reference], [text]):.1f}% | {mx.get_peak_memory() / 2**30:.2f} GiB |",
            flush=True,
        )


def main() -> None:
    args = parse_args()
    print(f"mlx {mx.__version__}, gpu available: {mx.is_available(mx.gpu)}, model {args.model}")
    long = build_input(args.minutes)
    print("| device | dtype | batch | beam | VAD | audio min | wall s | RTF | WER | peak |")
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for device in args.devices.split(","):
        bench_device(device, args, long)


if __name__ == "__main__":
    main()
