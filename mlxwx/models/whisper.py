"""Whisper encoder-decoder in MLX: architecture only.

Parameter names follow mlx-whisper (and so the mlx-community repos), so checkpoints move both ways.
Decoding state lives outside the modules: cross-attention keys/values are computed once per window
in the head-split layout (`TextDecoder.cross_kv`), and the self-attention cache grows towards
the text context (448 tokens) in 64-position steps and is written by slice assignment (`KVCache`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from ..ops import Keys, attention, gelu, leading, pack

CrossKV = list[tuple[Keys, Keys]]  # per decoder layer, (windows, heads, frames, dim), maybe packed


@dataclass(frozen=True)
class ModelDimensions:
    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> ModelDimensions:
        """Build from a config dict, ignoring keys that are not dimensions (model_type, ...)."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - params.keys()
        if missing:
            raise ValueError(f"config is missing Whisper dimensions: {sorted(missing)}")
        return cls(**{k: int(v) for k, v in params.items() if k in names})

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @property
    def is_multilingual(self) -> bool:
        return self.n_vocab >= 51865


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> mx.array:
    """(length, channels) sinusoidal table used as the encoder's positional embedding."""
    half = channels // 2
    inv_timescales = mx.exp(-math.log(max_timescale) / (half - 1) * mx.arange(half))
    scaled = mx.arange(length)[:, None] * inv_timescales[None, :]
    return mx.concatenate([mx.sin(scaled), mx.cos(scaled)], axis=1)


def split_heads(x: mx.array, n_head: int) -> mx.array:
    """(B, T, D) -> (B, H, T, D/H)."""
    b, t, d = x.shape
    return x.reshape(b, t, n_head, d // n_head).transpose(0, 2, 1, 3)


def merge_heads(x: mx.array) -> mx.array:
    """(B, H, T, Dh) -> (B, T, H*Dh)."""
    b, h, t, dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, t, h * dh)


