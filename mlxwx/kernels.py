"""Dispatch for custom kernels (sources in `kernels/`), with pure-MLX references.

`lstm_scan` is the recurrent part of an LSTM layer (PyTorch gate order i, f, g, o). The input
projection `x @ w_ih.T + b_ih + b_hh` is one big matmul done by the caller for all steps at once;
only the `h @ w_hh.T` step is sequential.

`dtw_starts` is the end of Whisper's token timing on a GPU: median filter, mean over heads and
DTW of each window's standardised alignment-head scores, down to the frame each token starts at
(its reference is the numpy path of `mlxwx.asr.timing`, which CPUs run).

`ctc_path` is the CTC forced alignment of the wav2vec2 aligner on a GPU: each segment's Viterbi
trellis and its best path back (its reference is `mlxwx.align.ctc`'s numpy trellis and
backtrack, which CPUs run).

Each kernel is one body (`kernels/NAME.body`) written against a few macros; a per-backend prelude
(`kernels/prelude_{metal,cuda}.h`) spells them for `mx.fast.metal_kernel` or
`mx.fast.cuda_kernel`. Kernels are built once per backend; the backend is chosen per call from
the default device, and CPUs run the pure-MLX reference.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import mlx.core as mx

# In a checkout a link to ../kernels; wheels carry the files themselves (package data).
KERNEL_DIR = Path(__file__).parent / "kernel_sources"
SHARED_BYTES = 32 * 1024  # threadgroup memory on Apple GPUs (CUDA allows 48 KB statically)
# Threads per threadgroup. Metal lowers a kernel's limit below 1024 as its register use grows
# (and raises when the launch exceeds it); the body loops, so fewer threads stay correct.
MAX_THREADS = {"cuda": 1024, "metal": 256}
WIDE_GPU = 128  # threadgroups that keep a large GPU busy (H100: 132 SMs) before rows share one


def lstm_scan_reference(
    xw: mx.array, w_hh: mx.array, h: mx.array, c: mx.array
) -> tuple[mx.array, mx.array, mx.array]:
    """Run the recurrence over time.

    xw: (B, T, 4H) projected inputs with both biases added; w_hh: (4H, H); h, c: (B, H).
    Returns the hidden states (B, T, H) and the final (h, c).
    """
    w_t = w_hh.T
    outs = []
    for t in range(xw.shape[1]):
        h, c = _lstm_cell(xw[:, t] + h @ w_t, c)
        outs.append(h)
    return mx.stack(outs, axis=1), h, c


@mx.compile
def _lstm_cell(gates: mx.array, c: mx.array) -> tuple[mx.array, mx.array]:
    """One step's new (h, c) from its gates (B, 4H) and the cell state (B, H): one fused kernel
    instead of a dozen ops (each step's ops cost more to launch than to run)."""
    i, f, g, o = mx.split(gates, 4, axis=-1)
    c = mx.sigmoid(f) * c + mx.sigmoid(i) * mx.tanh(g)
    return mx.sigmoid(o) * mx.tanh(c), c


def lstm_scan(
    xw: mx.array, w_hh: mx.array, h: mx.array, c: mx.array
) -> tuple[mx.array, mx.array, mx.array]:
    """The recurrence, on the fastest implementation for the current device: the custom
    kernel on a GPU (when the state fits its shared memory), the reference elsewhere."""
    backend = kernel_backend()
    if backend is not None and lstm_launch(xw.shape[0], w_hh.shape[1], backend) is not None:
        return lstm_scan_kernel(xw, w_hh, h, c, backend=backend)
    return lstm_scan_reference(xw, w_hh, h, c)


def kernel_source(name: str, backend: str) -> str:
    """`kernels/NAME.body` behind the backend's prelude: the `source` given to MLX."""
    prelude = (KERNEL_DIR / f"prelude_{backend}.h").read_text()
    return f"{prelude}\n{(KERNEL_DIR / f'{name}.body').read_text()}"


def kernel_backend(device: mx.Device | None = None) -> str | None:
    """The backend ("metal" or "cuda") when `device` (default: the default device) is a GPU with
    one, else None (CPU: the references run)."""
    device = device or mx.default_device()
    if device.type != mx.DeviceType.gpu:
        return None
    if mx.metal.is_available():
        return "metal"
    if mx.cuda.is_available():
        return "cuda"
    return None


@functools.cache
def _kernel(name: str, inputs: tuple[str, ...], outputs: tuple[str, ...], backend: str) -> Any:
    """The custom kernel `kernels/NAME.body` for `backend`, built once."""
    build = mx.fast.metal_kernel if backend == "metal" else mx.fast.cuda_kernel
    return build(
        name=f"mlxwx_{name}",
        input_names=list(inputs),
        output_names=list(outputs),
        source=kernel_source(name, backend),
    )


def _lstm_kernel(backend: str) -> Any:
    return _kernel("lstm_scan", ("xw", "w_t", "h0", "c0"), ("hs", "h_out", "c_out"), backend)


def lstm_launch(batch: int, hidden: int, backend: str = "cuda") -> tuple[int, int] | None:
    """(rows per threadgroup, threads per threadgroup) for the LSTM kernel, or None when one
    row's state (h, c and 4 gates, float32) does not fit in threadgroup memory. Rows share a
    threadgroup (reusing each weight read) only once the batch would overflow WIDE_GPU groups."""
    max_rows = SHARED_BYTES // (6 * hidden * 4)
    if max_rows < 1:
        return None
    rows = 1
    while rows * 2 <= min(max_rows, 8) and batch > rows * WIDE_GPU:
        rows *= 2
    return rows, min(4 * hidden, MAX_THREADS[backend])


def lstm_scan_kernel(
    xw: mx.array,
    w_hh: mx.array,
    h: mx.array,
    c: mx.array,
    *,
    backend: str,
    rows: int | None = None,
) -> tuple[mx.array, mx.array, mx.array]:
    """`lstm_scan_reference` as one custom kernel launch (`kernels/lstm_scan.body`) on
    `backend` ("metal" or "cuda"); rows: batch rows per threadgroup (default: `lstm_launch`)."""
    batch, steps, _ = xw.shape
    hidden = w_hh.shape[1]
    launch = lstm_launch(batch, hidden, backend)
    if launch is None:
        raise ValueError(f"hidden size {hidden} does not fit the LSTM kernel's shared memory")
    rows = rows or launch[0]
    threads = launch[1]
    groups = -(-batch // rows)
    return tuple(  # type: ignore[return-value]
        _lstm_kernel(backend)(
            inputs=[xw, w_hh.T, h, c],  # w_hh.T is made row-contiguous: (H, 4H), coalesced
            template=[("T", xw.dtype), ("H", hidden), ("R", rows), ("NT", threads)],
            grid=(groups * threads, 1, 1),
            threadgroup=(threads, 1, 1),
            output_shapes=[(batch, steps, hidden), (batch, hidden), (batch, hidden)],
            output_dtypes=[xw.dtype] * 3,
        )
    )


DTW_THREADS = 256  # per window: a token row each in the sweep (the body loops over more rows)


def dtw_starts_kernel(z: mx.array, dims: mx.array, width: int, *, backend: str) -> mx.array:
    """Per window, the frame at which each token row starts on the DTW path (`kernels/
    dtw_starts.body`): z (B, heads, L, F) standardised float32 scores; dims (B, 3) int32: the
    first text row, the rows and the frames of each window; width: the median filter's.
    Returns (B, L) int32 (rows past a window's own are 0)."""
    b, _, rows, frames = z.shape
    dtw = _kernel("dtw_starts", ("z", "dims"), ("starts", "cost", "acc", "move"), backend)
    outs = dtw(
        inputs=[z, dims],
        template=[("NT", DTW_THREADS), ("W", width)],
        grid=(b * DTW_THREADS, 1, 1),
        threadgroup=(DTW_THREADS, 1, 1),
        output_shapes=[(b, rows), (b, rows, frames), *[(b, rows + 1, frames + 1)] * 2],
        output_dtypes=[mx.int32, mx.float32, mx.float32, mx.uint8],
    )
    return outs[0]


CTC_THREADS = 256  # per segment: every 256th state each (the body loops over more states)
CTC_MAX_STATES = SHARED_BYTES // 8  # two frames of float32 alpha in threadgroup memory


def ctc_path_kernel(
    emit: mx.array, labels: mx.array, skips: mx.array, dims: mx.array, *, backend: str
) -> tuple[mx.array, mx.array]:
    """Per segment, the CTC state of each frame on its best path and that path's score
    (`kernels/ctc_path.body`): emit (B, T, C) float32 log-probabilities; labels and skips
    (B, S) int32, each state's column and whether it may skip the blank before it; dims (B, 2)
    int32, each segment's frames and states (at most CTC_MAX_STATES). Returns path (B, T) int32
    (frames past a segment's own are 0) and score (B,) float32 (-inf where no path reaches the
    end)."""
    b, frames, _ = emit.shape
    states = labels.shape[1]
    if states > CTC_MAX_STATES:
        raise ValueError(f"{states} CTC states exceed the kernel's {CTC_MAX_STATES}")
    outputs = ("path", "score", "move")
    ctc = _kernel("ctc_path", ("emit", "labels", "skips", "dims"), outputs, backend)
    path, score, _ = ctc(
        inputs=[emit, labels, skips, dims],
        template=[("NT", CTC_THREADS), ("MAXS", CTC_MAX_STATES)],
        grid=(b * CTC_THREADS, 1, 1),
        threadgroup=(CTC_THREADS, 1, 1),
        output_shapes=[(b, frames), (b,), (b, frames, states)],
        output_dtypes=[mx.int32, mx.float32, mx.uint8],
    )
    return path, score
