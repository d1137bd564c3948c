"""Read CTranslate2 Whisper folders (the offline packs) into mlx-whisper-named numpy weights.

No ctranslate2 import: `model.bin` is parsed here. Its layout is what
`ctranslate2/specs/model_spec.py` (`ModelSpec._serialize`) writes, little-endian:

    u32 binary version (6); str spec name ("WhisperSpec"); u32 spec revision; u32 n_variables
    n_variables x { str name; u8 rank; u32 dims[rank]; u8 dtype id; u32 nbytes; bytes data }
    u32 n_aliases; n_aliases x { str alias; str target }

where `str` is a u16 length counting a trailing NUL, the UTF-8 bytes and the NUL. Rank-0 variables
are settings (`decoder/num_heads`, `decoder/activation`, ...), not weights.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..models.whisper import ModelDimensions, sinusoids

# Order of the DataType enum in CTranslate2's include/ctranslate2/types.h.
_DTYPES: tuple[str, ...] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_NUMPY = {
    "float32": "<f4",
    "int8": "i1",
    "int16": "<i2",
    "int32": "<i4",
    "float16": "<f2",
    "bfloat16": "<u2",
}
_BINARY_VERSIONS = (4, 5, 6)  # those that store dtype ids; this CTranslate2 writes 6
_GELU = 3  # ctranslate2.specs.common_spec.Activation.GELU

# Settings our architecture hard-codes: the value CTranslate2 must hold for it.
_REQUIRED = {"decoder/activation": _GELU, "decoder/pre_norm": 1, "decoder/scale_embeddings": 0}
# Settings that do not change the network we build: head counts are read, CT2's own
# single-layer alignment defaults are irrelevant (the real heads are in config.json).
_INFO = (
    "encoder/num_heads",
    "decoder/num_heads",
    "decoder/alignment_layer",
    "decoder/alignment_heads",
)


@dataclass(frozen=True)
class ModelBin:
    """The contents of a CTranslate2 `model.bin`: arrays are views of the memory-mapped file
    (bfloat16 ones are widened to float32)."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        self.buf = np.memmap(path, dtype=np.uint8, mode="r")
        self.off = 0

    def take(self, n: int) -> np.ndarray:
        if self.off + n > len(self.buf):
            raise ValueError(
                f"{self.path} is truncated (needs {self.off + n} bytes, has {len(self.buf)})"
            )
        out = self.buf[self.off : self.off + n]
        self.off += n
        return out

    def uint(self, fmt: str) -> int:
        dtype = np.dtype(fmt)
        return int(self.take(dtype.itemsize).view(dtype)[0])

    def string(self) -> str:
        n = self.uint("<u2")
        return bytes(self.take(n)[:-1]).decode("utf-8")


def read_model_bin(path: str | Path) -> ModelBin:
    """Parse a CTranslate2 `model.bin` (any spec); ValueError on a version we cannot read."""
    r = _Reader(Path(path))
    version = r.uint("<u4")
    if version not in _BINARY_VERSIONS:
        raise ValueError(f"{path}: unsupported CTranslate2 binary version {version}")
    spec, revision = r.string(), r.uint("<u4")
    variables: dict[str, np.ndarray] = {}
    for _ in range(r.uint("<u4")):
        name = r.string()
        shape = tuple(r.uint("<u4") for _ in range(r.uint("<u1")))
        type_id, nbytes = r.uint("<u1"), r.uint("<u4")
        if type_id >= len(_DTYPES):
            raise ValueError(f"{path}: variable {name} has unknown dtype id {type_id}")
        dtype = _DTYPES[type_id]
        data = r.take(nbytes).view(_NUMPY[dtype])
        if data.size != int(np.prod(shape)):
            raise ValueError(f"{path}: variable {name} holds {nbytes} bytes for shape {shape}")
        array = data.reshape(shape)
        if dtype == "bfloat16":  # numpy has no bfloat16: its bits are the top half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        variables[name] = array
    aliases = {}
    for _ in range(r.uint("<u4")):
        alias = r.string()
        aliases[alias] = r.string()
    return ModelBin(spec, revision, variables, aliases)


