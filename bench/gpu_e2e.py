"""End to end through the library on a GPU: VAD, then the batched engine, on a long input.

The input is bench_engine's (the offline corpus, or with --input hard its digit strings, card
names and telephone speech, repeated in seeded orders until --minutes long); every run
transcribes it with `mlxwx.Pipeline.transcribe` (the defaults of `mlxwx run`: Whisper token
timing included) after the chosen VAD, on each --devices entry (MLX's default device set by
`mlxwx.use_device`; float16 on a GPU, float32 on the CPU, as `mlxwx run` does), each --batches
size and each --configs entry (beam5, greedy; "-nofb": temperature 0 only, no fallback ladder;
"-noalign": no alignment, so no token timing; "-kv8": cross-attention keys and values read in
8 bits, `DecodingOptions.cross_kv_bits=8`; "-w2v" / "-w2v32": `--align wav2vec2` with a
base-sized wav2vec2 of random weights (tests/speech.py's; speed does not depend on the values)
at its default precision (float16 on a GPU) / in float32; "-ab<N>": the wav2vec2 aligner's batch
size N instead of its default for the device; "-kp": its CTC paths by the GPU kernel
(`mlxwx.align.ctc.GPU_PATHS` set for the config's runs); "-as<N>": its batches pad to at most N
seconds of audio (`wav2vec2.BATCH_SECONDS`, default 120); flags combine, e.g. greedy-nofb-noalign),
and prints the median wall time of --repeat runs (VAD included, audio already in memory), the
seconds per run in Whisper's token timing (`annotate`, clocked around the engine's calls) or in
the wav2vec2 align stage (`align_result`, and of it the host's time in the model: its runs
started, `_logits`, and waited for, `_finish`; on a GPU the next batch runs during the paths),
real-time factor, WER against the ground truth (numbers spelled out, bench_engine's rule) and
MLX's peak memory. A warm-up run of each config on the first minute precedes each device's runs.

With --files N the input is cut at clip ends into N files of about equal length, transcribed in
one call (a list of inputs, as `mlxwx run` does with many files); the real-time factor is then
the pipeline's audio-hours per GPU-hour.

The GPU machine has none of the offline clip packages: build the input here with --save-input
FILE.npz and carry the file (--input-file FILE.npz there); a longer --minutes than the file
holds appends its clips again in new seeded orders (e.g. 2 hours from the 10-minute file).

    python bench/gpu_e2e.py --model DIR [--minutes 10] [--input corpus|hard] [--devices gpu,cpu]
        [--batches 16,32,64] [--configs beam5,greedy,greedy-nofb] [--repeat 1] [--vad silero]
        [--cpu-minutes 2] [--cpu-batches 16] [--files 1]
        [--save-input F.npz | --input-file F.npz]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import re
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
import mlxwx  # first: preloads a fast BLAS (MKL or OpenBLAS) on Linux before mlx.core loads

# isort: split
import mlx.core as mx
import numpy as np

from bench.bench_engine import (
    GAP_SECONDS,
    HARD_GAP_SECONDS,
    SAMPLE_RATE,
    Input,
    build_input,
    wer,
)
from mlxwx.align import ctc, wav2vec2
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
    p.add_argument("--files", type=int, default=1, help="the input split into this many files")
    args = p.parse_args()
    if not (args.model or args.save_input):
        p.error("--model is required")
    return args


FLAGS = {"nofb", "noalign", "kv8", "w2v", "w2v32", "kp"}


def options_for(config: str, batch: int, vad: str | None) -> mlxwx.PipelineOptions:
    """beam5 / greedy, with the fallback ladder or (-nofb) temperature 0 only, with Whisper's
    token timing (the default alignment) or (-noalign) without alignment, with (-kv8) 8-bit
    cross-attention keys and values."""
    name, *flags = config.split("-")
    sizes = [int(f[2:]) for f in flags if re.fullmatch(r"ab\d+", f)]
    flags = [f for f in flags if not re.fullmatch(r"(ab|as)\d+", f)]
    if name not in ("beam5", "greedy") or not set(flags) <= FLAGS:
        raise SystemExit(f"unknown config {config!r}")
    beam = 5 if name == "beam5" else 1
    decoding = DecodingOptions(
        beam_size=beam,
        best_of=1 if "nofb" in flags else 5,
        language="en",
        cross_kv_bits=8 if "kv8" in flags else None,
    )
    transcribe = TranscribeOptions(decoding, batch_size=batch)
    if "nofb" in flags:
        transcribe = replace(transcribe, temperatures=(0.0,))
    options = mlxwx.PipelineOptions(transcribe, vad=vad)
    if "w2v" in flags or "w2v32" in flags:
        precision = "float32" if "w2v32" in flags else "auto"
        align = mlxwx.AlignOptions(
            "wav2vec2",
            model=random_wav2vec2(),
            batch_size=max(sizes, default=None),
            precision=precision,
        )
        options = replace(options, align=align)
    return replace(options, align=None) if "noalign" in flags else options


def set_globals(config: str) -> None:
    """The module settings a config's -kp and -as<N> flags stand for (else their defaults)."""
    flags = config.split("-")
    ctc.GPU_PATHS = "kp" in flags
    seconds = [float(f[2:]) for f in flags if re.fullmatch(r"as\d+", f)]
    wav2vec2.BATCH_SECONDS = max(seconds, default=DEFAULT_BATCH_SECONDS)


@functools.cache
def random_wav2vec2() -> str:
    from tests.speech import save_random_wav2vec2

    return str(save_random_wav2vec2(Path(tempfile.mkdtemp())))


class Clock:
    """Seconds spent in `module.name` (e.g. Whisper's token timing, `engine.annotate`, called by
    the engine per batch)."""

    def __init__(self, module: object, name: str) -> None:
        self.seconds = 0.0
        inner = getattr(module, name)

        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        setattr(module, name, timed)


