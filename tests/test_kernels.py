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
from mlxwx.align import ctc
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
    with mx.stream(mx.cpu):  # float32 matmuls (a GPU host's default device would use TF32)
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


# The end of Whisper's token timing (kernels/dtw_starts.body) against its numpy reference.
DTW_WRAPPER = """
#include <cmath>
#include <cstddef>
extern "C" void dtw_starts(const float* z, const int* dims, int* starts, float* cost, float* acc,
                           unsigned char* move, int batch, int heads, int rows, int frames) {
  constexpr int NT = 1;
  constexpr int W = %(W)d;
  const int z_shape[4] = {batch, heads, rows, frames};
  for (int group = 0; group < batch; ++group) {
%(SOURCE)s
  }
}
"""


def dtw_reference(z: np.ndarray, dims: np.ndarray) -> list[np.ndarray]:
    """Start frames per window: median filter, mean over heads and DTW in numpy (the CPU path
    of mlxwx.asr.timing)."""
    from mlxwx.asr.timing import MEDFILT_WIDTH
    from mlxwx.dtw import dtw_batch, median_filter

    costs = []
    for k, (begin, n, m) in enumerate(dims.tolist()):
        heads = np.stack([median_filter(h[begin : begin + n, :m], MEDFILT_WIDTH) for h in z[k]])
        costs.append(-heads.mean(axis=0))
    out = []
    for rows, frames in dtw_batch(costs):
        out.append(frames[np.diff(rows, prepend=-1).astype(bool)])
    return out


def dtw_inputs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores of 4 windows padded to 20 rows and 90 frames: different first rows, row counts
    and frame counts (one too short for the median filter)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((4, 3, 20, 90)).astype(np.float32)
    for r in range(8):  # a clear diagonal ridge in the second window
        z[1, :, 3 + r, 5 * r : 5 * r + 5] += 3.0
    dims = np.array([[2, 15, 90], [3, 9, 40], [0, 1, 3], [1, 12, 7]], np.int32)
    return z, dims


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dtw_body_as_cpp_matches_numpy(seed: int, tmp_path: Path) -> None:
    from mlxwx.asr.timing import MEDFILT_WIDTH

    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ missing: apt-get install g++")
    src, lib_path = tmp_path / "dtw.cpp", tmp_path / "dtw.so"
    src.write_text(DTW_WRAPPER % {"W": MEDFILT_WIDTH, "SOURCE": kernel_source("dtw_starts", "cpu")})
    subprocess.run([cxx, "-O1", "-shared", "-fPIC", "-o", str(lib_path), str(src)], check=True)
    lib = ctypes.CDLL(str(lib_path))
    z, dims = dtw_inputs(seed)
    b, h, rows, frames = z.shape
    starts = np.full((b, rows), -7, np.int32)
    scratch = [
        np.zeros((b, rows, frames), np.float32),
        np.zeros((b, rows + 1, frames + 1), np.float32),
        np.zeros((b, rows + 1, frames + 1), np.uint8),
    ]
    lib.dtw_starts(
        *[a.ctypes.data_as(ctypes.c_void_p) for a in (z, dims, starts, *scratch)],
        *[ctypes.c_int(v) for v in (b, h, rows, frames)],
    )
    for k, expected in enumerate(dtw_reference(z, dims)):
        n = dims[k, 1]
        np.testing.assert_array_equal(starts[k, :n], expected)
        assert (starts[k, n:] == 0).all()


@pytest.mark.gpu
def test_dtw_kernel_on_the_gpu_matches_numpy() -> None:
    from mlxwx.asr.timing import MEDFILT_WIDTH

    backend = kernel_backend(mx.Device(mx.gpu))
    assert backend is not None
    for seed in range(3):
        z, dims = dtw_inputs(seed)
        with mx.stream(mx.gpu):
            got = np.array(
                kernels.dtw_starts_kernel(
                    mx.array(z), mx.array(dims), MEDFILT_WIDTH, backend=backend
                )
            )
        for k, expected in enumerate(dtw_reference(z, dims)):
            np.testing.assert_array_equal(got[k, : dims[k, 1]], expected)


