"""mlxwx.ops: the CPU attention and GELU against float64 maths and against MLX's own ops."""

from __future__ import annotations

import math

import mlxwx  # noqa: F401  (OpenBLAS before mlx.core)

# isort: split
import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from mlxwx import ops


@pytest.fixture(autouse=True)
def _restore_default():
    yield
    ops.set_fast_cpu_math(None)


def reference_attention(q, k, v, scale, mask=None) -> np.ndarray:
    """float64 softmax attention; mask additive (float) or boolean (True = attend)."""
    q, k, v = (np.array(x, np.float64) for x in (q, k, v))
    s = q @ np.swapaxes(k, -1, -2) * scale
    if mask is not None:
        m = np.array(mask)
        s = np.where(m, s, -np.inf) if m.dtype == bool else s + m
    e = np.exp(s - s.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) @ v


def test_exp_shifted_matches_exp_over_the_softmax_range():
    s = mx.array(np.concatenate([-np.geomspace(1e-6, 200, 20000), [0.0, -np.inf]]), mx.float32)
    got = np.array(ops.exp_shifted(s, mx.array(0.0)), np.float64)
    want = np.exp(np.array(s, np.float64))
    assert np.abs(got - want).max() < 4e-6
    assert 0 <= got[-1] < 1e-30  # a masked score weighs nothing beside the row maximum (1)


@pytest.mark.parametrize(
    ("batch", "heads", "tq", "tk"),
    [(2, 4, 300, 300), (3, 2, 1, 700), (5, 8, 4, 61)],
    ids=["encoder-blocks", "decode-step", "prompt"],
)
def test_cpu_attention_matches_float64(batch, heads, tq, tk):
    ops.set_fast_cpu_math(True)
    rng = np.random.default_rng(batch)
    q, k, v = (
        mx.array(rng.normal(size=(batch, heads, t, 16)) * 2, mx.float32) for t in (tq, tk, tk)
    )
    got = np.array(ops.attention(q, k, v, 0.25))
    assert np.abs(got - reference_attention(q, k, v, 0.25)).max() < 2e-5


def test_cpu_attention_blocks_agree_with_one_block(monkeypatch):
    """Splitting the scores into many blocks (batch rows, query chunks) changes nothing but
    rounding (BLAS may pick other kernels for other shapes: bit-equal on one CPU, not another)."""
    ops.set_fast_cpu_math(True)
    rng = np.random.default_rng(0)
    q, k, v = (mx.array(rng.normal(size=(3, 2, 50, 8)), mx.float32) for _ in range(3))
    whole = np.array(ops.attention(q, k, v, 0.3))
    monkeypatch.setattr(ops, "SCORE_BLOCK", 2 * 50 * 7)  # 7 query rows a block: 8 chunks a row
    np.testing.assert_allclose(np.array(ops.attention(q, k, v, 0.3)), whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_cpu_attention_masks(kind):
    """Causal masks with left padding, as decoding builds them, boolean or additive."""
    ops.set_fast_cpu_math(True)
    rng = np.random.default_rng(1)
    q, k, v = (mx.array(rng.normal(size=(2, 3, 6, 8)), mx.float32) for _ in range(3))
    pad = np.array([0, 2])
    keys, queries = np.arange(6)[None, :], np.arange(6)[:, None]
    allowed = ((keys <= queries)[None] & (keys[None] >= pad[:, None, None])) | (keys == queries)[
        None
    ]
    mask = allowed[:, None] if kind == "bool" else np.where(allowed, 0.0, -np.inf)[:, None]
    got = np.array(ops.attention(q, k, v, 0.35, mx.array(mask)))
    assert np.abs(got - reference_attention(q, k, v, 0.35, mask)).max() < 2e-5


def test_cpu_attention_keeps_the_dtype():
    ops.set_fast_cpu_math(True)
    q = mx.ones((1, 2, 3, 4), mx.float16)
    assert ops.attention(q, q, q, 0.5).dtype == mx.float16


def test_gelu_matches_erf_gelu():
    ops.set_fast_cpu_math(True)
    x = np.linspace(-12, 12, 200001)
    want = 0.5 * x * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x]))
    got = np.array(ops.gelu(mx.array(x, mx.float32)), np.float64)
    mine = np.abs(got - want).max()
    mlx_own = np.abs(np.array(nn.gelu(mx.array(x, mx.float32)), np.float64) - want).max()
    assert mine < 2e-6, (mine, mlx_own)
    assert ops.gelu(mx.ones((3,), mx.float16)).dtype == mx.float16


