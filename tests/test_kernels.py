"""The LSTM recurrence kernel (kernels/lstm_scan.body) against the pure-MLX reference.

On a GPU (Metal or CUDA) the kernel itself runs. Everywhere, the shared body also runs as plain
C++ (kernels/prelude_cpu.h, one thread per threadgroup, built with g++), which checks its
indexing and arithmetic on this CPU-only machine, and dispatch must pick the reference on CPU.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlxwx import kernels
from mlxwx.kernels import kernel_backend, kernel_source, lstm_scan, lstm_scan_reference


def inputs(b: int, t: int, h: int, seed: int = 0) -> tuple[mx.array, ...]:
    rng = np.random.default_rng(seed)
    xw = rng.standard_normal((b, t, 4 * h)).astype(np.float32)
    w_hh = (rng.standard_normal((4 * h, h)) / np.sqrt(h)).astype(np.float32)
    h0 = (0.5 * rng.standard_normal((b, h))).astype(np.float32)
    c0 = (0.5 * rng.standard_normal((b, h))).astype(np.float32)
    return tuple(mx.array(a) for a in (xw, w_hh, h0, c0))


SHAPES = [(1, 1, 16), (3, 7, 16), (5, 50, 128), (33, 9, 64)]


def test_sources_carry_each_backends_spelling() -> None:
    metal, cuda = kernel_source("lstm_scan", "metal"), kernel_source("lstm_scan", "cuda")
    body = (kernels.KERNEL_DIR / "lstm_scan.body").read_text()
    assert metal.endswith(body) and cuda.endswith(body)
    assert "threadgroup_barrier" in metal and "__syncthreads" not in metal
    assert "__syncthreads" in cuda and "threadgroup_barrier" not in cuda
    # Metal declares thread attributes only when their names appear in the source.
    assert "thread_position_in_threadgroup" in metal and "threadgroup_position_in_grid" in metal
    assert callable(kernels._lstm_kernel("metal"))  # builds on any platform, runs on a Mac


def test_sources_ship_with_the_package() -> None:
    assert (Path(kernels.__file__).parent / "kernel_sources" / "lstm_scan.body").is_file()
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"kernel_sources/*"' in pyproject


def test_launch_shape() -> None:
    assert kernels.lstm_launch(32, 128) == (1, 512)  # one row per group while groups are few
    assert kernels.lstm_launch(256, 128) == (2, 512)
    assert kernels.lstm_launch(4096, 128) == (8, 512)  # capped by shared memory (8 x 3 KB)
    assert kernels.lstm_launch(1, 2048) is None  # one row's state exceeds shared memory
    assert kernels.lstm_launch(32, 128, "metal") == (1, 256)  # the body loops over gates


@pytest.mark.parametrize(("b", "t", "h"), SHAPES)
def test_kernel_or_dispatch_matches_reference(b: int, t: int, h: int) -> None:
    xw, w_hh, h0, c0 = inputs(b, t, h)
    expected = lstm_scan_reference(xw, w_hh, h0, c0)
    backend = kernel_backend(mx.Device(mx.gpu))
    if backend is None:  # CPU-only: dispatch must run the reference itself
        assert kernel_backend() is None
        got = lstm_scan(xw, w_hh, h0, c0)
        for g, e in zip(got, expected, strict=True):
            assert mx.array_equal(g, e)
        return
    with mx.stream(mx.gpu):
        got = kernels.lstm_scan_kernel(xw, w_hh, h0, c0, backend=backend)
        expected = lstm_scan_reference(xw, w_hh, h0, c0)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(np.array(g), np.array(e), atol=2e-3)  # TF32 on CUDA


CPU_WRAPPER = """
#include <cmath>
#include <cstddef>
extern "C" void lstm_scan(const float* xw, const float* w_t, const float* h0, const float* c0,
                          float* hs, float* h_out, float* c_out, int batch_, int steps_) {
  using T = float;
  constexpr int H = %(H)d;
  constexpr int R = %(R)d;
  constexpr int NT = 1;
  const int xw_shape[2] = {batch_, steps_};
  for (int group = 0; group < (batch_ + R - 1) / R; ++group) {
%(SOURCE)s
  }
}
"""


def build_body_on_cpu(tmp: Path, hidden: int, rows: int) -> ctypes.CDLL:
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ missing: apt-get install g++")
    src = tmp / f"lstm_{hidden}_{rows}.cpp"
    src.write_text(
        CPU_WRAPPER % {"H": hidden, "R": rows, "SOURCE": kernel_source("lstm_scan", "cpu")}
    )
    lib = tmp / f"lstm_{hidden}_{rows}.so"
    subprocess.run([cxx, "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return ctypes.CDLL(str(lib))


@pytest.mark.parametrize(("b", "t", "h", "rows"), [(3, 7, 16, 2), (5, 50, 128, 4), (1, 1, 16, 1)])
def test_body_as_cpp_matches_reference(b: int, t: int, h: int, rows: int, tmp_path: Path) -> None:
    lib = build_body_on_cpu(tmp_path, h, rows)
    xw, w_hh, h0, c0 = inputs(b, t, h, seed=1)
    arrays = [np.ascontiguousarray(np.array(a)) for a in (xw, w_hh.T, h0, c0)]
    outs = [
        np.zeros((b, t, h), np.float32),
        np.zeros((b, h), np.float32),
        np.zeros((b, h), np.float32),
    ]
    ptr = ctypes.POINTER(ctypes.c_float)
    lib.lstm_scan(*[a.ctypes.data_as(ptr) for a in arrays + outs], ctypes.c_int(b), ctypes.c_int(t))
    expected = lstm_scan_reference(xw, w_hh, h0, c0)
    for got, e in zip(outs, expected, strict=True):
        np.testing.assert_allclose(got, np.array(e), atol=1e-5)


# What mx.fast.{cuda,metal}_kernel wrap around `source` (mlx/backend/*/custom_kernel.cpp), with
# just enough stand-ins for g++ to check the syntax and types of each backend's flavour.
CUDA_STUBS = """
#include <array>
#include <cmath>
#include <cstddef>
#define __global__
#define __shared__ static
#define __grid_constant__
#define __syncthreads() ((void)0)
struct Dim3 { unsigned x, y, z; };
static Dim3 threadIdx, blockIdx;
using Shape = std::array<int, 8>;
__global__ void custom_kernel_mlxwx_lstm_scan(
    const float* xw, const __grid_constant__ Shape xw_shape, const float* w_t,
    const float* h0, const float* c0, float* hs, float* h_out, float* c_out) {
  using T = float;
  constexpr int H = 128;
  constexpr int R = 2;
  constexpr int NT = 512;
%s
}
"""
METAL_STUBS = """
#include <cmath>
#include <cstddef>
#define device
#define constant
#define threadgroup static
namespace metal::precise {
inline float exp(float x) { return std::exp(x); }
inline float tanh(float x) { return std::tanh(x); }
}
enum class mem_flags { mem_threadgroup };
inline void threadgroup_barrier(mem_flags) {}
struct uint3 { unsigned x, y, z; };
template <typename T, int H, int R, int NT>
void custom_kernel_mlxwx_lstm_scan(
    const device float* xw, const constant int* xw_shape, const device float* w_t,
    const device float* h0, const device float* c0, device T* hs, device T* h_out,
    device T* c_out, uint3 thread_position_in_threadgroup, uint3 threadgroup_position_in_grid) {
%s
}
template void custom_kernel_mlxwx_lstm_scan<float, 128, 2, 512>(
    const float*, const int*, const float*, const float*, const float*, float*, float*, float*,
    uint3, uint3);
"""


@pytest.mark.parametrize(
    ("backend", "stubs"), [("cuda", CUDA_STUBS), ("metal", METAL_STUBS)], ids=["cuda", "metal"]
)
def test_backend_flavours_compile_against_stubs(backend: str, stubs: str, tmp_path: Path) -> None:
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ missing: apt-get install g++")
    src = tmp_path / f"{backend}.cpp"
    src.write_text(stubs % kernel_source("lstm_scan", backend))
    run = subprocess.run(
        [cxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Werror", str(src)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