# What the DTW and CTC kernels' stubs share (the LSTM's above differ a little).
CUDA_STUBS_HEAD = """
#include <array>
#include <cstddef>
#define __global__
#define __shared__ static
#define __grid_constant__
#define __syncthreads() ((void)0)
struct Dim3 { unsigned x, y, z; };
static Dim3 threadIdx, blockIdx;
using Shape = std::array<int, 8>;
"""
DTW_CUDA_STUBS = (
    CUDA_STUBS_HEAD
    + """
__global__ void custom_kernel_mlxwx_dtw_starts(
    const float* z, const __grid_constant__ Shape z_shape, const int* dims, int* starts,
    float* cost, float* acc, unsigned char* move) {
  constexpr int NT = 256;
  constexpr int W = 7;
%s
}
"""
)
METAL_STUBS_HEAD = """
#include <cstddef>
#define device
#define constant
#define threadgroup static
enum class mem_flags { mem_threadgroup, mem_device };
inline void threadgroup_barrier(mem_flags) {}
struct uint3 { unsigned x, y, z; };
"""
DTW_METAL_STUBS = (
    METAL_STUBS_HEAD
    + """
template <int NT, int W>
void custom_kernel_mlxwx_dtw_starts(
    const device float* z, const constant int* z_shape, const device int* dims,
    device int* starts, device float* cost, device float* acc, device unsigned char* move,
    uint3 thread_position_in_threadgroup, uint3 threadgroup_position_in_grid) {
%s
}
template void custom_kernel_mlxwx_dtw_starts<256, 7>(
    const float*, const int*, const int*, int*, float*, float*, unsigned char*, uint3, uint3);
"""
)