def save_input(long: Input, path: str) -> None:
    pcm = np.round(np.clip(long.audio, -1, 1) * 32767).astype(np.int16)
    np.savez(path, pcm=pcm, texts=np.array(long.texts), ends=np.array(long.ends))


def load_input(path: str) -> Input:
    data = np.load(path)
    audio = data["pcm"].astype(np.float32) / 32767
    texts = [str(t) for t in data["texts"]]
    return Input(audio, [""] * len(texts), texts, [int(e) for e in data["ends"]])


def extend(long: Input, minutes: float, gap: float) -> Input:
    """`long` made at least `minutes` long: its clips (found from their ends and the `gap`
    seconds after each) appended again in a new seeded order each pass, as build_input does."""
    target, pad = minutes * 60 * SAMPLE_RATE, round(gap * SAMPLE_RATE)
    if long.audio.size >= target:
        return long
    starts = [0, *[e + pad for e in long.ends[:-1]]]
    clips = [long.audio[a:e] for a, e in zip(starts, long.ends, strict=True)]
    silence = np.zeros(pad, np.float32)
    parts, out = [long.audio[: long.ends[-1]], silence], replace(long, ends=list(long.ends))
    out.texts, length, rep = list(long.texts), long.ends[-1] + pad, 1
    while length < target:
        for i in np.random.default_rng(rep).permutation(len(clips)):
            parts += [clips[i], silence]
            out.texts.append(long.texts[i])
            out.ends.append(length + clips[i].size)
            length += clips[i].size + pad
        rep += 1
    out.audio = np.concatenate(parts)
    return out


def split_files(long: Input, samples: int, files: int) -> list[mx.array]:
    """The first `samples` of `long` as `files` inputs of whole clips, about equally long."""
    ends = [e for e in long.ends if e <= samples]
    cuts, at = [], 0
    for k in range(1, files):
        goal = samples * k / files
        at = min(range(at, len(ends)), key=lambda j: abs(ends[j] - goal))
        cuts.append(ends[at])
    bounds = [0, *cuts, samples]
    return [mx.array(long.audio[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


def run_once(pipeline, audio, options) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    """Wall seconds and text of one transcription of `audio` (one input or a list)."""
    start = time.perf_counter()
    result = pipeline.transcribe(audio, options)
    texts = [r.text for r in result] if isinstance(result, list) else [result.text]
    return time.perf_counter() - start, " ".join(texts)


def bench_device(device: str, args: argparse.Namespace, long) -> None:  # type: ignore[no-untyped-def]
    mlxwx.use_device(device)
    pipeline = mlxwx.load_model(args.model)
    wm = pipeline.whisper
    method = None if args.vad == "none" else args.vad
    pipeline.vad(method)
    minutes = args.minutes if device == "gpu" else args.cpu_minutes
    samples, reference = long.excerpt(minutes)
    audio = mx.array(long.audio[:samples])
    inputs = split_files(long, samples, args.files) if args.files > 1 else audio
    warm, _ = long.excerpt(1.0)
    batches = args.batches if device == "gpu" else args.cpu_batches
    for config in args.configs.split(","):  # warm-up: kernels compile on first use
        set_globals(config)
        run_once(pipeline, audio[:warm], options_for(config, 16, method))
    for batch in [int(b) for b in batches.split(",")]:
        for config in args.configs.split(","):
            options = options_for(config, batch, method)
            set_globals(config)
            mx.reset_peak_memory()
            CLOCK.seconds = W2V.seconds = FORWARD.seconds = WAIT.seconds = 0.0
            walls, text = [], ""
            for _ in range(args.repeat):
                wall, text = run_once(pipeline, inputs, options)
                walls.append(wall)
            wall = statistics.median(walls)
            seconds, dtype = samples / SAMPLE_RATE, str(wm.model.dtype).split(".")[-1]
            print(
                f"| {device} | {dtype} | {batch} | {config} | {args.vad} | {args.files} "
                f"| {seconds / 60:.1f} | {wall:.2f} | {CLOCK.seconds / args.repeat:.2f} "
                f"| {W2V.seconds / args.repeat:.2f} "
                f"({(FORWARD.seconds + WAIT.seconds) / args.repeat:.2f}) "
                f"| {seconds / wall:.1f}x "
                f"| {100 * wer([reference], [text]):.1f}% | {mx.get_peak_memory() / 2**30:.2f} GiB "
                f"| {' '.join(f'{w:.2f}' for w in walls)} |",
                flush=True,
            )


CLOCK = Clock(engine, "annotate")
W2V = Clock(wav2vec2, "align_result")
DEFAULT_BATCH_SECONDS = wav2vec2.BATCH_SECONDS
# the model: its run started (on a GPU, queued) and waited for
FORWARD, WAIT = Clock(wav2vec2, "_logits"), Clock(wav2vec2, "_finish")


def main() -> None:
    args = parse_args()
    if args.input_file:
        gap = HARD_GAP_SECONDS if args.input == "hard" else GAP_SECONDS
        long = extend(load_input(args.input_file), args.minutes, gap)
    else:
        long = build_input(args.minutes, args.input == "hard")
    if args.save_input:
        save_input(long, args.save_input)
        return
    print(f"mlx {mx.__version__}, gpu available: {mx.is_available(mx.gpu)}, model {args.model}")
    print(
        "| device | dtype | batch | config | VAD | files | audio min | wall s | token timing s "
        "| wav2vec2 s (model) | RTF | WER | peak | runs |"
    )
    print("|---|---|---:|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for device in args.devices.split(","):
        bench_device(device, args, long)


if __name__ == "__main__":
    main()