def read_ct2(
    folder: str | Path,
) -> tuple[ModelDimensions, dict[str, np.ndarray], dict[str, Any]]:
    """Read a CTranslate2 Whisper folder (`model.bin`, `config.json`).

    Returns the dimensions, weights under mlx-whisper's names (numpy, in the file's precision;
    convs channels-last `(out, k, in)`) and meta: `alignment_heads` ([[layer, head], ...]),
    `suppress_tokens`, `begin_suppress_tokens` (each only when config.json has it) and
    `source: "ctranslate2"`. ValueError (one line) for anything our model cannot represent:
    int8-quantized weights, another spec, unknown settings or unused tensors.
    """
    folder = Path(folder)
    mb = read_model_bin(folder / "model.bin")
    if mb.spec != "WhisperSpec":
        raise ValueError(f"{folder}: not a CTranslate2 Whisper model (spec {mb.spec!r})")
    src = dict(mb.variables)
    quantized = [
        k
        for k, v in src.items()
        if k.endswith("weight_scale") or (v.ndim >= 2 and not np.issubdtype(v.dtype, np.floating))
    ]
    if quantized:
        raise ValueError(
            f"{folder}: int8-quantized CTranslate2 weights are not supported ({quantized[0]}); "
            "convert from a float16 or float32 CTranslate2 model"
        )
    _check_settings(folder, src)
    _check_aliases(folder, mb.aliases, src)
    try:
        dims = _dims(src)
        weights = _weights(src, dims)
    except KeyError as err:
        raise ValueError(f"{folder}: model.bin lacks {err.args[0]}") from None
    if src:
        raise ValueError(f"{folder}: unused tensors in model.bin: {sorted(src)[:8]} ({len(src)})")
    return dims, weights, _meta(folder / "config.json", dims)


def _check_settings(folder: Path, src: dict[str, np.ndarray]) -> None:
    """Pop the rank-0 settings, raising on any that changes the network we build."""
    for name in [k for k, v in src.items() if v.ndim == 0]:
        value = src[name].item()
        # An unknown setting is fine only when off: every CT2 feature flag defaults to 0.
        ok = value == _REQUIRED[name] if name in _REQUIRED else (name in _INFO or value == 0)
        if not ok:
            raise ValueError(f"{folder}: unsupported CTranslate2 setting {name}={value}")
        if not name.endswith("/num_heads"):
            del src[name]


def _check_aliases(folder: Path, aliases: dict[str, str], src: dict[str, np.ndarray]) -> None:
    """The output projection must be the token embedding (Whisper ties them)."""
    for alias, target in aliases.items():
        if alias != "decoder/projection/weight" or target != "decoder/embeddings/weight":
            raise ValueError(f"{folder}: unsupported alias {alias} -> {target}")
    proj = src.pop("decoder/projection/weight", None)
    embed = src.get("decoder/embeddings/weight")
    if proj is not None and (embed is None or not np.array_equal(proj, embed)):
        raise ValueError(f"{folder}: output projection is not tied to the token embedding")
    bias = src.pop("decoder/projection/bias", None)
    if bias is not None and np.abs(bias).max() > 0:
        raise ValueError(f"{folder}: output projection has a bias; Whisper has none")


def _n_layers(src: dict[str, np.ndarray], side: str) -> int:
    found = {int(m[1]) for k in src if (m := re.match(rf"{side}/layer_(\d+)/", k))}
    if found != set(range(len(found))):
        raise ValueError(f"{side} layers are not numbered 0..n-1: {sorted(found)}")
    return len(found)


def _heads(src: dict[str, np.ndarray], side: str, n_state: int) -> int:
    value = src.pop(f"{side}/num_heads", None)
    return int(value) if value is not None else n_state // 64


def _dims(src: dict[str, np.ndarray]) -> ModelDimensions:
    conv1 = src["encoder/conv1/weight"]  # (out, in, k)
    audio_pos = src["encoder/position_encodings/encodings"]
    embed = src["decoder/embeddings/weight"]
    text_pos = src["decoder/position_encodings/encodings"]
    return ModelDimensions(
        n_mels=conv1.shape[1],
        n_audio_ctx=audio_pos.shape[0],
        n_audio_state=conv1.shape[0],
        n_audio_head=_heads(src, "encoder", conv1.shape[0]),
        n_audio_layer=_n_layers(src, "encoder"),
        n_vocab=embed.shape[0],
        n_text_ctx=text_pos.shape[0],
        n_text_state=embed.shape[1],
        n_text_head=_heads(src, "decoder", embed.shape[1]),
        n_text_layer=_n_layers(src, "decoder"),
    )


