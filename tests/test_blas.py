"""The BLAS preload: MLX's Linux CPU backend must not run on the reference BLAS."""

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


MKL = _blas.mkl_library()  # the `cpu` extra installs it on x86-64 Linux
# What `import mlxwx` loads here: MKL on Intel CPUs where installed, else Debian's OpenBLAS
EXPECTED = Path(MKL) if MKL and _blas.cpu_vendor() == "GenuineIntel" else DEBIAN_OPENBLAS


@needs_openblas
def test_import_mlxwx_loads_mkl_on_intel_where_installed_else_openblas():
    assert _blas.status == str(EXPECTED)


def test_mkl_comes_first_on_intel_and_last_elsewhere(monkeypatch):
    monkeypatch.setattr(_blas, "mkl_library", lambda: "/x/libmkl_rt.so.2")
    assert _blas.candidates("GenuineIntel") == ("/x/libmkl_rt.so.2", *_blas.CANDIDATES)
    assert _blas.candidates("AuthenticAMD") == (*_blas.CANDIDATES, "/x/libmkl_rt.so.2")
    assert _blas.candidates("") == (*_blas.CANDIDATES, "/x/libmkl_rt.so.2")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /proc/cpuinfo")
def test_cpu_vendor_reads_proc_cpuinfo():
    vendor = _blas.cpu_vendor()
    if Path("/proc/cpuinfo").read_text().count("vendor_id"):
        assert vendor and vendor in Path("/proc/cpuinfo").read_text()


def sgemm_library(code_before: str, blas: str = "") -> str:
    """The library that MLX's `cblas_sgemm` calls bind to in a fresh process running
    `code_before` and then a matmul, as the dynamic linker reports it (LD_DEBUG=bindings):
    evidence of which BLAS runs, with no timing."""
    script = code_before + "\nimport mlx.core as mx\na = mx.ones((64, 64))\nmx.eval(a @ a)\n"
    env = {"MLXWX_BLAS": blas, "PATH": "/usr/bin:/bin", "LD_DEBUG": "bindings"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    for line in out.stderr.splitlines():
        if "libmlx" in line and "`cblas_sgemm'" in line:
            return line.split(" to ", 1)[1].split(" [", 1)[0]
    raise AssertionError(f"no cblas_sgemm binding of libmlx reported:\n{out.stderr[-2000:]}")


@needs_openblas
def test_preload_makes_mlx_call_the_fast_blas():
    assert Path(sgemm_library("import mlxwx")).resolve() == EXPECTED.resolve()
    assert Path(sgemm_library("")).resolve() != EXPECTED.resolve()  # the bundled one
    # MLXWX_BLAS picks the library
    openblas = sgemm_library("import mlxwx", blas=str(DEBIAN_OPENBLAS))
    assert Path(openblas).resolve() == DEBIAN_OPENBLAS.resolve()


@pytest.mark.skipif(MKL is None, reason="the mkl wheel is not installed")
def test_mkl_is_found_in_its_wheel_and_takes_a_thread_count():
    assert MKL is not None
    assert Path(MKL).name.startswith("libmkl_rt.so") and Path(MKL).is_file()
    if _blas.status == MKL:
        before = _blas.set_threads(1)
        assert before is not None and before >= 1
        assert _blas.set_threads(before) == 1


def test_late_import_is_reported(monkeypatch):
    monkeypatch.setattr(_blas, "status", _blas.status)
    monkeypatch.setitem(sys.modules, "mlx.core", sys.modules.get("mlx.core", object()))
    monkeypatch.setenv("MLXWX_BLAS", "")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert _blas.preload().startswith("too late")