def test_standardized_scores_give_the_numpy_window_matrix() -> None:
    """The device steps of the GPU path (softmax over a window's frames, standardised over its
    sequence's rows) followed by the kernel's median and mean give numpy's `window_matrix`."""
    from mlxwx.asr.timing import MEDFILT_WIDTH, standardized, window_matrix
    from mlxwx.dtw import median_filter

    rng = np.random.default_rng(3)
    scores = (4 * rng.standard_normal((3, 2, 24, 60))).astype(np.float32)
    shapes = [(3, 17, 60), (2, 6, 33), (5, 18, 2)]  # first text row, rows, frames
    lengths = mx.array([b + n + 1 for b, n, _ in shapes])  # the sequence: prompt, text, eot
    z = np.array(standardized(mx.array(scores), lengths, mx.array([m for *_, m in shapes])))
    for k, (begin, n, m) in enumerate(shapes):
        heads = [median_filter(h[begin : begin + n, :m], MEDFILT_WIDTH) for h in z[k]]
        expected = window_matrix(scores[k], begin, n, m)
        np.testing.assert_allclose(sum(heads) / len(heads), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_group_starts_on_the_gpu_match_the_cpu_path() -> None:
    """Token timing's last steps on a GPU (device softmax and standardisation, then the kernel)
    give the start times of the numpy path, window by window."""
    from mlxwx.asr.timing import group_starts, token_starts, window_matrix

    assert kernel_backend(mx.Device(mx.gpu)) is not None
    rng = np.random.default_rng(4)
    scores = (4 * rng.standard_normal((3, 4, 32, 1500))).astype(np.float32)
    shapes = [(3, 25, 1500), (2, 9, 700), (3, 28, 1234)]
    expected = token_starts([window_matrix(scores[k], *s) for k, s in enumerate(shapes)])
    before = mx.default_device()
    mx.set_default_device(mx.gpu)
    try:
        got = group_starts(mx.array(scores), shapes)
    finally:
        mx.set_default_device(before)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


# The CTC forced alignment of the wav2vec2 aligner (kernels/ctc_path.body) against its numpy
# reference (mlxwx.align.ctc's trellis and backtrack): the same path, frame for frame.
CTC_WRAPPER = """
#include <cmath>
#include <cstddef>
extern "C" void ctc_path(const float* emit, const int* labels, const int* skips, const int* dims,
                         int* path, float* score, unsigned char* move, int batch, int frames,
                         int columns, int states) {
  constexpr int NT = 1;
  constexpr int MAXS = %(MAXS)d;
  const int emit_shape[3] = {batch, frames, columns};
  const int labels_shape[2] = {batch, states};
  for (int group = 0; group < batch; ++group) {
%(SOURCE)s
  }
}
"""


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    return (x - np.log(np.exp(x).sum(axis=1, keepdims=True))).astype(np.float32)


def ctc_cases(seed: int) -> list[tuple[np.ndarray, list[int]]]:
    """(emission, tokens) pairs that exercise the path's rules: repeats, exactly the fewest
    frames, ties everywhere (flat emissions), the wildcard (an extra column), a token no frame
    can emit (no path), a single frame, and a long segment."""
    rng = np.random.default_rng(seed)
    flat = np.full((12, 5), np.log(0.2), np.float32)
    dead = _log_softmax(rng.standard_normal((20, 6)))
    dead[:, 4] = -np.inf
    return [
        (_log_softmax(2 * rng.standard_normal((40, 8))), [3, 3, 1, 5, 5, 5, 2, 7]),
        (_log_softmax(rng.standard_normal((9, 6))), [2, 2, 4, 4, 1]),  # 5 tokens + 2 repeats
        (flat, [1, 1, 2, 3]),
        (_log_softmax(rng.standard_normal((30, 7))), [2, -1, 3, -1, -1, 6]),
        (dead, [1, 4, 2]),
        (_log_softmax(rng.standard_normal((1, 4))), [3]),
        (_log_softmax(3 * rng.standard_normal((400, 33))), rng.integers(1, 33, 120).tolist()),
    ]


def ctc_prepared(cases: list[tuple[np.ndarray, list[int]]]) -> list[ctc.Prepared]:
    out = []
    for k, (emission, tokens) in enumerate(cases):
        prepared = ctc._prepare(emission, np.array(tokens, np.int64), 0)
        assert isinstance(prepared, tuple)
        out.append((k, *prepared))
    return out


def ctc_reference(todo: list[ctc.Prepared]) -> list[np.ndarray | None]:
    """Each alignment's path by numpy, one trellis each."""
    paths = []
    for _, emission, labels, skip in todo:
        ((ones, twos, alpha),) = ctc.trellis([emission[:, labels]], [skip])
        paths.append(ctc.backtrack(ones, twos, alpha))
    return paths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ctc_body_as_cpp_matches_numpy(seed: int, tmp_path: Path) -> None:
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ missing: apt-get install g++")
    src, lib_path = tmp_path / "ctc.cpp", tmp_path / "ctc.so"
    source = kernel_source("ctc_path", "cpu")
    src.write_text(CTC_WRAPPER % {"MAXS": kernels.CTC_MAX_STATES, "SOURCE": source})
    subprocess.run([cxx, "-O1", "-shared", "-fPIC", "-o", str(lib_path), str(src)], check=True)
    lib = ctypes.CDLL(str(lib_path))
    todo = ctc_prepared(ctc_cases(seed))
    emit, labels, skips, dims = ctc.kernel_inputs(todo)
    b, frames, columns = emit.shape
    path = np.full((b, frames), -7, np.int32)
    score = np.zeros(b, np.float32)
    move = np.zeros((b, frames, labels.shape[1]), np.uint8)
    arrays = (emit, labels, skips, dims, path, score, move)
    lib.ctc_path(
        *[a.ctypes.data_as(ctypes.c_void_p) for a in arrays],
        *[ctypes.c_int(v) for v in (b, frames, columns, labels.shape[1])],
    )
    expected = ctc_reference(todo)
    assert expected[4] is None and sum(e is None for e in expected) == 1  # only the dead token
    for r, e in enumerate(expected):
        n = dims[r, 0]
        assert np.isfinite(score[r]) == (e is not None)
        if e is not None:
            np.testing.assert_array_equal(path[r, :n], e)
        assert (path[r, n:] == 0).all()


CTC_CUDA_STUBS = (
    CUDA_STUBS_HEAD
    + """
#include <cstdint>
inline float __int_as_float(int x) { float f; __builtin_memcpy(&f, &x, 4); return f; }
__global__ void custom_kernel_mlxwx_ctc_path(
    const float* emit, const __grid_constant__ Shape emit_shape, const int32_t* labels,
    const __grid_constant__ Shape labels_shape, const int32_t* skips, const int32_t* dims,
    int32_t* path, float* score, uint8_t* move) {
  constexpr int NT = 256;
  constexpr int MAXS = 4096;
%s
}
"""
)
CTC_METAL_STUBS = (
    METAL_STUBS_HEAD
    + """
#include <cmath>
#include <cstdint>
template <int NT, int MAXS>
void custom_kernel_mlxwx_ctc_path(
    const device float* emit, const constant int* emit_shape, const device int32_t* labels,
    const constant int* labels_shape, const device int32_t* skips, const device int32_t* dims,
    device int32_t* path, device float* score, device uint8_t* move,
    uint3 thread_position_in_threadgroup, uint3 threadgroup_position_in_grid) {
%s
}
template void custom_kernel_mlxwx_ctc_path<256, 4096>(
    const float*, const int*, const int32_t*, const int*, const int32_t*, const int32_t*,
    int32_t*, float*, uint8_t*, uint3, uint3);
"""
)


@pytest.mark.parametrize(
    ("name", "backend", "stubs"),
    [
        ("dtw_starts", "cuda", DTW_CUDA_STUBS),
        ("dtw_starts", "metal", DTW_METAL_STUBS),
        ("ctc_path", "cuda", CTC_CUDA_STUBS),
        ("ctc_path", "metal", CTC_METAL_STUBS),
    ],
    ids=["dtw-cuda", "dtw-metal", "ctc-cuda", "ctc-metal"],
)
def test_flavours_compile_against_stubs(
    name: str, backend: str, stubs: str, tmp_path: Path
) -> None:
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ missing: apt-get install g++")
    src = tmp_path / f"{name}_{backend}.cpp"
    src.write_text(stubs % kernel_source(name, backend))
    run = subprocess.run(
        [cxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Werror", str(src)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr


def test_ctc_paths_run_numpy_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_kernel(*_: object, **__: object) -> None:
        raise AssertionError("the CTC kernel ran on a CPU")

    monkeypatch.setattr(kernels, "ctc_path_kernel", no_kernel)
    todo = ctc_prepared(ctc_cases(0))
    before = mx.default_device()
    mx.set_default_device(mx.cpu)
    try:
        got = ctc._paths(todo)
    finally:
        mx.set_default_device(before)
    for g, e in zip(got, ctc_reference(todo), strict=True):
        assert (g is None) == (e is None)
        if e is not None:
            np.testing.assert_array_equal(g, e)


@pytest.mark.gpu
def test_ctc_kernel_on_the_gpu_matches_numpy() -> None:
    """The kernel on a GPU finds the paths numpy finds, for every case and seed."""
    backend = kernel_backend(mx.Device(mx.gpu))
    assert backend is not None
    for seed in range(3):
        todo = ctc_prepared(ctc_cases(seed))
        with mx.stream(mx.gpu):
            got = ctc._paths_kernel(todo, backend)
        for g, e in zip(got, ctc_reference(todo), strict=True):
            assert (g is None) == (e is None)
            if e is not None:
                np.testing.assert_array_equal(g, e)
