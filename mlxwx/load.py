"""Load Whisper from an MLX folder, an offline pack or a Hugging Face repo (mlx-community)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from . import hub, packs
from .checkpoint import CONFIG_FILE, META_FILE, TOKENIZER_FILE, _flat, quantize_predicate
from .errors import ModelError
from .models.whisper import ModelDimensions, Whisper
from .tokenizer import Tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WhisperModel:
    """A loaded checkpoint: the network, its vocabulary and its decoding metadata."""

    model: Whisper
    tokenizer: Tokenizer
    path: Path
    suppress_tokens: tuple[int, ...]
    begin_suppress_tokens: tuple[int, ...]

    @property
    def dims(self) -> ModelDimensions:
        return self.model.dims

    def transcribe(self, inputs, options=None, progress=None, vad=None):  # type: ignore[no-untyped-def]
        """`mlxwx.transcribe(inputs, self, options, progress, vad)`: one input or a list,
        batched."""
        from .engine import transcribe

        return transcribe(inputs, self, options, progress, vad)


def default_dtype() -> mx.Dtype:
    """float16 where a GPU runs the model, float32 on CPU (where float16 is slower)."""
    return mx.float16 if mx.default_device() == mx.gpu else mx.float32


def load_weights_file(path: Path) -> dict[str, mx.array]:
    for name in ("weights.safetensors", "weights.npz"):
        if (path / name).exists():
            return dict(mx.load(str(path / name)).items())  # type: ignore[union-attr]
    raise ModelError(f"{path} has no weights.safetensors or weights.npz")


def load_folder(path: str | Path, dtype: mx.Dtype | None = None) -> Whisper:
    """Build Whisper from an MLX folder (ours or mlx-community's), quantized or not."""
    path = Path(path)
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read {path / CONFIG_FILE}: {err}") from None
    dims = ModelDimensions.from_dict(config)
    weights = load_weights_file(path)
    model = Whisper(dims)
    if "quantization" in config:
        q = config["quantization"]
        predicate = quantize_predicate(q["group_size"])
        nn.quantize(
            model,
            q["group_size"],
            q["bits"],
            class_predicate=lambda p, m: predicate(p, m) and f"{p}.scales" in weights,
        )
    # Alignment heads vary in number per checkpoint: take the file's (or keep the default).
    model.alignment_heads = weights.pop("alignment_heads", model.alignment_heads).astype(mx.int32)
    weights["alignment_heads"] = model.alignment_heads
    model.load_weights(list(weights.items()), strict=True)
    dtype = dtype or default_dtype()
    model.set_dtype(dtype, lambda x: mx.issubdtype(x, mx.floating))
    # the sinusoid table too: an array left lazy here belongs to this thread's stream
    mx.eval(model.parameters(), model.encoder._positional_embedding)
    return model


def load_tokenizer(path: Path, dims: ModelDimensions) -> Tokenizer:
    file = path / TOKENIZER_FILE
    if not file.exists():
        file = hub.fetch_tokenizer(dims.n_vocab)
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


def load_model(name_or_path: str, dtype: mx.Dtype | None = None) -> WhisperModel:
    """Load a Whisper checkpoint: `tiny.en`, `base`, `large-v3-turbo`, a folder or a repo id."""
    path = resolve(name_or_path)
    model = load_folder(path, dtype)
    tokenizer = load_tokenizer(path, model.dims)
    meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).exists() else {}
    base = meta.get("suppress_tokens")
    begin = meta.get("begin_suppress_tokens") or [tokenizer.encode(" ")[0], tokenizer.eot]
    logger.info("loaded %s (%d parameters)", path, sum(v.size for _, v in _flat(model)))
    return WhisperModel(
        model=model,
        tokenizer=tokenizer,
        path=path,
        suppress_tokens=tokenizer.suppress_tokens(tuple(base) if base is not None else None),
        begin_suppress_tokens=tuple(begin),
    )
