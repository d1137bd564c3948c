"""Silero VAD (v6, 16 kHz) in MLX: the weights, the loader and the `Vad` that runs it.

Weights: the `silero-vad` package (6.2.3) ships its network as ONNX and TorchScript models and as
`silero_vad_16k.safetensors`; that safetensors file holds OTHER weights than the models the package
runs (its probabilities differ from `silero_vad.onnx` by up to 0.4), so the converter reads the
tensors of `silero_vad_16k_op15.onnx` (the same weights as `silero_vad.onnx` and `.jit`, under
PyTorch names) with a small protobuf reader: no `onnx` or `torch` needed. The first use converts
them into `$MLXWX_CACHE/models/silero-vad-<version>` (from the installed package, or else from the
wheel that `pip download` fetches); later uses read that folder.

Running: every 512-sample window is encoded at once (the encoder sees one window and its 64
context samples); the LSTM runs as parallel streams over blocks of windows, each block starting
`warmup` windows early so that its state has settled when its own windows begin, or as one
sequential stream (exactly silero's order of operations).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from ..errors import ModelError
from ..models.silero import SileroConfig, SileroVadNet
from ..packs import cache_dir, wheel_member
from ..writers import atomic_folder
from .base import SAMPLE_RATE, SpeechProbs, check_bounds

logger = logging.getLogger(__name__)

PACKAGE = "silero-vad"
VERSION = "6.2.3"  # the wheel fetched when the package is not installed
ONNX_FILE = "silero_vad_16k_op15.onnx"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
_ONNX_PREFIX = "model."
_ONNX_NAMES = {  # PyTorch names in the package's models -> ours (those of its tinygrad model)
    "stft.forward_basis_buffer": "stft_conv.weight",
    **{
        f"encoder.{i}.reparam_conv.{p}": f"conv{i + 1}.{p}"
        for i in range(4)
        for p in ("weight", "bias")
    },
    **{
        f"decoder.rnn.{p}": f"lstm_cell.{p}"
        for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    },
    "decoder.decoder.2.weight": "final_conv.weight",
    "decoder.decoder.2.bias": "final_conv.bias",
}


# --- weights -------------------------------------------------------------------------------


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


def _onnx_tensor(data: bytes) -> tuple[str, np.ndarray]:
    """An ONNX TensorProto holding float32 `raw_data` -> (name, array)."""
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
    if dtype != 1 or len(raw) != 4 * int(np.prod(dims)):
        raise ValueError(f"ONNX tensor {name!r} is not float32 raw data")
    return name, np.frombuffer(raw, dtype="<f4").reshape(dims).copy()


def _packed(data: bytes) -> list[int]:
    out, i = [], 0
    while i < len(data):
        value, i = _varint(data, i)
        out.append(value)
    return out


def read_onnx(path: str | Path) -> dict[str, np.ndarray]:
    """The network's tensors (our names) from the initializers of silero's ONNX file."""
    found: dict[str, np.ndarray] = {}
    for number, graph in _fields(Path(path).read_bytes()):
        if number != 7 or not isinstance(graph, bytes):  # ModelProto.graph
            continue
        for item, value in _fields(graph):
            if item == 5 and isinstance(value, bytes):  # GraphProto.initializer
                name, array = _onnx_tensor(value)
                ours = _ONNX_NAMES.get(name.removeprefix(_ONNX_PREFIX))
                if ours is not None:
                    found[ours] = array
    return found


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Tensors of a silero `.onnx` (PyTorch names) or `.safetensors` (tinygrad names) file,
    in PyTorch layout under our names."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return dict(load_file(str(path)))
    return read_onnx(path)


def _flat(model: SileroVadNet) -> list[tuple[str, mx.array]]:
    return tree_flatten(model.parameters())  # type: ignore[return-value]


def save_silero(weights: dict[str, np.ndarray], dst: str | Path, source: str = "") -> Path:
    """Write an MLX folder (config.json + weights.safetensors) at `dst`, which must not exist.

    weights: PyTorch layout under our names; convs become channels-last `(out, kernel, in)`.
    Raises ValueError unless the names and shapes are exactly the network's.
    """
    dst = Path(dst)
    if dst.exists():
        raise FileExistsError(f"refusing to overwrite {dst}")
    config = SileroConfig()
    model = SileroVadNet(config)
    expected = {k: tuple(v.shape) for k, v in _flat(model)}
    mlx_weights = {
        k: mx.array(v.transpose(0, 2, 1) if v.ndim == 3 else v) for k, v in weights.items()
    }
    got = {k: tuple(v.shape) for k, v in mlx_weights.items()}
    if got != expected:
        missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
        bad = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
        raise ValueError(
            f"not a Silero VAD 16 kHz network: missing {missing}, unexpected {extra}, shapes {bad}"
        )
    with atomic_folder(dst) as tmp:
        meta = {**config.to_dict(), "source": source}
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        mx.save_safetensors(str(tmp / WEIGHTS_FILE), mlx_weights)
    return dst


def load_folder(path: str | Path) -> SileroVadNet:
    """The network from an MLX folder written by `save_silero`."""
    path = Path(path)
    try:
        config = SileroConfig.from_dict(json.loads((path / CONFIG_FILE).read_text()))
        weights = mx.load(str(path / WEIGHTS_FILE))
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelError(f"cannot read a Silero VAD folder at {path}: {err}") from err
    model = SileroVadNet(config)
    model.load_weights(list(weights.items()), strict=True)  # type: ignore[union-attr]
    mx.eval(model.parameters())
    return model


def _installed_onnx() -> tuple[Path, str] | None:
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / ONNX_FILE
    if not path.exists():
        return None
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return path, version


def silero_folder() -> Path:
    """The converted folder in the user cache, converting it on first use."""
    installed = _installed_onnx()
    version = installed[1] if installed else VERSION
    target = cache_dir() / "models" / f"silero-vad-{version}"
    if (target / CONFIG_FILE).exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        if installed:
            source = installed[0]
        else:
            try:
                source = wheel_member(
                    f"{PACKAGE}=={VERSION}", f"silero_vad/data/{ONNX_FILE}", Path(tmp)
                )
            except ModelError as err:
                raise ModelError(
                    f"Silero VAD weights not found: pip install {PACKAGE}=={VERSION} ({err})"
                ) from err
        logger.info("converting Silero VAD %s from %s into %s (once)", version, source, target)
        try:
            save_silero(read_weights(source), target, source=f"{PACKAGE}=={version}/{ONNX_FILE}")
        except FileExistsError:
            pass  # a concurrent conversion won
        except (OSError, ValueError) as err:
            raise ModelError(f"cannot convert Silero VAD weights from {source}: {err}") from err
    return target


def load_silero(path: str | Path | None = None) -> SileroVadNet:
    """The Silero network from an MLX folder, or from the cache (converted on first use)."""
    return load_folder(path if path is not None else silero_folder())


# --- running -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SileroOptions:
    """How the LSTM runs over a file.

    Attributes:
      sequential: True: one stream over the whole file, window after window, as silero runs it.
        False: files longer than `warmup + block` windows run as parallel streams. None: streams
        on a GPU, where a step costs the same for one stream or many; one stream on CPU, where
        a step's cost grows with the streams (on 10 min, 2 shared cores: 2.5 s sequential, 3.9 s
        as 5 streams; bench/bench_silero.py).
      block: windows (32 ms each) each stream scores.
      warmup: windows each stream runs before its block, to settle its state (discarded).
        silero's LSTM remembers for minutes: on 10 min of speech and noise, 4096 windows (131 s)
        left differences up to 2.3e-4 from the sequential probabilities, 6144 (197 s) 2.4e-6.
      streams: streams run side by side (bounds memory: about (streams * block + warmup) * 2 KB).
      encode_windows: windows encoded per call (bounds the encoder's memory).
      scan_steps: LSTM steps per evaluated graph.
    """

    sequential: bool | None = None
    block: int = 4096
    warmup: int = 6144
    streams: int = 16
    encode_windows: int = 8192
    scan_steps: int = 512

    def __post_init__(self) -> None:
        check_bounds(self, ("block", "streams", "encode_windows", "scan_steps"), 1)
        check_bounds(self, ("warmup",), 0)


class SileroVad:
    """Silero VAD: speech probability of every 512-sample window (hop 32 ms) of 16 kHz audio."""

    method: ClassVar[str] = "silero"  # its name in mlxwx.vad.METHODS

    def __init__(self, model: SileroVadNet | None = None, options: SileroOptions | None = None):
        self.model = model if model is not None else load_silero()
        self.options = options or SileroOptions()
        self.window = self.model.config.window
        self.context = self.model.config.context

    @property
    def hop(self) -> float:
        return self.window / SAMPLE_RATE

    def __call__(self, audio: mx.array) -> SpeechProbs:
        """audio: (samples,) float32 at 16 kHz -> probabilities of ceil(samples / 512) windows,
        the last one zero-padded, as silero scores them."""
        audio = audio.astype(mx.float32).reshape(-1)
        n = -(-audio.shape[0] // self.window)
        if n == 0:
            return SpeechProbs(mx.zeros((0,), mx.float32), self.hop)
        o = self.options
        sequential = o.sequential if o.sequential is not None else mx.default_device() == mx.cpu
        streamed = not sequential and n > o.warmup + o.block
        probs = mx.concatenate(list((self._streamed if streamed else self._sequential)(audio, n)))
        return SpeechProbs(probs, self.hop)

    def _windows(self, audio: mx.array, a: int, b: int) -> mx.array:
        """Windows a..b-1 with their context: (b - a, context + window); zeros past the ends."""
        w, ctx = self.window, self.context
        main = audio[a * w : b * w]
        if main.shape[0] < (b - a) * w:
            main = mx.pad(main, (0, (b - a) * w - main.shape[0]))
        main = main.reshape(b - a, w)
        first = audio[a * w - ctx : a * w] if a > 0 else mx.zeros((ctx,), audio.dtype)
        context = mx.concatenate([first[None], main[:-1, -ctx:]], axis=0)
        return mx.concatenate([context, main], axis=1)

    def _project(self, audio: mx.array, a: int, b: int) -> mx.array:
        """LSTM inputs (b - a, 4H) of windows a..b-1, encoded `encode_windows` at a time."""
        parts = []
        for s in range(a, b, self.options.encode_windows):
            e = min(b, s + self.options.encode_windows)
            part = self.model.lstm_cell.project(self.model.encode(self._windows(audio, s, e)))
            mx.eval(part)
            parts.append(part)
        return mx.concatenate(parts) if len(parts) > 1 else parts[0]

    def _sequential(self, audio: mx.array, n: int) -> Iterator[mx.array]:
        h = c = mx.zeros((1, self.model.config.hidden), mx.float32)
        step = self.options.scan_steps
        for a in range(0, n, self.options.encode_windows):
            xw = self._project(audio, a, min(n, a + self.options.encode_windows))
            for t in range(0, xw.shape[0], step):
                hs, h, c = self.model.lstm_cell.scan(xw[None, t : t + step], h, c)
                probs = self.model.decode(hs)[0]
                mx.eval(probs, h, c)
                yield probs

    def _streamed(self, audio: mx.array, n: int) -> Iterator[mx.array]:
        o = self.options
        for r0 in range(0, -(-n // o.block), o.streams):
            a, b = r0 * o.block, min(n, (r0 + o.streams) * o.block)
            rows = -(-(b - a) // o.block)
            xw = self._project(audio, max(0, a - o.warmup), b)
            if a < o.warmup:  # before the file: inputs that keep the state exactly zero
                xw = mx.concatenate([_zero_state_inputs(o.warmup - a, xw.shape[1]), xw])
            xw = mx.pad(xw, [(0, o.warmup + rows * o.block - xw.shape[0]), (0, 0)])
            yield self._scan_rows(xw, rows).reshape(-1)[: b - a]

    def _scan_rows(self, xw: mx.array, rows: int) -> mx.array:
        """Row r runs inputs r * block .. r * block + warmup + block - 1 of `xw`; returns the
        probabilities of each row's last `block` steps, (rows, block)."""
        o = self.options
        h = c = mx.zeros((rows, self.model.config.hidden), mx.float32)
        starts = (mx.arange(rows) * o.block)[:, None]
        kept = []
        for t in range(0, o.warmup + o.block, o.scan_steps):
            steps = mx.arange(t, min(t + o.scan_steps, o.warmup + o.block))
            hs, h, c = self.model.lstm_cell.scan(xw[starts + steps[None]], h, c)
            if t + hs.shape[1] > o.warmup:
                probs = self.model.decode(hs[:, max(0, o.warmup - t) :])
                mx.eval(probs, h, c)
                kept.append(probs)
            else:
                mx.eval(h, c)
        return mx.concatenate(kept, axis=1)


def _zero_state_inputs(steps: int, width: int) -> mx.array:
    """LSTM inputs that hold a zero state at zero: the input gate is shut (sigmoid(-1e4) = 0),
    so c = f * 0 + 0 * g = 0 and h = o * tanh(0) = 0."""
    gate = width // 4
    row = mx.concatenate([mx.full((gate,), -1e4), mx.zeros((width - gate,))])
    return mx.broadcast_to(row, (steps, width))
