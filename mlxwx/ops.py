"""Attention (over plain or 8-bit packed keys), GELU and logsumexp, fast on every MLX backend.

On GPUs these are MLX's own fused ops. On MLX's Linux CPU backend, `exp` and `erf` are scalar
code, several times slower an element than a multiply, and they dominate the Whisper encoder
(the softmax over (heads, 1500, 1500) scores; figures in bench/RESULTS.md). There the same
maths runs as arithmetic that `mx.compile` fuses into a few C++ loops, over blocks of scores
small enough to stay in the CPU's L2 cache:

- exp(y) for y <= 0 (softmax arguments after the row maximum is subtracted) is
  p(y / 64) ** 64: a degree-4 Taylor polynomial, then six squarings. Its absolute error
  against exp is below 4e-6 (the row maximum scores 1); its relative error grows far from the
  maximum (3e-5 in a logsumexp over 51,865 logits). It runs as three compiled kernels: the
  floor, the polynomial, the squarings. MLX's CPU `maximum` and `minimum` test for NaN with a
  branch, and g++ vectorises a loop with that branch only when little else is in it (a floor
  fused with the polynomial ran scalar); the polynomial and the squarings fused in one kernel
  also ran slower than apart (not explained; bench/RESULTS.md).
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
from typing import NamedTuple

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
def _exp_arg(s: mx.array, m: mx.array) -> mx.array:
    return mx.maximum(s - m, EXP_FLOOR)


@mx.compile
def _exp_poly(y: mx.array) -> mx.array:
    return _horner((1.0, 1.0, 1 / 2, 1 / 6, 1 / 24), y * (1.0 / 2**EXP_SQUARINGS))


@mx.compile
def _exp_square(p: mx.array) -> mx.array:
    for _ in range(EXP_SQUARINGS):
        p = mx.square(p)
    return p


def exp_shifted(s: mx.array, m: mx.array) -> mx.array:
    """exp(s - m) for m >= s (row maxima), float32, as three fused CPU kernels."""
    return _exp_square(_exp_poly(_exp_arg(s, m)))


def _block_attention(
    q: mx.array, k: mx.array, v: mx.array, scale: float, mask_t: mx.array | None
) -> mx.array:
    """softmax(q k^T * scale) v for (N, Tq, D) q and (N, Tk, D) k, v, from scores computed
    transposed, (N, Tk, Tq): the max and sum then reduce over a strided axis, which MLX's CPU
    backend runs as vectorised row-by-row maxima and sums (2-5x faster than its per-row
    reductions along the contiguous axis). `mask_t`: boolean or additive, (N, Tk, Tq)."""
    s = k @ (q * scale).swapaxes(-1, -2)
    if mask_t is not None:
        s = mx.where(mask_t, s, -mx.inf) if mask_t.dtype == mx.bool_ else s + mask_t
    e = exp_shifted(s, mx.max(s, axis=-2, keepdims=True))
    return (e.swapaxes(-1, -2) @ v) / mx.sum(e, axis=-2, keepdims=True).swapaxes(-1, -2)


def _attention_cpu(
    q: mx.array, k: mx.array, v: mx.array, scale: float, mask: mx.array | None
) -> mx.array:
    """Softmax attention in blocks of at most SCORE_BLOCK scores, each block one (batch, head)
    matrix's chunk of query rows when a matrix is large (the encoder: 174 of 1500 rows, a shape
    BLAS runs twice as fast as 21 rows of all heads), or whole groups of matrices when they are
    small (decoding)."""
    b, h, tq, tk = *q.shape[:3], k.shape[2]
    dtype, n = q.dtype, b * h
    # Blocks slice these: copy head-split (transposed) views once, not once per block.
    q, k, v = (mx.contiguous(x.astype(mx.float32)).reshape(n, -1, x.shape[3]) for x in (q, k, v))
    mask_t = None
    if mask is not None:
        mask_t = mx.broadcast_to(mask, (b, h, tq, tk)).reshape(n, tq, tk).swapaxes(-1, -2)
    rows = max(1, SCORE_BLOCK // tk)  # query rows of one matrix per block
    group = max(1, rows // tq)  # matrices per block
    outs = []
    for n0 in range(0, n, group):
        of = slice(n0, n0 + group)
        chunks = [
            _block_attention(
                q[of, q0 : q0 + rows],
                k[of],
                v[of],
                scale,
                None if mask_t is None else mask_t[of, :, q0 : q0 + rows],
            )
            for q0 in range(0, tq, rows)
        ]
        outs.append(chunks[0] if len(chunks) == 1 else mx.concatenate(chunks, axis=1))
    out = outs[0] if len(outs) == 1 else mx.concatenate(outs, axis=0)
    return out.reshape(b, h, tq, -1).astype(dtype)


class Packed(NamedTuple):
    """`rows` vectors (axis -2 of what was packed) in `bits` bits: a scale and an offset, in the
    vectors' dtype, per PACK_GROUP values. Values are packed along their last axis; keys
    (`keys`) transposed, each channel along its rows, padded to whole groups (the last row
    repeated)."""

    data: mx.array
    scales: mx.array
    offsets: mx.array
    rows: int
    keys: bool


Keys = mx.array | Packed
PACK_GROUP = 64  # values that share a scale and an offset (a Whisper head is 64 wide)


def pack(x: mx.array, bits: int, keys: bool = False) -> Packed:
    """`x` in `bits` bits (`mx.quantize`), for `attention` to read as values or as `keys`.
    Keys are packed per channel, as KIVI does (their outliers sit in a few channels), and read
    as q @ K^T from the transposed layout: MLX's CUDA quantized matmul computes
    x @ unpacked^T (`transpose=True`) wrongly for 64-wide vectors (bench/RESULTS.md)."""
    rows = x.shape[-2]
    if keys:
        if extra := -rows % PACK_GROUP:
            x = mx.concatenate([x, mx.repeat(x[..., -1:, :], extra, axis=-2)], axis=-2)
        x = x.swapaxes(-1, -2)
    elif x.shape[-1] % PACK_GROUP:
        raise ValueError(f"packing needs a last axis that is a multiple of {PACK_GROUP}")
    data, scales, offsets = mx.quantize(x, group_size=PACK_GROUP, bits=bits)
    return Packed(data, scales, offsets, rows, keys)


def _bits(p: Packed) -> int:
    return p.data.shape[-1] * 32 // (p.scales.shape[-1] * PACK_GROUP)


def unpack(p: Packed) -> mx.array:
    """The vectors `p` stands for, as they were packed."""
    whole = mx.dequantize(p.data, p.scales, p.offsets, group_size=PACK_GROUP, bits=_bits(p))
    return whole.swapaxes(-1, -2)[..., : p.rows, :] if p.keys else whole


def _packed_matmul(x: mx.array, p: Packed) -> mx.array:
    """x @ K^T (`p.keys`: only its `rows` columns) or x @ V."""
    bits = _bits(p)
    out = mx.quantized_matmul(
        x, p.data, p.scales, p.offsets, transpose=False, group_size=PACK_GROUP, bits=bits
    )
    return out[..., : p.rows] if p.keys and out.shape[-1] > p.rows else out


def rows_of(x: Keys, index: object) -> Keys:
    """x[index] for an array or each part of a `pack`ed one (its leading axes are x's; `index`
    must not reach its rows)."""
    if isinstance(x, Packed):
        parts = (x.data[index], x.scales[index], x.offsets[index])  # type: ignore[index]
        return Packed(*parts, x.rows, x.keys)
    return x[index]  # type: ignore[index]


def leading(x: Keys) -> tuple[int, ...]:
    """The shape of `x` but its last axis (`pack`ed or not)."""
    if isinstance(x, Packed):
        return (*x.data.shape[:-2], x.rows)
    return x.shape[:-1]


def scores(q: mx.array, k: Keys) -> mx.array:
    """q k^T over the last axis, `k` (B, H, S, D) plain or `pack`ed as keys."""
    if isinstance(k, Packed):
        return _packed_matmul(q, k)
    return q @ k.swapaxes(-1, -2)


def _packed_attention(
    q: mx.array, k: Packed, v: Packed, scale: float, mask: mx.array | None
) -> mx.array:
    s = scores(q * scale, k)
    if mask is not None:
        s = mx.where(mask, s, -mx.inf) if mask.dtype == mx.bool_ else s + mask
    p = mx.softmax(s.astype(mx.float32), axis=-1).astype(q.dtype)
    return _packed_matmul(p, v)


def attention(
    q: mx.array, k: Keys, v: Keys, scale: float, mask: mx.array | None = None
) -> mx.array:
    """softmax(q k^T * scale + mask) v for (B, H, T, D) arrays; `mask` additive or boolean
    (True = attend), broadcastable to (B, H, Tq, Tk). Keys and values may be `pack`ed (both):
    read in their bits by `mx.quantized_matmul`."""
    if isinstance(k, Packed) and isinstance(v, Packed):
        return _packed_attention(q, k, v, scale, mask)
    assert isinstance(k, mx.array) and isinstance(v, mx.array)
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


@mx.compile
def _erf_arg(x: mx.array) -> mx.array:
    """x / sqrt(2) clipped to [-4, 4] as 0.5 (|a + 4| - |a - 4|): no `maximum`/`minimum`, whose
    NaN branch keeps g++ from vectorising the loop (1.2 ms against 0.5 ms on 3M values). Exact
    outside; inside, within half a unit in the last place of 8."""
    a = x * (1 / math.sqrt(2))
    return 0.5 * (mx.abs(a + 4.0) - mx.abs(a - 4.0))


@mx.compile
def _erf_p(t: mx.array) -> mx.array:
    return _horner(ERF_P, t)


@mx.compile
def _erf_q(t: mx.array) -> mx.array:
    return _horner(ERF_Q, t)


@mx.compile
def _gelu_out(x: mx.array, a: mx.array, p: mx.array, q: mx.array) -> mx.array:
    return 0.5 * x * (1 + a * p / q)


def gelu(x: mx.array) -> mx.array:
    """Exact (erf) GELU. The CPU version is four small fused kernels and a square: one kernel
    for all of it ran 1.4x slower than these, although g++ vectorised it (measured, not
    explained)."""
    if not _on_cpu():
        return nn.gelu(x)
    dtype = x.dtype
    x = x.astype(mx.float32)
    a = _erf_arg(x)
    t = mx.square(a)
    return _gelu_out(x, a, _erf_p(t), _erf_q(t)).astype(dtype)
