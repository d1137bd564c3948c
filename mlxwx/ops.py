"""Attention, GELU and logsumexp, fast on every MLX backend.

On GPUs these are MLX's own fused ops. On MLX's Linux CPU backend, `exp` and `erf` are scalar
code (13 and 25 ns an element on our Xeon, against 2 ns for a multiply), and they dominate the
Whisper encoder: the softmax over (heads, 1500, 1500) scores took 60% of it. There the same
maths runs as arithmetic that `mx.compile` fuses into a few C++ loops, over blocks of scores
small enough to stay in the CPU's L2 cache:

- exp(y) for y <= 0 (softmax arguments after the row maximum is subtracted) is
  p(y / 64) ** 64: a degree-4 Taylor polynomial, then six squarings. Its absolute error
  against exp is below 4e-6 (the row maximum scores 1); its relative error grows far from the
  maximum (3e-5 in a logsumexp over 51,865 logits). MLX's fused kernels cap a chain at 11
  operations, so the polynomial and the squarings are two compiled kernels.
- erf (inside GELU) is x P(x^2) / Q(x^2) on |x| <= 4, degree 5 over 5, with coefficients fitted
  for mlxwx (linearised least squares, Lawson-reweighted towards minimax): absolute error
  2e-8 in float64, 4e-7 once evaluated in float32.

`fast_cpu_math()` says whether the CPU versions are used: on Linux with a C++ compiler (MLX
compiles fused CPU kernels with g++; without one `mx.compile` would leave twenty separate
passes). On macOS MLX's CPU `exp` is vectorised already, so MLX's ops are kept there.
"""

from __future__ import annotations

import functools
import logging
import math
import platform
import shutil

import mlx.core as mx
import mlx.nn as nn

SCORE_BLOCK = 1 << 18  # float32 scores per block: 1 MiB, inside a 2 MiB L2 with room to spare
EXP_SQUARINGS = 6
EXP_FLOOR = -87.0  # exp(-87) ~ 1.6e-38, the smallest normal float32 order of magnitude
ERF_P = (
    1.1283789763771428,
    0.19625019342275338,
    0.053467634321040174,
    0.004003698102133217,
    0.0002880426144979791,
    1.974819920054443e-06,
)
ERF_Q = (
    1.0,
    0.50725336388512,
    0.11647692556306799,
    0.0154445245156753,
    0.001216372726855925,
    3.7480821850252e-05,
)
_enabled: bool | None = None
log = logging.getLogger(__name__)


@functools.cache
def _platform_supports() -> bool:
    if platform.system() != "Linux":
        return False
    if shutil.which("g++") is None:
        log.warning(
            "no g++ on PATH: MLX cannot fuse mlxwx's CPU attention and GELU, so its slower "
            "exp/erf are used (install g++ to speed up CPU transcription about 1.7x)"
        )
        return False
    return True


def fast_cpu_math() -> bool:
    """True when attention and GELU on the CPU use mlxwx's fused versions."""
    return _platform_supports() if _enabled is None else _enabled


def set_fast_cpu_math(enabled: bool | None) -> None:
    """Force the CPU versions on or off (benchmarks, tests); None restores the default."""
    global _enabled
    _enabled = enabled


def _on_cpu() -> bool:
    return mx.default_device() == mx.cpu and fast_cpu_math()


def _horner(coefficients: tuple[float, ...], x: mx.array) -> mx.array:
    out = mx.array(coefficients[-1], x.dtype)
    for c in coefficients[-2::-1]:
        out = out * x + c
    return out


@mx.compile
def _exp_poly(s: mx.array, m: mx.array) -> mx.array:
    y = mx.maximum(s - m, EXP_FLOOR) * (1.0 / 2**EXP_SQUARINGS)
    return _horner((1.0, 1.0, 1 / 2, 1 / 6, 1 / 24), y)


@mx.compile
def _exp_square(p: mx.array) -> mx.array:
    for _ in range(EXP_SQUARINGS):
        p = mx.square(p)
    return p


def exp_shifted(s: mx.array, m: mx.array) -> mx.array:
    """exp(s - m) for m >= s (row maxima), float32, as two fused CPU kernels."""
    return _exp_square(_exp_poly(s, m))


def _block_attention(
    q: mx.array, k: mx.array, v: mx.array, scale: float, mask: mx.array | None
) -> mx.array:
    if q.shape[2] == 1:  # one query (a decoding step): BLAS runs k q^T faster than q k^T
        s = (k @ (q * scale).swapaxes(-1, -2)).swapaxes(-1, -2)
    else:
        s = (q * scale) @ k.swapaxes(-1, -2)
    if mask is not None:
        s = mx.where(mask, s, -mx.inf) if mask.dtype == mx.bool_ else s + mask
    e = exp_shifted(s, mx.max(s, axis=-1, keepdims=True))
    return (e @ v) / mx.sum(e, axis=-1, keepdims=True)