def group_rows(q: mx.array, groups: int) -> mx.array:
    """(W*G, H, T, Dh) -> (W, H, G*T, Dh): a window's G rows as one longer query."""
    r, h, t, dh = q.shape
    return (
        q.reshape(r // groups, groups, h, t, dh)
        .transpose(0, 2, 1, 3, 4)
        .reshape(-1, h, groups * t, dh)
    )


def ungroup_rows(o: mx.array, groups: int) -> mx.array:
    """Inverse of `group_rows`."""
    w, h, gt, dh = o.shape
    t = gt // groups
    return o.reshape(w, h, groups, t, dh).transpose(0, 2, 1, 3, 4).reshape(w * groups, h, t, dh)


class KVCache:
    """Self-attention keys/values of one decoder layer, (B, H, capacity, Dh), for up to `max_len`
    positions.

    The capacity grows in steps of `GROW` positions as tokens are written (`update`), so that
    reordering rows (`take`: beam search, dropping ended rows) moves whole contiguous rows of
    about the filled size. On MLX's CPU backend a gather of whole rows is a memory copy, while a
    gather of a strided slice of a larger buffer runs element by element (20x slower).
    """

    GROW = 64

    def __init__(self, batch: int, n_head: int, max_len: int, head_dim: int, dtype: mx.Dtype):
        self.max_len = max_len
        self.keys = mx.zeros((batch, n_head, 0, head_dim), dtype=dtype)
        self.values = mx.zeros((batch, n_head, 0, head_dim), dtype=dtype)

    def reserve(self, end: int) -> None:
        """Make room for positions [0, end): the capacity grows to a multiple of GROW."""
        capacity = self.keys.shape[2]
        if end <= capacity:
            return
        if end > self.max_len:
            raise ValueError(f"the text context holds {self.max_len} positions, not {end}")
        grow = min(self.max_len, -(-end // self.GROW) * self.GROW) - capacity
        b, h, _, d = self.keys.shape
        tail = mx.zeros((b, h, grow, d), dtype=self.keys.dtype)
        self.keys = mx.concatenate([self.keys, tail], axis=2)
        self.values = mx.concatenate([self.values, tail], axis=2)

    def update(self, k: mx.array, v: mx.array, offset: int) -> tuple[mx.array, mx.array]:
        """Write T new positions (B, H, T, Dh) at `offset`; the views of positions [0, offset+T)."""
        end = offset + k.shape[2]
        self.reserve(end)
        self.keys[:, :, offset:end] = k
        self.values[:, :, offset:end] = v
        return self.keys[:, :, :end], self.values[:, :, :end]

    def take(self, rows: mx.array) -> None:
        """Keep batch rows `rows` in that order: row i becomes old row rows[i] (beam search
        reorders; ended rows are dropped)."""
        self.keys, self.values = self.keys[rows], self.values[rows]


class MultiHeadAttention(nn.Module):
    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def fuse(self, layout: Callable[[mx.array], mx.array] | None = None) -> None:
        """Lay the query, key and value weights out as one (3D, D) matrix, of which the three
        layers' weights become views (no more memory), so that `project` runs one matmul
        instead of three; `layout` may store that matrix otherwise (same shape and values).
        Quantized layers are left as they are; weights replaced later (`update`, `set_dtype`)
        are seen, and projected apart again."""
        layers = (self.query, self.key, self.value)
        if not all(type(m) is nn.Linear for m in layers):
            return
        d = self.query.weight.shape[0]
        w = mx.concatenate([m.weight for m in layers])
        if layout is not None:
            w = layout(w)
        b = mx.concatenate([self.query.bias, mx.zeros_like(self.value.bias), self.value.bias])
        self.query.weight, self.key.weight, self.value.weight = w[:d], w[d : 2 * d], w[2 * d :]
        mx.eval(w, b, self.query.weight, self.key.weight, self.value.weight)
        self._qkv = (w, b, self._sources())

    def _sources(self) -> tuple[mx.array, ...]:
        """The arrays the fused matrix was made of, read as dict entries (modules are dicts):
        `project` checks them on every call, where attribute access costs 5x more."""
        q, k, v = self["query"], self["key"], self["value"]
        return q["weight"], k["weight"], v["weight"], q["bias"], v["bias"]

    def project(self, x: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        """Head-split queries, keys and values (B, H, T, Dh) of `x` (B, T, D)."""
        fused = self.get("_qkv")
        sources = self._sources()
        if fused is None or any(a is not b for a, b in zip(fused[2], sources, strict=True)):
            q, k, v = self.query(x), self.key(x), self.value(x)
            return tuple(split_heads(a, self.n_head) for a in (q, k, v))  # type: ignore[return-value]
        b, t, _ = x.shape  # (B, T, 3, H, Dh): each of q, k, v a view, no copy
        y = mx.addmm(fused[1], x, fused[0].T).reshape(b, t, 3, self.n_head, -1)
        return tuple(y[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # type: ignore[return-value]

    def kv(self, x: mx.array) -> tuple[mx.array, mx.array]:
        """Head-split keys and values (B, H, T, Dh) of `x` (B, T, D)."""
        return split_heads(self.key(x), self.n_head), split_heads(self.value(x), self.n_head)

    def attend(self, x: mx.array, k: Keys, v: Keys, mask: mx.array | None) -> mx.array:
        """Attention of `x` (R, T, D) over head-split k, v (W, H, S, Dh), plain or packed
        (`mlxwx.ops.pack`). W may divide R: rows are then window-major groups of R/W (beams,
        samples) sharing one window's keys."""
        return self.attend_heads(split_heads(self.query(x), self.n_head), k, v, mask)

    def attend_heads(self, q: mx.array, k: Keys, v: Keys, mask: mx.array | None) -> mx.array:
        """`attend` given the head-split queries (R, H, T, Dh) (`project`'s)."""
        scale = q.shape[-1] ** -0.5
        groups = q.shape[0] // leading(k)[0]
        if groups > 1:
            o = ungroup_rows(attention(group_rows(q, groups), k, v, scale, mask), groups)
        else:
            o = attention(q, k, v, scale, mask)
        return self.out(merge_heads(o))

    def __call__(self, x: mx.array, mask: mx.array | None = None) -> mx.array:
        q, k, v = self.project(x)
        return self.attend_heads(q, k, v, mask)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int, cross_attention: bool = False):
        super().__init__()
        self.attn = MultiHeadAttention(n_state, n_head)
        self.attn_ln = nn.LayerNorm(n_state)
        if cross_attention:
            self.cross_attn = MultiHeadAttention(n_state, n_head)
            self.cross_attn_ln = nn.LayerNorm(n_state)
        self.mlp1 = nn.Linear(n_state, 4 * n_state)
        self.mlp2 = nn.Linear(4 * n_state, n_state)
        self.mlp_ln = nn.LayerNorm(n_state)

    def mlp(self, x: mx.array) -> mx.array:
        return x + self.mlp2(gelu(self.mlp1(self.mlp_ln(x))))

    def __call__(self, x: mx.array) -> mx.array:
        """Encoder block: full self-attention, no cache."""
        x = x + self.attn(self.attn_ln(x))
        return self.mlp(x)

    def decode(
        self,
        x: mx.array,
        cross_kv: tuple[Keys, Keys],
        cache: KVCache,
        offset: int,
        mask: mx.array | None,
    ) -> mx.array:
        h = self.attn_ln(x)
        q, k, v = self.attn.project(h)
        return self._attend(x, q, cache.update(k, v, offset), cross_kv, mask)

    def decode_static(
        self,
        x: mx.array,
        cross_kv: tuple[Keys, Keys],
        kv: tuple[mx.array, mx.array],
        offset: mx.array,
        mask: mx.array,
    ) -> tuple[mx.array, tuple[mx.array, mx.array]]:
        """One token (B, 1, D) with its K/V written into the full cache `kv` (B, H, n_ctx, Dh) at
        slot `offset` (a scalar array, so one compiled trace serves every offset);
        attention runs over every slot under `mask`. Returns x and the updated cache."""
        q, k_new, v_new = self.attn.project(self.attn_ln(x))
        k = mx.slice_update(kv[0], k_new, offset, axes=(2,))
        v = mx.slice_update(kv[1], v_new, offset, axes=(2,))
        return self._attend(x, q, (k, v), cross_kv, mask), (k, v)

    def _attend(
        self,
        x: mx.array,
        q: mx.array,
        kv: tuple[mx.array, mx.array],
        cross_kv: tuple[Keys, Keys],
        mask: mx.array | None,
    ) -> mx.array:
        x = x + self.attn.attend_heads(q, *kv, mask)
        x = x + self.cross_attn.attend(self.cross_attn_ln(x), *cross_kv, None)
        return self.mlp(x)


class AudioEncoder(nn.Module):
    def __init__(self, n_mels: int, n_ctx: int, n_state: int, n_head: int, n_layer: int):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, n_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(n_state, n_state, kernel_size=3, stride=2, padding=1)
        self._positional_embedding = sinusoids(n_ctx, n_state)
        self.blocks = [ResidualAttentionBlock(n_state, n_head) for _ in range(n_layer)]
        self.ln_post = nn.LayerNorm(n_state)

    def __call__(self, mel: mx.array) -> mx.array:
        """mel: (B, 2*n_audio_ctx, n_mels) log-mel -> (B, n_audio_ctx, n_audio_state)."""
        x = gelu(self.conv1(mel))
        x = gelu(self.conv2(x))
        pos = self._positional_embedding
        if x.shape[1] != pos.shape[0]:
            raise ValueError(f"encoder expects {2 * pos.shape[0]} mel frames, got {mel.shape[1]}")
        x = x + pos.astype(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


class TextDecoder(nn.Module):
    def __init__(self, n_vocab: int, n_ctx: int, n_state: int, n_head: int, n_layer: int):
        super().__init__()
        self.n_head = n_head
        self.token_embedding = nn.Embedding(n_vocab, n_state)
        self.positional_embedding = mx.zeros((n_ctx, n_state))
        self.blocks = [ResidualAttentionBlock(n_state, n_head, True) for _ in range(n_layer)]
        self.ln = nn.LayerNorm(n_state)

    def cross_kv(self, audio: mx.array, bits: int | None = None) -> CrossKV:
        """Per-layer cross-attention keys/values (B, H, n_audio_ctx, Dh), computed once a window
        and stored head-split (contiguous), so decode steps read them without a copy; with
        `bits`, packed in that many bits (`mlxwx.ops.pack`), which the steps read instead."""
        out: CrossKV = []
        for block in self.blocks:
            k, v = block.cross_attn.kv(audio)
            if bits:
                out.append((pack(k, bits, keys=True), pack(v, bits)))
            else:
                out.append((mx.contiguous(k), mx.contiguous(v)))
        return out

    def new_cache(self, batch: int, dtype: mx.Dtype) -> list[KVCache]:
        n_ctx, n_state = self.positional_embedding.shape
        head_dim = n_state // self.n_head
        return [KVCache(batch, self.n_head, n_ctx, head_dim, dtype) for _ in self.blocks]

    def __call__(
        self,
        tokens: mx.array,
        cross_kv: CrossKV,
        cache: list[KVCache],
        offset: int,
        positions: mx.array | None = None,
        mask: mx.array | None = None,
    ) -> mx.array:
        """Logits (B, T, n_vocab) for `tokens` (B, T) written at cache slots [offset, offset+T).

        positions: (B, T) indices into the learned positional table (default offset + arange(T));
        mask: additive attention mask broadcastable to (B, H, T, offset+T); default causal.
        """
        t = tokens.shape[1]
        if positions is None:
            positions = mx.arange(offset, offset + t)[None]
        if mask is None and t > 1:
            q = mx.arange(offset, offset + t)[:, None]
            k = mx.arange(offset + t)[None, :]
            mask = mx.where(k <= q, 0.0, -mx.inf)
        x = self.token_embedding(tokens) + self.positional_embedding[positions]
        if mask is not None and mask.dtype != mx.bool_:
            mask = mask.astype(x.dtype)
        for block, kv, c in zip(self.blocks, cross_kv, cache, strict=True):
            x = block.decode(x, kv, c, offset, mask)
        return self.token_embedding.as_linear(self.ln(x))

    def step_static(
        self,
        token: mx.array,
        offset: mx.array,
        pad: mx.array,
        cache_kv: list[tuple[mx.array, mx.array]],
        cross_kv: CrossKV,
    ) -> tuple[mx.array, list[tuple[mx.array, mx.array]]]:
        """One decode step with shapes that do not change from step to step (for `mx.compile`).

        token: (B, 1) written at cache slot `offset` (int scalar array); pad: (B,) left-padding
        of each row's prompt (its slots are hidden; positions count from it); cache_kv: per layer
        (keys, values) (B, H, n_ctx, Dh). Returns float32 logits (B, n_vocab) and the new caches.
        """
        slots = mx.arange(self.positional_embedding.shape[0])
        mask = ((slots <= offset) & (slots >= pad[:, None]))[:, None, None]
        x = self.token_embedding(token) + self.positional_embedding[(offset - pad)[:, None]]
        new_kv = []
        for block, kv, cross in zip(self.blocks, cache_kv, cross_kv, strict=True):
            x, kv = block.decode_static(x, cross, kv, offset, mask)
            new_kv.append(kv)
        return self.token_embedding.as_linear(self.ln(x))[:, 0].astype(mx.float32), new_kv


class Whisper(nn.Module):
    def __init__(self, dims: ModelDimensions):
        super().__init__()
        self.dims = dims
        self.encoder = AudioEncoder(
            dims.n_mels, dims.n_audio_ctx, dims.n_audio_state, dims.n_audio_head, dims.n_audio_layer
        )
        self.decoder = TextDecoder(
            dims.n_vocab, dims.n_text_ctx, dims.n_text_state, dims.n_text_head, dims.n_text_layer
        )
        # (N, 2) [layer, head] pairs whose cross-attention tracks time; stored in the weights file
        # as mlx-whisper does. Default: every head of the last half of the layers (openai-whisper).
        layers, heads = dims.n_text_layer, dims.n_text_head
        pairs = [(i, h) for i in range(layers // 2, layers) for h in range(heads)]
        self.alignment_heads = mx.array(pairs, dtype=mx.int32)

    @property
    def dtype(self) -> mx.Dtype:
        return self.decoder.ln.weight.dtype

    def fuse(self, decoder_layout: Callable[[mx.array], mx.array] | None = None) -> None:
        """Every self-attention's query, key and value as one matrix (`MultiHeadAttention.fuse`),
        the decoder's in `decoder_layout`: call once the weights are loaded in their final
        dtype."""
        for block in self.encoder.blocks:
            block.attn.fuse()
        for block in self.decoder.blocks:
            block.attn.fuse(decoder_layout)