def test_switched_off_uses_mlx_ops():
    ops.set_fast_cpu_math(False)
    rng = np.random.default_rng(2)
    q, k, v = (mx.array(rng.normal(size=(1, 2, 5, 8)), mx.float32) for _ in range(3))
    want = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.4)
    assert np.array_equal(np.array(ops.attention(q, k, v, 0.4)), np.array(want))
    x = mx.array(rng.normal(size=(100,)), mx.float32)
    assert np.array_equal(np.array(ops.gelu(x)), np.array(nn.gelu(x)))


def test_logsumexp_matches_float64_with_suppressed_entries():
    ops.set_fast_cpu_math(True)
    x = np.random.default_rng(3).normal(size=(4, 51865)) * 6
    x[:, ::3] = -np.inf  # suppressed tokens
    got = np.array(ops.logsumexp(mx.array(x, mx.float32), axis=-1), np.float64)
    m = x.max(-1)
    want = m + np.log(np.exp(x - m[:, None]).sum(-1))
    # 2.7e-5 measured: the many terms 20-30 below the maximum carry exp's larger relative error
    assert np.abs(got - want).max() < 1e-4


def test_no_compiler_means_mlx_ops_and_one_warning(monkeypatch, caplog):
    """Without g++, MLX's compile leaves every operation its own pass: mlxwx keeps MLX's ops
    and says once how to get the fast ones."""
    monkeypatch.setattr(ops.platform, "system", lambda: "Linux")
    monkeypatch.setattr(ops.shutil, "which", lambda name: None)
    ops._platform_supports.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="mlxwx.ops"):
            assert not ops.fast_cpu_math() and not ops.fast_cpu_math()
        assert [r.message.count("install g++") for r in caplog.records] == [1]
    finally:
        ops._platform_supports.cache_clear()


@pytest.mark.parametrize("cols", [51865, 51864, 51866, 300])
def test_top_k_columns_are_the_k_largest(cols):
    """Whisper's vocabularies (a block width divides 51865 and 51864, not 51866: its last
    columns are candidates as they are) and a row too short for blocks; distinct columns even
    where a row has fewer finite entries than k."""
    rng = np.random.default_rng(cols)
    x = rng.normal(size=(6, cols)).astype(np.float32)
    x[1, : cols - 2] = -np.inf  # 2 finite entries, both at the very end
    x[2, :-1] = -np.inf
    x[3, -5:] += 10.0  # the largest in the columns that fill no block
    got = np.array(ops.top_k_columns(mx.array(x), 10))
    for row, cols_got in zip(x, got, strict=True):
        assert len(set(cols_got.tolist())) == 10 and cols_got.max() < cols
        assert np.sort(row[cols_got]).tolist() == np.sort(row)[-10:].tolist()


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("masked", [None, "bool", "additive"])
def test_packed_keys_attend_as_their_unpacked_values(bits, masked):
    """Keys and values packed in 8 or 4 bits (`ops.pack`) give the attention of the values they
    stand for (`mx.dequantize`), and 8 bits stay close to the float keys."""
    r = mx.random.key(3)
    q, k, v = (mx.random.normal(s, key=mx.random.split(r, 3)[i]) for i, s in
               enumerate([(2, 3, 5, 64), (2, 3, 150, 64), (2, 3, 150, 64)]))  # fmt: skip
    mask = None
    if masked:
        allow = mx.random.uniform(shape=(2, 1, 5, 150), key=r) > 0.3
        mask = allow if masked == "bool" else mx.where(allow, 0.0, -1e9)
    pk, pv = ops.pack(k, bits, keys=True), ops.pack(v, bits)
    assert ops.leading(pk) == (2, 3, 150) == ops.leading(pv) and pk.data.dtype == mx.uint32
    dk, dv = ops.unpack(pk), ops.unpack(pv)
    assert dk.shape == k.shape and dv.shape == v.shape
    got = np.array(ops.attention(q, pk, pv, 0.125, mask))
    np.testing.assert_allclose(got, reference_attention(q, dk, dv, 0.125, mask), atol=2e-5)
    assert ops.scores(q, pk).shape == (2, 3, 5, 150)
    if bits == 8:
        plain = reference_attention(q, k, v, 0.125, mask)
        assert np.abs(got - plain).max() < 0.02
    half = ops.rows_of(pk, slice(1, 2))
    assert ops.leading(half) == (1, 3, 150)
    np.testing.assert_array_equal(
        np.array(ops.scores(q[1:2], half)), np.array(ops.scores(q, pk))[1:2]
    )


def test_pack_needs_whole_groups():
    with pytest.raises(ValueError, match="multiple of 64"):
        ops.pack(mx.zeros((2, 48)), 8)
