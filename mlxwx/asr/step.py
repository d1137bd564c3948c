"""The decoder's one-token step compiled with `mx.compile`, traced once per batch shape.

On a GPU a Whisper step is hundreds of small kernels built from Python per token, so it costs
what the host takes to build and launch them, not what the memory traffic needs. The compiled
step (`TextDecoder.step_static`) takes the whole preallocated cache and the offset as an array, so
its shapes do not change from token to token: it is traced when the batch's row count or dtypes
change (a new window batch, rows dropped from the batch) and replayed for every other token.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import mlx.core as mx

from ..models.whisper import CrossKV, KVCache, TextDecoder

__all__ = ["compiled_step", "decoder_step"]

StepFn = Callable[..., tuple[mx.array, list[tuple[mx.array, mx.array]]]]


def compiled_step(decoder: TextDecoder) -> StepFn:
    """`decoder.step_static` compiled, built once per decoder and kept on it. The weights are
    captured as constants of the trace (they never change after loading); the closure holds
    the decoder weakly so the decoder and its compiled step are freed together."""
    fn = getattr(decoder, "_compiled_step", None)
    if fn is None:
        ref = weakref.ref(decoder)

        def step(*args: object) -> tuple[mx.array, list[tuple[mx.array, mx.array]]]:
            owner = ref()
            assert owner is not None  # called through `owner`, so it is alive
            return owner.step_static(*args)  # type: ignore[arg-type]

        fn = mx.compile(step)
        decoder._compiled_step = fn  # a plain attribute: nn.Module keeps only arrays as params
    return fn


def decoder_step(
    decoder: TextDecoder,
    token: mx.array,
    offset: int,
    pad: mx.array,
    cache: list[KVCache],
    cross_kv: CrossKV,
) -> mx.array:
    """Compiled step for `token` (B,) at cache slot `offset`: float32 logits (B, n_vocab). The
    caches' keys/values are replaced by the step's outputs, so `KVCache.take` sees them."""
    for c in cache:
        c.reserve(c.max_len)  # the trace's shapes: every slot
    kv = [(c.keys, c.values) for c in cache]
    step = compiled_step(decoder)
    logits, new_kv = step(token[:, None], mx.array(offset, mx.int32), pad, kv, cross_kv)
    for c, (k, v) in zip(cache, new_kv, strict=True):
        c.keys, c.values = k, v
    return logits