def _attention_cpu(
    q: mx.array, k: mx.array, v: mx.array, scale: float, mask: mx.array | None
) -> mx.array:
    """Softmax attention in blocks of at most SCORE_BLOCK scores: one batch row's query chunk
    when a row is large (the encoder), whole groups of batch rows when it is small (decoding)."""
    b, h, tq, tk = *q.shape[:3], k.shape[2]
    dtype = q.dtype
    # Blocks slice these: copy head-split (transposed) views once, not once per block.
    q, k, v = (mx.contiguous(x.astype(mx.float32)) for x in (q, k, v))
    if mask is not None:
        mask = mx.broadcast_to(mask, (b, h, tq, tk))
    rows = max(1, SCORE_BLOCK // (h * tk))  # query rows of one batch row per block
    group = max(1, rows // tq)  # batch rows per block
    outs = []
    for b0 in range(0, b, group):
        rows_of = slice(b0, b0 + group)
        chunks = [
            _block_attention(
                q[rows_of, :, q0 : q0 + rows],
                k[rows_of],
                v[rows_of],
                scale,
                None if mask is None else mask[rows_of, :, q0 : q0 + rows],
            )
            for q0 in range(0, tq, rows)
        ]
        outs.append(chunks[0] if len(chunks) == 1 else mx.concatenate(chunks, axis=2))
    out = outs[0] if len(outs) == 1 else mx.concatenate(outs, axis=0)
    return out.astype(dtype)


def attention(
    q: mx.array, k: mx.array, v: mx.array, scale: float, mask: mx.array | None = None
) -> mx.array:
    """softmax(q k^T * scale + mask) v for (B, H, T, D) arrays; `mask` additive or boolean
    (True = attend), broadcastable to (B, H, Tq, Tk)."""
    if _on_cpu():
        return _attention_cpu(q, k, v, scale, mask)
    return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)


def logsumexp(x: mx.array, axis: int = -1) -> mx.array:
    """log(sum(exp(x))) along `axis` (kept dims dropped); -inf entries count as zero."""
    if not _on_cpu():
        return mx.logsumexp(x, axis=axis)
    m = mx.max(x, axis=axis, keepdims=True)
    total = mx.sum(exp_shifted(x.astype(mx.float32), m), axis=axis, keepdims=True)
    return (m + mx.log(total)).squeeze(axis).astype(x.dtype)


def top_k_columns(x: mx.array, k: int) -> mx.array:
    """Column indices (rows, k), unordered, of the k largest entries of each row of `x`.

    A full-row partition over Whisper's vocabulary costs 36 ms at 80 rows on our CPU. The k
    largest entries lie in the k blocks (of `_column_block` columns) with the largest maxima:
    each lies in a block whose maximum is at least the k-th largest value, and at most k blocks
    reach it. So one max pass and two small partitions find them (4 ms). Ties may resolve to
    other columns than a full partition picks."""
    rows, cols = x.shape
    block = _column_block(cols, k)
    if block == 0:
        return mx.argpartition(-x, kth=k - 1, axis=-1)[:, :k]
    main = cols - cols % block  # the last columns that fill no block are candidates as they are
    maxima = mx.max(x[:, :main].reshape(rows, -1, block), axis=-1)
    best = mx.argpartition(-maxima, kth=k - 1, axis=-1)[:, :k]
    candidates = (best[:, :, None] * block + mx.arange(block)).reshape(rows, -1)
    if main < cols:
        tail = mx.broadcast_to(mx.arange(main, cols), (rows, cols - main))
        candidates = mx.concatenate([candidates, tail], axis=-1)
    values = mx.take_along_axis(x, candidates, axis=-1)
    pick = mx.argpartition(-values, kth=k - 1, axis=-1)[:, :k]
    return mx.take_along_axis(candidates, pick, axis=-1)


@functools.cache
def _column_block(cols: int, k: int) -> int:
    """Block width for `top_k_columns`: a divisor of `cols` in [16, 64] if there is one, else 32;
    0 (a plain partition) when the blocks would not cut the work."""
    if cols < 64 * k:
        return 0
    return next((b for b in range(64, 15, -1) if cols % b == 0), 32)


def _erf_arg(x: mx.array) -> mx.array:
    return mx.clip(x * (1 / math.sqrt(2)), -4.0, 4.0)


@mx.compile
def _erf_square(x: mx.array) -> mx.array:
    return mx.square(_erf_arg(x))


@mx.compile
def _erf_p(t: mx.array) -> mx.array:
    return _horner(ERF_P, t)


@mx.compile
def _erf_q(t: mx.array) -> mx.array:
    return _horner(ERF_Q, t)


@mx.compile
def _gelu_out(x: mx.array, p: mx.array, q: mx.array) -> mx.array:
    return 0.5 * x * (1 + _erf_arg(x) * p / q)


def gelu(x: mx.array) -> mx.array:
    """Exact (erf) GELU. The CPU version is four fused kernels (its operands fan out, and MLX
    fuses a value used in several places only when it is a kernel input)."""
    if not _on_cpu():
        return nn.gelu(x)
    dtype = x.dtype
    x = x.astype(mx.float32)
    t = _erf_square(x)
    return _gelu_out(x, _erf_p(t), _erf_q(t)).astype(dtype)
