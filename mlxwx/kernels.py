"""Dispatch for custom kernels (sources in `kernels/`), with pure-MLX references.

`lstm_scan` is the recurrent part of an LSTM layer (PyTorch gate order i, f, g, o). The input
projection `x @ w_ih.T + b_ih + b_hh` is one big matmul done by the caller for all steps at once;
only the `h @ w_hh.T` step is sequential.
"""

from __future__ import annotations

import mlx.core as mx


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
        gates = xw[:, t] + h @ w_t
        i, f, g, o = mx.split(gates, 4, axis=-1)
        c = mx.sigmoid(f) * c + mx.sigmoid(i) * mx.tanh(g)
        h = mx.sigmoid(o) * mx.tanh(c)
        outs.append(h)
    return mx.stack(outs, axis=1), h, c


def lstm_scan(
    xw: mx.array, w_hh: mx.array, h: mx.array, c: mx.array
) -> tuple[mx.array, mx.array, mx.array]:
    """The recurrence, on the fastest implementation for the current device."""
    return lstm_scan_reference(xw, w_hh, h, c)
