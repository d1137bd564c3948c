"""Whisper base, step by step: mlxwx against mlx-whisper on the same weights, in one process.

Times (1) the encoder forward at batch 1 and 4, (2) one decoder step (per-token cost of a
teacher-forced 100-token continuation) at batch 1 and 8, and (3) an end-to-end greedy decode of
tests/data/jfk.flac (one 30 s window, timestamps on), and (4) mlxwx's compiled decoder step
(`DecodingOptions.compiled_step`) against its eager step at batch 1 and 8, timed the same way as
(2). Every timed output is `mx.eval`ed; each figure is the median of --repeats runs after one
warm-up run.

    python bench/bench_steps.py [--repeats N] [--device cpu|gpu] [--model base] [--only-compiled]

--only-compiled runs (4) alone (mlx-whisper is then not loaded).

float32 on CPU, float16 on GPU. mlx-whisper's `load_model` does not cast the weights it reads
(our folders store float16), so its parameters are cast to the same dtype as ours here.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
import mlxwx  # first: preloads a fast BLAS (MKL or OpenBLAS) on Linux before mlx.core loads

# isort: split
import mlx.core as mx
import mlx_whisper
import numpy as np
from mlx_whisper import decoding as mw_decoding
from mlx_whisper.load_models import load_model as mw_load_model

from mlxwx.asr.decoding import DecodingOptions, decode
from mlxwx.asr.step import decoder_step
from mlxwx.audio import N_FRAMES, N_SAMPLES, load_audio, log_mel_spectrogram, pad_or_trim

JFK = Path(__file__).resolve().parents[1] / "tests" / "data" / "jfk.flac"
N_STEPS = 100  # teacher-forced continuation length for the decoder-step timing
WARMUP_STEPS = 5
ENCODER_BATCHES = (1, 4)
DECODER_BATCHES = (1, 8)


@dataclass
class Row:
    item: str
    ours_ms: float
    theirs_ms: float
    note: str = ""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed encoder / end-to-end runs (median)"
    )
    parser.add_argument(
        "--decoder-runs", type=int, default=1, help=f"timed {N_STEPS}-step decoder runs"
    )
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--model", default="base", help="model name or folder (default base)")
    parser.add_argument(
        "--only-compiled", action="store_true", help="time only compiled vs eager decoder steps"
    )
    return parser.parse_args()


def setup_device(name: str) -> mx.Dtype:
    """Select the device and return the dtype to run in (float16 on the GPU)."""
    try:
        mlxwx.use_device(name)
    except mlxwx.MlxwxError as err:
        sys.exit(f"--device {name}: {err}")
    return mlxwx.asr.model.default_dtype()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(dtype: mx.Dtype) -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = [
        f"date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"cpu: {cpu_model()}, {os.cpu_count()} cores ({usable} usable)",
        f"platform: {platform.platform()}, python {platform.python_version()}",
        f"mlx {mx.__version__}, mlx-whisper {mlx_whisper.__version__}, mlxwx {mlxwx.__version__}",
        f"device: {mx.default_device()}, dtype {dtype}",
        f"blas: {mlxwx._blas.status}",
    ]
    if mx.default_device() == mx.gpu:
        info.append(f"gpu: {mx.device_info().get('device_name', '?')}")
    return info


def load_average() -> str:
    """1/5/15-minute load averages: other work on the machine skews every timing."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def load_models(
    name: str, dtype: mx.Dtype
) -> tuple[mlxwx.WhisperModel, mlx_whisper.whisper.Whisper]:
    wm = mlxwx.load_model(name, dtype=dtype).whisper
    theirs = mw_load_model(str(wm.path), dtype=dtype)
    theirs.set_dtype(dtype)  # floating parameters only; see the module docstring
    mx.eval(theirs.parameters())
    return wm, theirs


def jfk_mel() -> mx.array:
    """(3000, 80) log-mel of the first 30 s window of jfk.flac, as transcribe prepares it."""
    mel = log_mel_spectrogram(load_audio(JFK), padding=N_SAMPLES)
    mel = pad_or_trim(mel[:N_FRAMES], N_FRAMES, axis=0)
    mx.eval(mel)
    return mel


