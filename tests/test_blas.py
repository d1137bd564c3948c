"""The OpenBLAS preload: MLX's Linux CPU backend must not run on the reference BLAS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlxwx import _blas

DEBIAN_OPENBLAS = Path(_blas.CANDIDATES[0])
needs_openblas = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not DEBIAN_OPENBLAS.exists(),
    reason="Linux with Debian's libopenblas0-pthread only",
)


@needs_openblas
def test_import_mlxwx_loads_openblas():
    assert _blas.status == str(DEBIAN_OPENBLAS)


def gflops(code_before: str) -> float:
    script = (
        code_before
        + """
import time
import mlx.core as mx
a = mx.random.normal((512, 512)); mx.eval(a)
t = time.perf_counter()
for _ in range(10):
    mx.eval(a @ a)
print(2 * 512**3 * 10 / (time.perf_counter() - t) / 1e9)
"""
    )
    env = {"MLXWX_BLAS": "", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


@needs_openblas
def test_preload_makes_matmul_fast():
    # The reference BLAS does ~2.5-6 GFLOP/s here, OpenBLAS ~100+: a 5x margin is unambiguous.
    assert gflops("import mlxwx\n") > 5 * gflops("")


def test_late_import_is_reported(monkeypatch):
    monkeypatch.setattr(_blas, "status", _blas.status)
    monkeypatch.setitem(sys.modules, "mlx.core", sys.modules.get("mlx.core", object()))
    monkeypatch.setenv("MLXWX_BLAS", "")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert _blas.preload().startswith("too late")
