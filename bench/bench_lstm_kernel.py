"""LSTM recurrence: custom kernel (kernels/lstm_scan.body) vs the pure-MLX reference on a GPU.

Shapes are pyannote segmentation's: hidden 128, 293 frames per 5 s window, a batch of windows
(32..256), and its LSTM stack (4 bidirectional layers = 8 scans per forward). Checks every
kernel output against the MLX reference and a float64 numpy recurrence, then times both and
prints a table. Needs only mlx (with a GPU backend: mlx[cuda13] or Metal) and numpy; it loads
mlxwx/kernels.py by path, without importing the rest of mlxwx:

    python bench/bench_lstm_kernel.py [--batches 32 64 128 256] [--rows 1 2 4 8]

On CUDA, MLX's float32 matmuls use TF32 unless MLX_ENABLE_TF32=0: the reference then differs
from float64 by ~1e-3, while the kernel computes in float32 throughout.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import mlx.core as mx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HIDDEN, FRAMES, LAYERS, FEATURES = 128, 293, 4, 60


def load_kernels():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("mlxwx_kernels", ROOT / "mlxwx" / "kernels.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def numpy_lstm(xw: np.ndarray, w_hh: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple:
    """float64 recurrence, PyTorch gate order: the ground truth."""
    xw, w_t, h, c = (a.astype(np.float64) for a in (xw, w_hh.T, h, c))
    hidden = w_t.shape[0]
    out = np.empty((*xw.shape[:2], hidden))
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    for t in range(xw.shape[1]):
        gates = xw[:, t] + h @ w_t
        i, f, g, o = (gates[:, k * hidden : (k + 1) * hidden] for k in range(4))
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        out[:, t] = h
    return out, h, c


def inputs(batch: int, dtype: mx.Dtype, seed: int = 0) -> tuple[mx.array, ...]:
    rng = np.random.default_rng(seed)
    xw = rng.standard_normal((batch, FRAMES, 4 * HIDDEN)).astype(np.float32)
    w_hh = (rng.standard_normal((4 * HIDDEN, HIDDEN)) / np.sqrt(HIDDEN)).astype(np.float32)
    zeros = np.zeros((batch, HIDDEN), np.float32)
    return tuple(mx.array(a).astype(dtype) for a in (xw, w_hh, zeros, zeros))


def timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Median wall time (ms) of fn() with its outputs evaluated, after two warm-up calls."""
    for _ in range(2):
        mx.eval(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval(fn())
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def max_diff(a: tuple, b: tuple) -> float:
    return max(
        float(np.abs(np.array(x, dtype=np.float64) - y).max()) for x, y in zip(a, b, strict=True)
    )


def scan_rows(k, batch: int, dtype: mx.Dtype, rows: list[int], repeats: int) -> list[str]:
    name = str(dtype).split(".")[-1]  # type: ignore[no-untyped-def]
    xw, w_hh, h0, c0 = inputs(batch, dtype)
    truth = numpy_lstm(*(np.array(a.astype(mx.float32)) for a in (xw, w_hh, h0, c0)))
    ref = k.lstm_scan_reference(xw, w_hh, h0, c0)
    mx.eval(ref)
    t_ref = timed(lambda: k.lstm_scan_reference(xw, w_hh, h0, c0), max(2, repeats // 4))
    lines = []
    for r in rows:
        out = k.lstm_scan_kernel(xw, w_hh, h0, c0, backend=BACKEND, rows=r)
        mx.eval(out)
        t_k = timed(
            lambda r=r: k.lstm_scan_kernel(xw, w_hh, h0, c0, backend=BACKEND, rows=r), repeats
        )
        lines.append(
            f"| scan | {batch} | {name} | {r} | {t_k:.2f} | {t_ref:.2f} | {t_ref / t_k:.1f}x "
            f"| {max_diff(out, [np.array(x, dtype=np.float64) for x in ref]):.1e} "
            f"| {max_diff(out, truth):.1e} | {max_diff(ref, truth):.1e} |"
        )
    return lines


def stack_inputs(batch: int, dtype: mx.Dtype) -> tuple[mx.array, list[tuple[mx.array, ...]]]:
    """Features (batch, 293, 60) and per layer and direction (w_ih, w_hh), random."""
    rng = np.random.default_rng(1)
    x = mx.array(rng.standard_normal((batch, FRAMES, FEATURES)).astype(np.float32)).astype(dtype)
    weights = []
    for layer in range(2 * LAYERS):
        size = FEATURES if layer < 2 else 2 * HIDDEN
        w_ih = rng.standard_normal((4 * HIDDEN, size)) / np.sqrt(size)
        w_hh = rng.standard_normal((4 * HIDDEN, HIDDEN)) / np.sqrt(HIDDEN)
        weights.append(tuple(mx.array(w.astype(np.float32)).astype(dtype) for w in (w_ih, w_hh)))
    mx.eval(x, weights)
    return x, weights


def stack(x: mx.array, weights: list[tuple[mx.array, ...]], scan) -> mx.array:  # type: ignore[no-untyped-def]
    """pyannote's LSTM: 4 bidirectional layers (input projection + scan per direction)."""
    zeros = mx.zeros((x.shape[0], HIDDEN), dtype=x.dtype)
    for layer in range(LAYERS):
        outs = []
        for direction in range(2):
            w_ih, w_hh = weights[2 * layer + direction]
            seq = x[:, ::-1] if direction else x
            hs = scan(seq @ w_ih.T, w_hh, zeros, zeros)[0]
            outs.append(hs[:, ::-1] if direction else hs)
        x = mx.concatenate(outs, axis=-1)
    return x


def stack_row(k, batch: int, dtype: mx.Dtype, repeats: int) -> str:  # type: ignore[no-untyped-def]
    x, weights = stack_inputs(batch, dtype)
    kern = lambda *a: k.lstm_scan_kernel(*a, backend=BACKEND)  # noqa: E731
    ref = k.lstm_scan_reference
    t_k = timed(lambda: stack(x, weights, kern), repeats)
    t_ref = timed(lambda: stack(x, weights, ref), max(2, repeats // 4))
    diff = float(mx.max(mx.abs(stack(x, weights, kern) - stack(x, weights, ref))))
    audio = batch * 0.5  # seconds of new audio per batch of windows 0.5 s apart
    rows = k.lstm_launch(batch, HIDDEN, BACKEND)[0]
    name = str(dtype).split(".")[-1]
    return (
        f"| stack | {batch} | {name} | {rows} | {t_k:.2f} | {t_ref:.2f} | {t_ref / t_k:.1f}x "
        f"| {diff:.1e} | | | {audio / (t_k / 1e3):.0f} s/s |"
    )


def main() -> int:
    global BACKEND
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--half", action="store_true", help="also float16")
    args = p.parse_args()
    k = load_kernels()
    BACKEND = k.kernel_backend(mx.Device(mx.gpu))
    if BACKEND is None:
        print("no GPU backend (Metal or CUDA) in this MLX: nothing to compare", file=sys.stderr)
        return 1
    mx.set_default_device(mx.gpu)
    print(f"mlx {mx.__version__}, backend {BACKEND}, {mx.device_info().get('device_name', '')}")
    print(
        "| what | batch | dtype | rows/group | kernel ms | reference ms | speedup "
        "| max abs kernel-ref | kernel-f64 | ref-f64 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    dtypes = [mx.float32, mx.float16] if args.half else [mx.float32]
    for dtype in dtypes:
        for batch in args.batches:
            for line in scan_rows(k, batch, dtype, args.rows, args.repeats):
                print(line, flush=True)
    print(
        "\nstack = 4 bidirectional layers incl. input projections; last column: seconds of audio"
        " (windows 0.5 s apart) per second"
    )
    for dtype in dtypes:
        for batch in args.batches:
            print(stack_row(k, batch, dtype, max(3, args.repeats // 4)), flush=True)
    return 0


BACKEND: str | None = None

if __name__ == "__main__":
    sys.exit(main())
