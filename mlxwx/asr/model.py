"""Whisper loaded for decoding: the network, its vocabulary and its decoding metadata.

`load_model` takes a short name (`tiny.en`, `base`: offline packs; others: mlx-community repos),
a local MLX folder, or a Hugging Face repo id, and reads it with the one folder loader
(`mlxwx.weights.folder`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..errors import ModelError
from ..models.whisper import ModelDimensions, Whisper
from ..weights import hub, packs
from ..weights.folder import load_folder, parameters
from ..weights.heads import heads_lag, published_heads
from ..weights.whisper import META_FILE, TOKENIZER_FILE
from .tokenizer import Tokenizer

logger = logging.getLogger(__name__)
COPY_ROWS = 256  # rows of a matrix per block of `column_major`'s copy


@dataclass(frozen=True)
class WhisperModel:
    """A loaded checkpoint: the network, its vocabulary and its decoding metadata."""

    model: Whisper
    tokenizer: Tokenizer
    path: Path
    suppress_tokens: tuple[int, ...]
    begin_suppress_tokens: tuple[int, ...]
    timing_lag: float = 0.0  # seconds its alignment heads trail speech (`heads.LAGS`)

    @property
    def dims(self) -> ModelDimensions:
        return self.model.dims


def default_dtype() -> mx.Dtype:
    """float16 where a GPU runs the model, float32 on CPU (where float16 is slower)."""
    return mx.float16 if mx.default_device() == mx.gpu else mx.float32


def load_whisper(path: str | Path, dtype: mx.Dtype | None = None) -> Whisper:
    """The Whisper network of an MLX folder (ours or mlx-community's), quantized or not, in
    `dtype` (default: `default_dtype()`)."""
    model: Whisper = load_folder(path, "whisper", dtype or default_dtype())  # type: ignore[assignment]
    # the sinusoid table too: an array left lazy here belongs to this thread's stream
    mx.eval(model.encoder._positional_embedding)
    if mx.default_device() == mx.cpu:
        model.fuse(column_major)
        column_major_steps(model)
    else:
        model.fuse()
    return model


def column_major(w: mx.array) -> mx.array:
    """`w` (out, in), same shape and values, stored column by column: `x @ w.T` then gives the
    BLAS a row-major (in, out) matrix, which a CPU BLAS multiplies by a few rows without first
    copying the large matrix into a layout of its own.

    The transposed copy is made by numpy in blocks of COPY_ROWS rows, whose columns stay in the
    cache while they are written: MLX's CPU copy walks the whole matrix by columns, 2-4x slower
    on the output layer's 51,865 x 512 (numpy has no bfloat16: such a matrix is copied by MLX).
    """
    if w.dtype not in (mx.float32, mx.float16):
        out = mx.contiguous(w.T).T
        mx.eval(out)
        return out
    rows = np.asarray(w)
    columns = np.empty(rows.shape[::-1], rows.dtype)
    for i in range(0, rows.shape[0], COPY_ROWS):
        columns[:, i : i + COPY_ROWS] = rows[i : i + COPY_ROWS].T
    out = mx.array(columns).T
    mx.eval(out)  # a view, evaluated here: left lazy it would belong to this thread's stream
    return out


def column_major_steps(model: Whisper) -> None:
    """On the CPU, the matrices that a decode step multiplies by one token of each row stored
    column by column (`column_major`): the decoder's self-attention output, cross-attention
    query and output, MLP, and the token embedding (the output layer). The cross-attention keys
    and values (projected from 1,500 frames per window) and the encoder keep their layout;
    quantized layers are left as they are."""
    for block in model.decoder.blocks:
        linears = (block.attn.out, block.cross_attn.query, block.cross_attn.out)
        for layer in (*linears, block.mlp1, block.mlp2):
            if type(layer) is nn.Linear:
                layer.weight = column_major(layer.weight)
    embedding = model.decoder.token_embedding
    if type(embedding) is nn.Embedding:
        embedding.weight = column_major(embedding.weight)


def load_tokenizer(path: Path, dims: ModelDimensions) -> Tokenizer:
    file = path / TOKENIZER_FILE
    if not file.exists():
        file = packs.tokenizer_file(dims.n_vocab) or hub.fetch_tokenizer(dims.n_vocab)
    return Tokenizer.from_file(file, multilingual=dims.is_multilingual)


def resolve(name_or_path: str) -> Path:
    """A local folder, an offline pack (tiny.en, base), or a hub repo (short name or id)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists() or name_or_path.startswith((".", "/", "~")):
        raise ModelError(f"model folder not found: {name_or_path}")
    pack = packs.find(name_or_path)
    if pack is not None:
        return pack
    return hub.download(hub.REPOS.get(name_or_path, name_or_path))


def published_alignment_heads(model: Whisper, name: str) -> None:
    """A folder without alignment heads (its model keeps the default: every head of the
    decoder's upper half) loaded by an openai-whisper model name gets that model's published
    heads."""
    dims = model.dims
    upper = [[layer, head] for layer in range(dims.n_text_layer // 2, dims.n_text_layer)
             for head in range(dims.n_text_head)]  # fmt: skip
    published = published_heads(name, dims)
    if published is not None and model.alignment_heads.tolist() == upper:
        model.alignment_heads = mx.array(published, dtype=mx.int32)
        logger.info("alignment heads of %s: openai-whisper's published table", name)


def load_model(name_or_path: str | Path, dtype: mx.Dtype | None = None) -> WhisperModel:
    """Load a Whisper checkpoint: `tiny.en`, `base`, `large-v3-turbo`, a folder or a repo id."""
    path = resolve(str(name_or_path))
    model = load_whisper(path, dtype)
    published_alignment_heads(model, str(name_or_path))
    tokenizer = load_tokenizer(path, model.dims)
    meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).exists() else {}
    base = meta.get("suppress_tokens")
    begin = meta.get("begin_suppress_tokens") or [tokenizer.encode(" ")[0], tokenizer.eot]
    logger.info("loaded %s (%d parameters)", path, sum(v.size for v in parameters(model).values()))
    return WhisperModel(
        model=model,
        tokenizer=tokenizer,
        path=path,
        suppress_tokens=tokenizer.suppress_tokens(tuple(base) if base is not None else None),
        begin_suppress_tokens=tuple(begin),
        timing_lag=heads_lag(np.asarray(model.alignment_heads).tolist(), model.dims),
    )


def check_language(wm: WhisperModel, language: str | None) -> None:
    """Raise ModelError unless `wm` can decode `language` (None: detected, or English)."""
    if language is None:
        return
    if not wm.tokenizer.multilingual:
        if language != "en":
            raise ModelError(
                f"language {language!r}: this model is English-only; use a multilingual "
                "model (e.g. --model base or large-v3-turbo) or --language en"
            )
        return
    if language not in wm.tokenizer.languages:
        raise ModelError(
            f"unknown language {language!r}: give a code such as en, fr, de, es, ja, zh"
        )