def stopwatch(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired_ms(
    ours: Callable[[], object], theirs: Callable[[], object], repeats: int, warmup: bool = True
) -> tuple[float, float]:
    """Median wall times (ms) of `ours` and `theirs`, called alternately `repeats` times each
    (after one warm-up call of each); alternating spreads any background load over both."""
    if warmup:
        ours(), theirs()
    ours_s, theirs_s = [], []
    for _ in range(repeats):
        ours_s.append(stopwatch(ours))
        theirs_s.append(stopwatch(theirs))
    return 1e3 * statistics.median(ours_s), 1e3 * statistics.median(theirs_s)


def max_abs_diff(ours: list[mx.array], theirs: list[mx.array]) -> float:
    diffs = [
        mx.max(mx.abs(a.astype(mx.float32) - b.astype(mx.float32)))
        for a, b in zip(ours, theirs, strict=True)
    ]
    return max(d.item() for d in diffs)


def bench_encoder(wm, theirs, mel: mx.array, batch: int, repeats: int, warmup: bool) -> Row:
    """Encoder forward on `batch` copies of `mel`; the outputs of the last timed calls compared."""
    x = mx.tile(mel[None], (batch, 1, 1)).astype(wm.model.dtype)
    mx.eval(x)
    out: dict[str, mx.array] = {}

    def ours() -> None:
        out["ours"] = wm.model.encoder(x)
        mx.eval(out["ours"])

    def theirs_() -> None:
        out["theirs"] = theirs.encoder(x)
        mx.eval(out["theirs"])

    ours_ms, theirs_ms = paired_ms(ours, theirs_, repeats, warmup)
    diff = max_abs_diff([out["ours"]], [out["theirs"]])
    return Row(f"encoder forward, B={batch}", ours_ms, theirs_ms, f"max abs diff {diff:.1e}")


def teacher_tokens(wm: mlxwx.WhisperModel, batch: int) -> tuple[mx.array, mx.array]:
    """The transcribe prompt (B, 3) and a fixed text continuation (B, N_STEPS), seeded."""
    tok = wm.tokenizer
    prompt = tok.sot_sequence("en", "transcribe", True)
    text = np.random.default_rng(0).integers(0, tok.eot, size=(batch, N_STEPS))
    return mx.array([prompt] * batch), mx.array(text)


class OursStepper:
    """mlxwx: cross K/V once, the prompt once, then 1-token steps into the preallocated cache."""

    def __init__(self, model, audio: mx.array, prompt: mx.array):
        self.decoder = model.decoder
        self.cross_kv = self.decoder.cross_kv(audio)
        self.cache = self.decoder.new_cache(audio.shape[0], model.dtype)
        self.first = self.decoder(prompt, self.cross_kv, self.cache, 0)[:, -1]
        self.offset = prompt.shape[1]
        mx.eval(self.first, self.cross_kv, [(c.keys, c.values) for c in self.cache])

    def step(self, tokens: mx.array) -> mx.array:
        logits = self.decoder(tokens, self.cross_kv, self.cache, self.offset)[:, -1]
        self.offset += tokens.shape[1]
        mx.eval(logits)
        return logits


class TheirsStepper:
    """mlx-whisper's `Inference.logits` call pattern: `decoder(tokens, audio, kv_cache)` every
    step; the prompt call projects cross K/V into the cache, later calls reuse them (re-split and
    re-scaled in every layer) and concatenate the self-attention K/V."""

    def __init__(self, model, audio: mx.array, prompt: mx.array):
        self.decoder, self.audio = model.decoder, audio
        logits, self.kv_cache, _ = self.decoder(prompt, audio, kv_cache=None)
        self.first = logits[:, -1]
        mx.eval(self.first, self.kv_cache)

    def step(self, tokens: mx.array) -> mx.array:
        logits, self.kv_cache, _ = self.decoder(tokens, self.audio, kv_cache=self.kv_cache)
        logits = logits[:, -1]
        mx.eval(logits)
        return logits


class CompiledStepper(OursStepper):
    """mlxwx's compiled step (`mlxwx.asr.step.decoder_step`, as the decode loop calls it): the same
    cache and prompt, each 1-token step one replay of a function traced once per batch size."""

    def __init__(self, model, audio: mx.array, prompt: mx.array):
        super().__init__(model, audio, prompt)
        self.pad = mx.zeros((audio.shape[0],), mx.int32)

    def step(self, tokens: mx.array) -> mx.array:
        logits = decoder_step(
            self.decoder, tokens[:, 0], self.offset, self.pad, self.cache, self.cross_kv
        )
        self.offset += 1
        mx.eval(logits)
        return logits


def interleaved_steps(ours_s, theirs_s, text: mx.array) -> tuple[list[list[float]], float]:
    """Step two decoders through `text` alternately: per-step seconds of each, logit diff."""
    times: list[list[float]] = [[], []]
    diffs = [max_abs_diff([ours_s.first], [theirs_s.first])]
    for i in range(text.shape[1]):
        tokens = text[:, i : i + 1]
        start = time.perf_counter()
        a = ours_s.step(tokens)
        middle = time.perf_counter()
        b = theirs_s.step(tokens)
        times[0].append(middle - start)
        times[1].append(time.perf_counter() - middle)
        diffs.append(max_abs_diff([a], [b]))
    return times, max(diffs)


Pair = Callable[[mx.array, mx.array], tuple[Any, Any]]


def step_runs(wm, pair: Pair, audio1: mx.array, batch: int, runs: int) -> tuple[float, float, str]:
    """Median step times of the two steppers `pair(audio, prompt)` builds, over `runs`
    teacher-forced runs of N_STEPS 1-token steps each, stepped alternately (prompt and cross K/V
    untimed; one short warm-up run)."""
    audio = mx.tile(audio1, (batch, 1, 1))
    prompt, text = teacher_tokens(wm, batch)
    mx.eval(audio, prompt, text)
    interleaved_steps(*pair(audio, prompt), text[:, :WARMUP_STEPS])
    times: tuple[list[float], list[float]] = ([], [])
    diff = 0.0
    for _ in range(runs):
        (a, b), d = interleaved_steps(*pair(audio, prompt), text)
        times[0].extend(a)
        times[1].extend(b)
        diff = max(diff, d)
    first_ms, second_ms = (1e3 * statistics.median(t) for t in times)
    means = "/".join(f"{1e3 * statistics.mean(t):.1f}" for t in times)
    return first_ms, second_ms, f"per step, median (means {means}); max abs logit diff {diff:.1e}"


def bench_decoder(wm, theirs, audio1: mx.array, batch: int, runs: int) -> Row:
    """mlxwx's eager step against mlx-whisper's."""

    def pair(audio: mx.array, prompt: mx.array) -> tuple[OursStepper, TheirsStepper]:
        return OursStepper(wm.model, audio, prompt), TheirsStepper(theirs, audio, prompt)

    ours_ms, theirs_ms, note = step_runs(wm, pair, audio1, batch, runs)
    return Row(f"decoder step, B={batch}", ours_ms, theirs_ms, note)


def bench_compiled(wm, audio1: mx.array, batch: int, runs: int) -> Row:
    """mlxwx's compiled step against its eager step (first trace in the warm-up run)."""

    def pair(audio: mx.array, prompt: mx.array) -> tuple[CompiledStepper, OursStepper]:
        return CompiledStepper(wm.model, audio, prompt), OursStepper(wm.model, audio, prompt)

    compiled_ms, eager_ms, note = step_runs(wm, pair, audio1, batch, runs)
    return Row(f"decoder step compiled vs eager, B={batch}", compiled_ms, eager_ms, note)


def bench_e2e(wm, theirs, mel: mx.array, repeats: int) -> tuple[Row, list[str]]:
    """Greedy decode of one 30 s window with timestamps, encoder included, each library's way."""
    fp16 = wm.model.dtype == mx.float16
    ours_opts = DecodingOptions(language="en", beam_size=1)
    theirs_opts = mw_decoding.DecodingOptions(language="en", fp16=fp16)
    out: dict[str, object] = {}

    def ours() -> None:
        out["ours"] = decode(wm, mel[None], ours_opts)[0]

    def theirs_() -> None:
        out["theirs"] = mw_decoding.decode(theirs, mel, theirs_opts)

    ours_ms, theirs_ms = paired_ms(ours, theirs_, repeats)
    a, b = out["ours"], out["theirs"]
    same = "same tokens" if list(a.tokens) == list(b.tokens) else "tokens differ"
    note = f"{len(a.tokens)} vs {len(b.tokens)} tokens, {same}"
    texts = [f"mlxwx:       {a.text.strip()!r}", f"mlx-whisper: {b.text.strip()!r}"]
    return Row("decode jfk end-to-end", ours_ms, theirs_ms, note), texts


def print_table(rows: list[Row], names: tuple[str, str] = ("mlxwx", "mlx-whisper")) -> None:
    a, b = names
    print(f"| item | {a} ms | {b} ms | ratio ({b} / {a}) | note |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        ratio = r.theirs_ms / r.ours_ms
        print(f"| {r.item} | {r.ours_ms:.2f} | {r.theirs_ms:.2f} | {ratio:.2f}x | {r.note} |")


def bench_e2e_compiled(wm, mel: mx.array, repeats: int) -> Row:
    """Greedy decode of one 30 s window, encoder included, with the compiled step and without."""
    out: dict[bool, object] = {}

    def run(compiled: bool) -> Callable[[], None]:
        def call() -> None:
            opts = DecodingOptions(language="en", beam_size=1, compiled_step=compiled)
            out[compiled] = decode(wm, mel[None], opts)[0].tokens

        return call

    compiled_ms, eager_ms = paired_ms(run(True), run(False), repeats)
    same = "same tokens" if out[True] == out[False] else "TOKENS DIFFER"
    return Row("decode jfk end-to-end", compiled_ms, eager_ms, same)


def compiled_rows(wm, mel: mx.array, audio1: mx.array, args: argparse.Namespace) -> list[Row]:
    rows = [bench_compiled(wm, audio1, b, args.decoder_runs) for b in DECODER_BATCHES]
    return [*rows, bench_e2e_compiled(wm, mel, args.repeats)]


def main() -> None:
    args = parse_args()
    dtype = setup_device(args.device)
    started = time.perf_counter()
    for line in machine_info(dtype):
        print(line)
    print(
        f"model: {args.model}; repeats: {args.repeats} (median; alternated; warm-up as in the "
        f"code); decoder: {args.decoder_runs} run(s) of {N_STEPS} alternated steps"
    )
    print(f"load average at start: {load_average()}\n")
    mel = jfk_mel()
    if args.only_compiled:
        wm = mlxwx.load_model(args.model, dtype=dtype).whisper
        audio1 = wm.model.encoder(mel[None].astype(dtype))
        mx.eval(audio1)
    else:
        wm, theirs = load_models(args.model, dtype)
        # One warm-up for the encoder (a first call at a larger batch was not slower here).
        rows = [
            bench_encoder(wm, theirs, mel, b, args.repeats, warmup=i == 0)
            for i, b in enumerate(ENCODER_BATCHES)
        ]
        audio1 = wm.model.encoder(mel[None].astype(dtype))
        mx.eval(audio1)
        rows += [bench_decoder(wm, theirs, audio1, b, args.decoder_runs) for b in DECODER_BATCHES]
        e2e, texts = bench_e2e(wm, theirs, mel, args.repeats)
        rows.append(e2e)
        print_table(rows)
        print("\n" + "\n".join(texts) + "\n")
    print_table(compiled_rows(wm, mel, audio1, args), ("compiled", "eager"))
    print(f"\nload average at end: {load_average()}")
    print(f"total run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