def _weights(src: dict[str, np.ndarray], dims: ModelDimensions) -> dict[str, np.ndarray]:
    """Pop every tensor of `src` into mlx-whisper names."""
    out: dict[str, np.ndarray] = {}

    def linear(ct2: str, ours: str) -> None:
        out[f"{ours}.weight"] = src.pop(f"{ct2}/weight")
        out[f"{ours}.bias"] = src.pop(f"{ct2}/bias")

    def norm(ct2: str, ours: str) -> None:
        out[f"{ours}.weight"] = src.pop(f"{ct2}/gamma")
        out[f"{ours}.bias"] = src.pop(f"{ct2}/beta")

    def fused(ct2: str, ours: str, names: tuple[str, ...]) -> None:
        """Split a fused projection (q,k,v or k,v along the output axis); key has no bias."""
        ws = np.split(src.pop(f"{ct2}/weight"), len(names))
        bs = np.split(src.pop(f"{ct2}/bias"), len(names))
        for name, w, b in zip(names, ws, bs, strict=True):
            out[f"{ours}.{name}.weight"] = w
            if name != "key":
                out[f"{ours}.{name}.bias"] = b
            elif np.abs(b.astype(np.float32)).max() > 1e-6:  # CT2 fills the missing bias with 0
                raise ValueError(f"{ct2}: key bias is not zero; Whisper's key has no bias")

    for conv in ("conv1", "conv2"):  # CT2 keeps PyTorch's (out, in, k); MLX's is (out, k, in)
        out[f"encoder.{conv}.weight"] = src.pop(f"encoder/{conv}/weight").transpose(0, 2, 1)
        out[f"encoder.{conv}.bias"] = src.pop(f"encoder/{conv}/bias")
    check_sinusoids(
        "encoder/position_encodings/encodings",
        src.pop("encoder/position_encodings/encodings"),
        dims.n_audio_ctx,
        dims.n_audio_state,
    )
    norm("encoder/layer_norm", "encoder.ln_post")
    for side, n in (("encoder", dims.n_audio_layer), ("decoder", dims.n_text_layer)):
        for i in range(n):
            c, o = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            norm(f"{c}/self_attention/layer_norm", f"{o}.attn_ln")
            fused(f"{c}/self_attention/linear_0", f"{o}.attn", ("query", "key", "value"))
            linear(f"{c}/self_attention/linear_1", f"{o}.attn.out")
            if side == "decoder":
                norm(f"{c}/attention/layer_norm", f"{o}.cross_attn_ln")
                linear(f"{c}/attention/linear_0", f"{o}.cross_attn.query")
                fused(f"{c}/attention/linear_1", f"{o}.cross_attn", ("key", "value"))
                linear(f"{c}/attention/linear_2", f"{o}.cross_attn.out")
            norm(f"{c}/ffn/layer_norm", f"{o}.mlp_ln")
            linear(f"{c}/ffn/linear_0", f"{o}.mlp1")
            linear(f"{c}/ffn/linear_1", f"{o}.mlp2")
    out["decoder.token_embedding.weight"] = src.pop("decoder/embeddings/weight")
    out["decoder.positional_embedding"] = src.pop("decoder/position_encodings/encodings")
    norm("decoder/layer_norm", "decoder.ln")
    return out


def check_sinusoids(name: str, table: np.ndarray, n_ctx: int, n_state: int) -> None:
    """The encoder's positional table is computed, not stored, so the checkpoint's must be
    Whisper's sinusoids: to 1e-3 (float16 rounding is 5e-4), or 4e-3 when the values are
    bfloat16 (half an ulp near 1 is 2e-3). A different table is off by O(1)."""
    table = np.asarray(table, dtype=np.float32)
    if table.shape != (n_ctx, n_state):
        raise ValueError(f"{name}: shape {table.shape} != {(n_ctx, n_state)}")
    bfloat16 = not (np.ascontiguousarray(table).view(np.uint32) & 0xFFFF).any()
    error = np.abs(table - np.array(sinusoids(n_ctx, n_state))).max()
    if error > (4e-3 if bfloat16 else 1e-3):
        raise ValueError(f"{name} is not Whisper's sinusoidal table (off by {error:.2g})")


def _as_list(value: Any) -> list[Any]:
    """config.json values are lists, or (some converter versions) JSON strings of lists."""
    return json.loads(value) if isinstance(value, str) else list(value)


def _meta(config_file: Path, dims: ModelDimensions) -> dict[str, Any]:
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    meta: dict[str, Any] = {}
    if config.get("alignment_heads") is not None:
        heads = [[int(layer), int(head)] for layer, head in _as_list(config["alignment_heads"])]
        bad = [
            p for p in heads if not (0 <= p[0] < dims.n_text_layer and 0 <= p[1] < dims.n_text_head)
        ]
        if bad:
            raise ValueError(f"{config_file}: alignment heads out of range: {bad[:4]}")
        meta["alignment_heads"] = heads
    for ct2_key, key in (
        ("suppress_ids", "suppress_tokens"),
        ("suppress_ids_begin", "begin_suppress_tokens"),
    ):
        if config.get(ct2_key) is not None:
            meta[key] = [int(t) for t in _as_list(config[ct2_key])]
    meta["source"] = "ctranslate2"
    return meta
