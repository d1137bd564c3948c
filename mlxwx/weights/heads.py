"""Whisper's alignment heads: the decoder cross-attention heads whose attention follows the audio
token by token (used to time words, `mlxwx.asr.timing`).

A model folder carries its own (`alignment_heads` in its weights: the offline packs,
mlx-community's checkpoints and our converted ones). For a folder without them, loaded by one of
openai-whisper's model names, `PUBLISHED` holds the heads openai-whisper publishes for that model
(its `_ALIGNMENT_HEADS`: base85 gzip dumps of (n_text_layer, n_text_head) boolean masks).

Some models' heads attend each token a steady while after it is spoken. `LAGS` holds, for the
published heads of a model measured against known word times, the seconds by which they trail
(bench/RESULTS.md, session 20): tiny.en's run 74 ms late at the median on synthconv (exact
times) and 112 ms on jfk (pocketsphinx), so its token times are moved 0.1 s earlier; base's
run early by amounts that differ from corpus to corpus (-32 to -169 ms), so it keeps its own.
Models not measured (no weights offline) keep theirs.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import numpy as np

from ..models.whisper import ModelDimensions

_LARGE_V2 = b"ABzY8zd+h!0{>%R7=D0pU<_bnWW*tkYAhobTNnu$jnkEkXqp)j;w1Tzk)UH3X%SZd&fFZ2fC2yj"
_LARGE_V3 = b"ABzY8gWO1E0{>%R7(9S+Kn!D~%ngiGaR?*L!iJG9p-nab0JQ=-{D1-g00"
_TURBO = b"ABzY8j^C+e0{>%RARaKHP%t(lGR*)0g!tONPyhe`"
PUBLISHED = {
    "tiny.en": b"ABzY8J1N>@0{>%R00Bk>$p{7v037`oCl~+#00",
    "tiny": b"ABzY8bu8Lr0{>%RKn9Fp%m@SkK7Kt=7ytkO",
    "base.en": b"ABzY8;40c<0{>%RzzG;p*o+Vo09|#PsxSZm00",
    "base": b"ABzY8KQ!870{>%RzyTQH3`Q^yNP!>##QT-<FaQ7m",
    "small.en": b"ABzY8>?_)10{>%RpeA61k&I|OI3I$65C{;;pbCHh0B{qLQ;+}v00",
    "small": b"ABzY8DmU6=0{>%Rpa?J`kvJ6qF(V^F86#Xh7JUGMK}P<N0000",
    "medium.en": b"ABzY8usPae0{>%R7<zz_OvQ{)4kMa0BMw6u5rT}kRKX;$NfYBv00*Hl@qhsU00",
    "medium": b"ABzY8B0Jh+0{>%R7}kK1fFL7w6%<-Pf*t^=N)Qr&0RR9",
    "large-v1": b"ABzY8r9j$a0{>%R7#4sLmoOs{s)o3~84-RPdcFk!JR<kSfC2yj",
    "large-v2": _LARGE_V2,
    "large-v3": _LARGE_V3,
    "large-v3-turbo": _TURBO,
    "turbo": _TURBO,
}


def alignment_pairs(value: Any, dims: ModelDimensions) -> list[list[int]]:
    """[[layer, head], ...] from pairs, a JSON string of pairs, a (n_text_layer, n_text_head)
    boolean mask, or openai-whisper's base85 gzip dump of that mask (`_ALIGNMENT_HEADS`)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            raw = gzip.decompress(base64.b85decode(text))
            value = np.frombuffer(raw, dtype=bool).copy()
            if value.size != dims.n_text_layer * dims.n_text_head:
                raise ValueError(
                    f"alignment-head dump holds {value.size} flags, the decoder "
                    f"has {dims.n_text_layer}x{dims.n_text_head} heads"
                )
            value = value.reshape(dims.n_text_layer, dims.n_text_head)
    array = np.asarray(value)
    if array.dtype == bool:
        if array.shape != (dims.n_text_layer, dims.n_text_head):
            raise ValueError(
                f"alignment-head mask shape {array.shape} != "
                f"{(dims.n_text_layer, dims.n_text_head)}"
            )
        array = np.argwhere(array)
    pairs = [[int(layer), int(head)] for layer, head in array.reshape(-1, 2)]
    bad = [p for p in pairs if not (0 <= p[0] < dims.n_text_layer and 0 <= p[1] < dims.n_text_head)]
    if bad:
        raise ValueError(
            f"alignment heads out of range for {dims.n_text_layer} layers x "
            f"{dims.n_text_head} heads: {bad[:4]}"
        )
    return pairs


LAGS = {"tiny.en": 0.1}


def heads_lag(heads: list[list[int]], dims: ModelDimensions) -> float:
    """Seconds by which `heads` (a model's alignment heads) trail the speech: `LAGS`' entry of
    the model whose published heads they are (the same decoder shape and heads), else 0."""
    for name, lag in LAGS.items():
        if published_heads(name, dims) == heads:
            return lag
    return 0.0


def published_heads(name: str, dims: ModelDimensions) -> list[list[int]] | None:
    """openai-whisper's alignment heads for model `name`, if it publishes them and they fit
    `dims` (a folder of another shape under that name gets None)."""
    dump = PUBLISHED.get(name)
    if dump is None:
        return None
    try:
        return alignment_pairs(dump, dims)
    except ValueError:
        return None
