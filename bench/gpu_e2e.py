"""End to end through the library on a GPU: VAD, then the batched engine, on a long input.

The input is bench_engine's (the offline corpus, or with --input hard its digit strings, card
names and telephone speech, repeated in seeded orders until --minutes long); every run
transcribes it with `mlxwx.Pipeline.transcribe` (the defaults of `mlxwx run`: Whisper token
timing included) after the chosen VAD, on each --devices entry (MLX's default device set by
`mlxwx.use_device`; float16 on a GPU, float32 on the CPU, as `mlxwx run` does), each --batches
size and each --configs entry (beam5, greedy; "-nofb": temperature 0 only, no fallback ladder;
"-noalign": no alignment, so no token timing; flags combine, e.g. greedy-nofb-noalign),
and prints the median wall time of --repeat runs (VAD included, audio already in memory), the
seconds per run in Whisper's token timing (`annotate`, clocked around the engine's calls),
real-time factor, WER against the ground truth (numbers spelled out, bench_engine's rule) and
MLX's peak memory. A warm-up run of each config on the first minute precedes each device's runs.

The GPU machine has none of the offline clip packages: build the input here with --save-input
FILE.npz and carry the file (--input-file FILE.npz there).

    python bench/gpu_e2e.py --model DIR [--minutes 10] [--input corpus|hard] [--devices gpu,cpu]
        [--batches 16,32,64] [--configs beam5,greedy,greedy-nofb] [--repeat 1] [--vad silero]
        [--cpu-minutes 2] [--cpu-batches 16] [--save-input F.npz | --input-file F.npz]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
import mlxwx  # first: preloads OpenBLAS on Linux before mlx.core loads

# isort: split
import mlx.core as mx
import numpy as np

from bench.bench_engine import SAMPLE_RATE, Input, build_input, wer
from mlxwx.asr import engine
from mlxwx.asr.decoding import DecodingOptions
from mlxwx.asr.engine import TranscribeOptions


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model name or MLX folder")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--input", choices=("corpus", "hard"), default="corpus")
    p.add_argument("--save-input", help="write the input to this .npz and stop")
    p.add_argument("--input-file", help="the input from a --save-input file")
    p.add_argument("--cpu-minutes", type=float, default=2.0, help="input length on the CPU")
    p.add_argument("--devices", default="gpu,cpu")
    p.add_argument("--batches", default="16,32,64")
    p.add_argument("--cpu-batches", default="16", help="batch sizes on the CPU")
    p.add_argument("--configs", default="beam5", help="beam5, greedy, each with -nofb or not")
    p.add_argument("--repeat", type=int, default=1, help="runs per row (median)")
    p.add_argument("--vad", default="silero", help="silero, pyannote, energy or none")
    args = p.parse_args()
    if not (args.model or args.save_input):
        p.error("--model is required")
    return args


def options_for(config: str, batch: int, vad: str | None) -> mlxwx.PipelineOptions:
    """beam5 / greedy, with the fallback ladder or (-nofb) temperature 0 only, with Whisper's
    token timing (the default alignment) or (-noalign) without alignment."""
    name, *flags = config.split("-")
    if name not in ("beam5", "greedy") or not set(flags) <= {"nofb", "noalign"}:
        raise SystemExit(f"unknown config {config!r}")
    beam = 5 if name == "beam5" else 1
    transcribe = TranscribeOptions(
        DecodingOptions(beam_size=beam, best_of=1 if "nofb" in flags else 5, language="en"),
        batch_size=batch,
    )
    if "nofb" in flags:
        transcribe = replace(transcribe, temperatures=(0.0,))
    options = mlxwx.PipelineOptions(transcribe, vad=vad)
    return replace(options, align=None) if "noalign" in flags else options


class Clock:
    """Seconds spent in Whisper's token timing (`annotate`, called by the engine per batch)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        inner = engine.annotate

        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        engine.annotate = timed


def save_input(long: Input, path: str) -> None:
    pcm = np.round(np.clip(long.audio, -1, 1) * 32767).astype(np.int16)
    np.savez(path, pcm=pcm, texts=np.array(long.texts), ends=np.array(long.ends))


def load_input(path: str) -> Input:
    data = np.load(path)
    audio = data["pcm"].astype(np.float32) / 32767
    texts = [str(t) for t in data["texts"]]
    return Input(audio, [""] * len(texts), texts, [int(e) for e in data["ends"]])


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
    for config in args.configs.split(","):  # warm-up: kernels compile on first use
        run_once(pipeline, audio[:warm], options_for(config, 16, method))
    for batch in [int(b) for b in batches.split(",")]:
        for config in args.configs.split(","):
            options = options_for(config, batch, method)
            mx.reset_peak_memory()
            CLOCK.seconds = 0.0
            walls, text = [], ""
            for _ in range(args.repeat):
                wall, text = run_once(pipeline, audio, options)
                walls.append(wall)
            wall = statistics.median(walls)
            seconds, dtype = samples / SAMPLE_RATE, str(wm.model.dtype).split(".")[-1]
            print(
                f"| {device} | {dtype} | {batch} | {config} | {args.vad} "
                f"| {seconds / 60:.1f} | {wall:.2f} | {CLOCK.seconds / args.repeat:.2f} "
                f"| {seconds / wall:.1f}x "
                f"| {100 * wer([reference], [text]):.1f}% | {mx.get_peak_memory() / 2**30:.2f} GiB "
                f"| {' '.join(f'{w:.2f}' for w in walls)} |",
                flush=True,
            )


CLOCK = Clock()


def main() -> None:
    args = parse_args()
    if args.input_file:
        long = load_input(args.input_file)
    else:
        long = build_input(args.minutes, args.input == "hard")
    if args.save_input:
        save_input(long, args.save_input)
        return
    print(f"mlx {mx.__version__}, gpu available: {mx.is_available(mx.gpu)}, model {args.model}")
    print(
        "| device | dtype | batch | config | VAD | audio min | wall s | token timing s | RTF | WER "
        "| peak | runs |"
    )
    print("|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|")
    for device in args.devices.split(","):
        bench_device(device, args, long)


if __name__ == "__main__":
    main()
