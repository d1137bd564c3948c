"""Read the float32 initializers of an ONNX model with a small protobuf reader: no `onnx` package.

Enough for weight files (`ModelProto.graph.initializer` tensors stored as `raw_data`); used for
Silero VAD, whose package ships its network as ONNX.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message; values of wire type 2 are bytes."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        wire = key & 7
        if wire == 0:
            value, i = _varint(data, i)
            yield key >> 3, value
        elif wire == 2:
            size, i = _varint(data, i)
            yield key >> 3, data[i : i + size]
            i += size
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _tensor(data: bytes, keep: Callable[[str], bool]) -> tuple[str, np.ndarray | None]:
    """An ONNX TensorProto -> (name, array), the array None when `keep(name)` is false; a kept
    tensor must hold float32 `raw_data`."""
    dims: list[int] = []
    name, raw, dtype = "", b"", 0
    for number, value in _fields(data):
        if number == 1:
            dims.extend([value] if isinstance(value, int) else _packed(value))
        elif number == 2 and isinstance(value, int):
            dtype = value
        elif number == 8 and isinstance(value, bytes):
            name = value.decode()
        elif number == 9 and isinstance(value, bytes):
            raw = value
    if not keep(name):
        return name, None
    if dtype != 1 or len(raw) != 4 * int(np.prod(dims)):
        raise ValueError(f"ONNX tensor {name!r} is not float32 raw data")
    return name, np.frombuffer(raw, dtype="<f4").reshape(dims).copy()


def _packed(data: bytes) -> list[int]:
    out, i = [], 0
    while i < len(data):
        value, i = _varint(data, i)
        out.append(value)
    return out


def read_onnx(
    path: str | Path, keep: Callable[[str], bool] = lambda _: True
) -> dict[str, np.ndarray]:
    """The initializers of an ONNX file whose names pass `keep`, by name (float32 only)."""
    found: dict[str, np.ndarray] = {}
    for number, graph in _fields(Path(path).read_bytes()):
        if number != 7 or not isinstance(graph, bytes):  # ModelProto.graph
            continue
        for item, value in _fields(graph):
            if item == 5 and isinstance(value, bytes):  # GraphProto.initializer
                name, array = _tensor(value, keep)
                if array is not None:
                    found[name] = array
    return found
