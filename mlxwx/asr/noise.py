"""Sampling noise that belongs to a window, not to a batch.

A sampled row draws its token as argmax(logits / T + Gumbel noise), the noise hashed from the
row's own key, the step and the vocabulary index (a counter-based generator: murmur3's 32-bit
finaliser). A window's rows therefore sample the same tokens whatever else shares their batch,
whichever process decodes them and in whatever order: a seeded run gives the same transcript in
one process or spread over worker processes that take work as they free up.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

_MASK = (1 << 32) - 1


def mix(*parts: int) -> int:
    """A 32-bit key from integers (splitmix64 over each in turn)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (p & ((1 << 64) - 1))) * 0xBF58476D1CE4E5B9 & ((1 << 64) - 1)
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & ((1 << 64) - 1)
        h ^= h >> 29
    return h & _MASK


def _fmix(x: mx.array) -> mx.array:
    x = x ^ (x >> 16)
    x = x * mx.array(0x85EBCA6B, mx.uint32)
    x = x ^ (x >> 13)
    x = x * mx.array(0xC2B2AE35, mx.uint32)
    return x ^ (x >> 16)


def gumbel(keys: mx.array, step: int, n: int) -> mx.array:
    """(rows, n) float32 Gumbel noise for rows with uint32 `keys` at decoding step `step`."""
    base = _fmix(keys + mx.array((step * 0x9E3779B9) & _MASK, mx.uint32))
    column = mx.arange(n, dtype=mx.uint32) * mx.array(0x27D4EB2F, mx.uint32)
    bits = _fmix(base[:, None] ^ column[None]) >> 8  # 24 uniform bits
    uniform = (bits.astype(mx.float32) + 0.5) * (1.0 / (1 << 24))
    return -mx.log(-mx.log(uniform))


def sample(logits: mx.array, temperature: float, keys: mx.array, step: int) -> mx.array:
    """A token per row, drawn from softmax(logits / temperature) with the rows' own noise."""
    return mx.argmax(logits / temperature + gumbel(keys, step, logits.shape[-1]), axis=-1)


def draw_seed() -> int:
    """A seed drawn from MLX's random state (`mx.random.seed` makes it repeatable)."""
    return int(np.asarray(mx.random.randint(0, 1 << 31, ())))
