"""Words timed by a wav2vec2 character CTC model (WhisperX's aligner), in batches.

torch and transformers come with the `align` extra and are imported inside the functions that
need them. Per segment: its text lower-cased and encoded as characters (spaces -> the word
delimiter `|`, characters outside the vocabulary -> the CTC wildcard, `mlxwx.align.ctc`), the
model's log-probabilities over the segment's own audio, the Viterbi path, and words from their
characters' frames. Words the path cannot time (only wildcards, or a segment too short for its
text) get times by interpolation and are flagged.

Batching: segments run through the model several at a time, zero-padded, yet each gets the
frames it would get alone. The first layer of base models' convolutional feature encoder
group-normalises over the whole input: on a GPU the encoder runs over the padded batch and that
norm takes each segment's statistics from its own frames (`_masked_group_norm`); on the CPU
each segment runs the encoder alone. On a GPU the convolutions (the feature encoder's and the
transformer's positional one) run as matmuls over copied windows, channels-last, as torch's
1-D convolutions are slow there (without cuDNN, which MLX's older cuDNN keeps out of the
process, and in half precision even with it); the CPU runs the model's own. The transformer
runs under an attention mask over each row's frames; on a GPU that mask is made directly
(`_encoded`), as transformers' reads it back to the host and so stalls the launches. Each
segment has `_get_feat_extract_output_lengths(its samples)` frames; a frame lasts the product
of the conv strides (320 samples, 20 ms) and frame t starts at t * 20 ms from the segment's
start (WhisperX instead divides the segment's duration by its frame count, ~0.5% longer
frames).

Precision: on a GPU (cuda, mps) the model runs under torch's autocast in float16 by default (its
matmuls and convolutions in half precision, normalisations and the log-softmax in float32), on
the CPU in float32, as MLX's default dtype follows the device; a batch whose half-precision
logits overflow runs again in float32.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..device import check_cudnn, torch_device
from ..errors import ModelError
from ..types import SAMPLE_RATE, CharTime, Result, Segment, Word
from ..weights import hub
from .ctc import (
    INTERPOLATIONS,
    PRECISIONS,
    TokenSpan,
    encode_chars,
    forced_align_batch,
    interpolate_words,
    min_frames,
    words_from_chars,
)
from .words import interpolate as spread_words

logger = logging.getLogger(__name__)

EXTRA_HINT = "word alignment with wav2vec2 needs the align extra: pip install 'mlxwx[align]'"
# Segments run through the model together: on a GPU as many as keep it busy (its launches per
# batch are the same for 8 or 64); on the CPU, which gains nothing from more, few (a batch pads
# to its longest). A batch also pads to at most BATCH_SECONDS of audio, which bounds the memory
# of the feature encoder's first layers (512 channels x 3,200 frames a second, and the second
# layer's windows, 1.5 times as many values, on a GPU for the whole batch at once).
BATCH_SIZE = {"cpu": 8, "gpu": 64}
BATCH_SECONDS = 120.0
# Taps of the positional convolution (128 wide) per matmul on a GPU: its window copy holds this
# many times the transformer's hidden states.
POS_CONV_TAPS = 16
NO_SPACES = frozenset({"ja", "zh"})  # WhisperX's LANGUAGES_WITHOUT_SPACES: a word per character

# WhisperX 3.8 (whisperx/alignment.py). Its torchaudio pipelines (DEFAULT_ALIGN_MODELS_TORCH) are
# given as the Hugging Face ports of the same fairseq checkpoints, since we do not use
# torchaudio: WAV2VEC2_ASR_BASE_960H -> facebook/wav2vec2-base-960h, VOXPOPULI_ASR_BASE_10K_<XX>
# -> facebook/wav2vec2-base-10k-voxpopuli-ft-<xx>.
DEFAULT_ALIGN_MODELS: dict[str, str] = {
    "en": "facebook/wav2vec2-base-960h",
    "fr": "facebook/wav2vec2-base-10k-voxpopuli-ft-fr",
    "de": "facebook/wav2vec2-base-10k-voxpopuli-ft-de",
    "es": "facebook/wav2vec2-base-10k-voxpopuli-ft-es",
    "it": "facebook/wav2vec2-base-10k-voxpopuli-ft-it",
    # DEFAULT_ALIGN_MODELS_HF
    "ja": "jonatasgrosman/wav2vec2-large-xlsr-53-japanese",
    "zh": "jonatasgrosman/wav2vec2-large-xlsr-53-chinese-zh-cn",
    "nl": "jonatasgrosman/wav2vec2-large-xlsr-53-dutch",
    "uk": "Yehor/wav2vec2-xls-r-300m-uk-with-small-lm",
    "pt": "jonatasgrosman/wav2vec2-large-xlsr-53-portuguese",
    "ar": "jonatasgrosman/wav2vec2-large-xlsr-53-arabic",
    "cs": "comodoro/wav2vec2-xls-r-300m-cs-250",
    "ru": "jonatasgrosman/wav2vec2-large-xlsr-53-russian",
    "pl": "jonatasgrosman/wav2vec2-large-xlsr-53-polish",
    "hu": "jonatasgrosman/wav2vec2-large-xlsr-53-hungarian",
    "fi": "jonatasgrosman/wav2vec2-large-xlsr-53-finnish",
    "fa": "jonatasgrosman/wav2vec2-large-xlsr-53-persian",
    "el": "jonatasgrosman/wav2vec2-large-xlsr-53-greek",
    "tr": "mpoyraz/wav2vec2-xls-r-300m-cv7-turkish",
    "da": "saattrupdan/wav2vec2-xls-r-300m-ftspeech",
    "he": "imvladikon/wav2vec2-xls-r-300m-hebrew",
    "vi": "nguyenvulebinh/wav2vec2-base-vi-vlsp2020",
    "ko": "kresnik/wav2vec2-large-xlsr-korean",
    "ur": "kingabzpro/wav2vec2-large-xls-r-300m-Urdu",
    "te": "anuragshas/wav2vec2-large-xlsr-53-telugu",
    "hi": "theainerd/Wav2Vec2-large-xlsr-hindi",
    "ca": "softcatala/wav2vec2-large-xlsr-catala",
    "ml": "gvs/wav2vec2-large-xlsr-malayalam",
    "no": "NbAiLab/nb-wav2vec2-1b-bokmaal-v2",
    "nn": "NbAiLab/nb-wav2vec2-1b-nynorsk",
    "sk": "comodoro/wav2vec2-xls-r-300m-sk-cv8",
    "sl": "anton-l/wav2vec2-large-xlsr-53-slovenian",
    "hr": "classla/wav2vec2-xls-r-parlaspeech-hr",
    "ro": "gigant/romanian-wav2vec2",
    "eu": "stefan-it/wav2vec2-large-xlsr-53-basque",
    "gl": "ifrz/wav2vec2-large-xlsr-galician",
    "ka": "xsway/wav2vec2-large-xlsr-georgian",
    "lv": "jimregan/wav2vec2-large-xlsr-latvian-cv",
    "tl": "Khalsuu/filipino-wav2vec2-l-xls-r-300m-official",
    "sv": "KBLab/wav2vec2-large-voxrex-swedish",
    "id": "cahya/wav2vec2-large-xlsr-indonesian",
}


@dataclass(frozen=True, eq=False)
class Aligner:
    """A loaded wav2vec2 CTC model and what aligning with it needs.

    Attributes:
        model: the `Wav2Vec2ForCTC`, in eval mode on `device`; on a GPU its positional
            convolution computed as matmuls (`_install_matmul_pos_conv`).
        vocab: lower-cased characters -> output columns.
        blank: the CTC blank column (the tokenizer's pad token).
        delimiter: the word delimiter character (`|`), None when the vocabulary has none.
        normalize: whether inputs are scaled to zero mean, unit variance (the model's feature
            extractor's `do_normalize`).
        seconds_per_frame: the model's frame hop (product of its conv strides) in seconds.
        autocast: the torch dtype the model's matmuls and convolutions run in under autocast;
            None: float32.
    """

    model: Any
    vocab: Mapping[str, int]
    blank: int
    delimiter: str | None
    normalize: bool
    seconds_per_frame: float
    device: str
    name: str
    language: str | None = None
    autocast: Any = None

    @property
    def on_cpu(self) -> bool:
        return self.device.split(":")[0] == "cpu"


@dataclass(frozen=True)
class AlignedSegment:
    """One segment's words (seconds on the file's timeline) and, if asked, its characters."""

    words: tuple[Word, ...]
    chars: tuple[CharTime, ...] | None = None


def _imports() -> tuple[Any, Any]:
    """torch and transformers, or a one-line ModelError naming the extra."""
    try:
        import torch
        import transformers
    except ImportError as err:
        raise ModelError(EXTRA_HINT) from err
    return torch, transformers


HUB_FILES = [
    "config.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "model.safetensors",
]
LEGACY_WEIGHTS = "pytorch_model.bin"  # fetched only for a repo without model.safetensors


def model_folder(name: str, offline: bool) -> Path:
    """The folder of model `name`: a local folder as is, a Hugging Face repo from the cache, else
    downloaded (one request that fails at once without a network, not transformers' per-file
    retries) unless `offline`."""
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    if name.startswith((".", "/", "~")) or Path(name).exists():
        raise ModelError(f"alignment model folder not found: {name}")
    hint = "; pick another with --align-model, or use --align whisper"
    folder = hub.download(name, hint, HUB_FILES, local_only=offline)
    if (folder / "model.safetensors").exists():
        return folder
    return hub.download(name, hint, [*HUB_FILES, LEGACY_WEIGHTS], local_only=offline)


def _lower_vocab(vocab: Mapping[str, int]) -> dict[str, int]:
    """Vocabulary keys lower-cased (WhisperX's dictionary); a key already lower-case wins."""
    out = {k.lower(): v for k, v in vocab.items() if k != k.lower()}
    out.update({k: v for k, v in vocab.items() if k == k.lower()})
    return out


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")


def autocast_dtype(torch: Any, device: str, precision: str = "auto") -> Any:
    """The dtype autocast runs the model in on `device` for `precision` (`PRECISIONS`), None
    for float32: "auto" is float16 on a GPU and float32 on the CPU. float32 too where this
    torch has no autocast for the device (said in the log)."""
    _check_precision(precision)
    kind = torch.device(device).type
    if precision == "auto":
        precision = "float32" if kind == "cpu" else "float16"
    if precision == "float32":
        return None
    dtype = getattr(torch, precision)
    try:  # older torch raises for a device it has no autocast for, or warns and turns it off
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            torch.autocast(kind, dtype=dtype)
    except (RuntimeError, UserWarning):
        logger.info(
            "this torch has no %s autocast on %s: the aligner runs in float32", precision, kind
        )
        return None
    return dtype


def load_aligner(
    language: str | None,
    model_name: str | None = None,
    device: str | None = None,
    *,
    local_files_only: bool = False,
    precision: str = "auto",
) -> Aligner:
    """The wav2vec2 CTC aligner for `language`: `model_name` (a local folder or a Hugging Face
    repo id) or the language's default (`DEFAULT_ALIGN_MODELS`).

    The hub is not asked with `local_files_only` or `HF_HUB_OFFLINE=1`. device: None picks
    cuda, mps or cpu. precision: see `autocast_dtype`. Raises a one-line ModelError for a
    language without a default model, a model that cannot be loaded, or a missing `align` extra.
    """
    _check_precision(precision)  # before the model is fetched
    name = model_name or DEFAULT_ALIGN_MODELS.get(language or "")
    if name is None:
        raise ModelError(
            f"no default wav2vec2 alignment model for language {language!r}: "
            "pass one with --align-model, or use --align whisper"
        )
    if not all(importlib.util.find_spec(m) for m in ("torch", "transformers")):
        _imports()  # the extra's one-line error
    from huggingface_hub import constants

    offline = local_files_only or bool(constants.HF_HUB_OFFLINE)
    folder = model_folder(name, offline)  # first: a model not at hand costs no torch import
    torch, transformers = _imports()
    processor, model = _from_folder(transformers, folder, name)
    if getattr(model.config, "add_adapter", False):
        raise ModelError(f"{name!r} has an adapter stack, which the aligner does not support")
    device = device or torch_device(torch)
    check_cudnn(torch, device, "aligning")
    tokenizer = processor.tokenizer
    blank = model.config.pad_token_id
    blank = tokenizer.pad_token_id if blank is None else blank
    delimiter = getattr(tokenizer, "word_delimiter_token", None)
    aligner = Aligner(
        model=model.float().to(device).eval(),  # float32: some checkpoints are saved in float16
        vocab=_lower_vocab(tokenizer.get_vocab()),
        blank=int(blank or 0),
        delimiter=delimiter,
        normalize=bool(getattr(processor.feature_extractor, "do_normalize", False)),
        seconds_per_frame=math.prod(model.config.conv_stride) / SAMPLE_RATE,
        device=device,
        name=name,
        language=language,
        autocast=autocast_dtype(torch, device, precision),
    )
    if not aligner.on_cpu:
        _install_matmul_pos_conv(torch, aligner.model)
    return aligner


def _from_folder(transformers: Any, folder: Path, name: str) -> tuple[Any, Any]:
    """The processor and `Wav2Vec2ForCTC` of `folder`, loaded without transformers' progress
    bars (the library does not print); a one-line ModelError when they cannot be."""
    bars = transformers.utils.logging
    shown = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()
    try:
        processor = transformers.Wav2Vec2Processor.from_pretrained(folder)
        return processor, transformers.Wav2Vec2ForCTC.from_pretrained(folder)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:100]
        raise ModelError(
            f"cannot load the alignment model {name!r} ({reason}); "
            "pick another with --align-model, or use --align whisper"
        ) from None
    finally:
        if shown:
            bars.enable_progress_bar()


def frame_counts(aligner: Aligner, lengths: Sequence[int]) -> list[int]:
    """Emission frames of audio of `lengths` samples (0 for audio too short for one frame)."""
    torch, _ = _imports()
    if not lengths:
        return []
    n = aligner.model._get_feat_extract_output_lengths(torch.tensor(list(lengths)))
    return [max(0, int(k)) for k in n]


def _normalized(torch: Any, batch: Any, samples: list[int]) -> Any:
    """Each row of a zero-padded (B, S) float32 batch at zero mean and unit variance over its
    own `samples` (as `Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm`), zeros past them; on
    the batch's device (a GPU normalises a whole batch in a few launches)."""
    n = torch.tensor(samples, dtype=batch.dtype)[:, None].to(batch.device)
    valid = torch.arange(batch.shape[1], device=batch.device)[None] < n
    centred = (batch - batch.sum(dim=1, keepdim=True) / n) * valid
    return centred * torch.rsqrt(centred.square().sum(dim=1, keepdim=True) / n + 1e-7)


def emissions(aligner: Aligner, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
    """(T_i, C) float32 log-probabilities of each (samples,) 16 kHz segment, computed as one
    batch; T_i from the segment's own length, and the same frames as the segment alone."""
    torch, _ = _imports()
    return _finish(torch, aligner, audios, _logits(torch, aligner, audios, aligner.autocast))


def _finish(
    torch: Any, aligner: Aligner, audios: Sequence[np.ndarray], started: tuple[Any, list[int]]
) -> list[np.ndarray]:
    """`emissions` of a batch whose `_logits` were `started` (on a GPU, maybe still running:
    this waits for them)."""
    logits, lengths = started
    if aligner.autocast is not None and not bool(torch.isfinite(logits).all()):
        logger.warning(
            "wav2vec2 overflowed in %s: the batch runs again in float32", aligner.autocast
        )
        logits, lengths = _logits(torch, aligner, audios, None)
    logp = torch.log_softmax(logits, dim=-1).cpu().numpy()
    return [logp[i, :n] for i, n in enumerate(lengths)]


def _logits(
    torch: Any, aligner: Aligner, audios: Sequence[np.ndarray], dtype: Any
) -> tuple[Any, list[int]]:
    """(B, T, C) float32 logits of a batch, run under autocast in `dtype` (None: float32), and
    each segment's frame count. Nothing here waits for the device: on a GPU the logits may
    still be computing when this returns (the frame counts come from the host's lengths)."""
    w2v, device = aligner.model.wav2vec2, aligner.device
    counts = frame_counts(aligner, [len(a) for a in audios])
    lengths = torch.tensor(counts).to(device)
    kind = torch.device(device).type
    with torch.inference_mode(), torch.autocast(kind, dtype=dtype, enabled=dtype is not None):
        inputs = [torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in audios]
        x = _feature_frames(
            torch, w2v.feature_extractor, inputs, lengths, aligner.on_cpu, aligner.normalize
        )
        mask = torch.arange(x.shape[1], device=device)[None] < lengths[:, None]
        hidden, _ = w2v.feature_projection(x)
        hidden = _encoded(torch, w2v.encoder, hidden, mask, aligner.on_cpu)
        logits = aligner.model.lm_head(hidden).float()
    return logits, counts


def _feature_frames(
    torch: Any,
    encoder: Any,
    inputs: list[Any],
    lengths: Any,
    one_by_one: bool,
    normalize: bool = False,
) -> Any:
    """The feature encoder's frames of each (samples,) float32 input, (B, T, C), zero past its
    own `lengths` (B,), the inputs first `_normalized` when the model wants it: for the batch at
    once (`_features`, its convolutions as matmuls; on a GPU, where each layer is then a few
    launches), or `one_by_one`, the encoder itself on each input (on the CPU, where a batch's
    first-layer output, 512 channels x 3,200 frames a second, falls out of the caches and runs
    slower)."""
    pad, device = torch.nn.utils.rnn.pad_sequence, lengths.device
    samples = [len(x) for x in inputs]
    if one_by_one:
        rows = [x[None].to(device) for x in inputs]
        if normalize:
            rows = [_normalized(torch, r, [n]) for r, n in zip(rows, samples, strict=True)]
        return pad([encoder(r)[0].T for r in rows], batch_first=True)
    batch = pad(inputs, batch_first=True).to(device)
    if normalize:
        batch = _normalized(torch, batch, samples)
    feats = _features(torch, encoder, batch, samples)
    return feats * (torch.arange(feats.shape[1], device=device)[None] < lengths[:, None])[..., None]


def _features(torch: Any, encoder: Any, batch: Any, samples: list[int]) -> Any:
    """The convolutional feature encoder's (B, T, C) output for a zero-padded batch (B, S) of
    inputs `samples` long, each input's frames as it gets them alone, channels-last, each conv
    a matmul over its input's windows (`_conv_matmul`). A group norm (base models' first layer)
    normalises over the whole input, so its statistics come from each input's own frames here;
    every other step computes a frame from its own window of the layer below, and the frames an
    input has alone never reach into its padding."""
    x, frames = batch[..., None], samples
    for layer in encoder.conv_layers:
        conv = layer.conv
        frames = [(n - conv.kernel_size[0]) // conv.stride[0] + 1 for n in frames]
        y = _conv_matmul(torch, conv, x)
        norm = getattr(layer, "layer_norm", None)
        if isinstance(norm, torch.nn.GroupNorm):
            y = _masked_group_norm(torch, norm, y, frames)
        elif norm is not None:
            y = norm(y)  # a LayerNorm over channels: the last axis here
        x = layer.activation(y)  # elementwise, as all of transformers' ACT2FN
    return x


def _encoded(torch: Any, encoder: Any, hidden: Any, mask: Any, on_cpu: bool) -> Any:
    """The transformer's (B, T, D) output for `hidden` (B, T, D) and its frames' (B, T) boolean
    `mask`. Off the CPU, where `_own_encoder` holds, its forward computed here with the mask
    made for the keys directly: transformers' own reads the mask back to the host (to skip it
    where nothing is padded), which stops the host until the GPU has run the batch's feature
    encoder, instead of queueing the transformer's launches after it."""
    if on_cpu or not _own_encoder(encoder):
        return encoder(hidden, attention_mask=mask).last_hidden_state
    stable = _stable(encoder)
    hidden = hidden * mask[..., None]  # padded frames at zero, as the encoder sets them
    hidden = hidden + encoder.pos_conv_embed(hidden)
    if not stable:
        hidden = encoder.layer_norm(hidden)
    keys = mask[:, None, None, :]  # (B, 1, 1, T): every query attends to its row's frames
    for layer in encoder.layers:
        out = layer(hidden, attention_mask=keys)
        hidden = out[0] if isinstance(out, tuple) else out
    return encoder.layer_norm(hidden) if stable else hidden


def _stable(encoder: Any) -> bool:
    """Whether `encoder` normalises after its layers (large models' "stable layer norm")."""
    from transformers.models.wav2vec2 import modeling_wav2vec2 as hf

    return type(encoder) is hf.Wav2Vec2EncoderStableLayerNorm


def _own_encoder(encoder: Any) -> bool:
    """Whether `_encoded` computes `encoder`'s forward: transformers' own class of either kind,
    in eval mode (no dropout, no layer drop), attending through torch's SDPA (which takes a
    boolean mask that broadcasts), its layers transformers' own."""
    from transformers.models.wav2vec2 import modeling_wav2vec2 as hf

    kinds = (hf.Wav2Vec2Encoder, hf.Wav2Vec2EncoderStableLayerNorm)
    layers = (hf.Wav2Vec2EncoderLayer, hf.Wav2Vec2EncoderLayerStableLayerNorm)
    return (
        type(encoder) in kinds
        and not encoder.training
        and getattr(encoder.config, "_attn_implementation", None) == "sdpa"
        and all(type(layer) in layers for layer in encoder.layers)
        and set(dict(encoder.named_children()))
        == {"pos_conv_embed", "layer_norm", "dropout", "layers"}
    )


def _conv_matmul(torch: Any, conv: Any, x: Any) -> Any:
    """`conv` (a `Conv1d` without padding, dilation or groups, as the feature encoder's) of
    channels-last (B, T, C) `x`, as one matmul over its windows: (B, T', O). A window is laid
    out tap-major, (k, C), a run of `x`: copying the windows moves whole runs, and windows that
    do not overlap (kernel = stride) are already in place. Copied into one contiguous matrix, as
    torch's linear adds the bias in the matmul (rounded once) only for a contiguous input."""
    k, s = conv.kernel_size[0], conv.stride[0]
    windows = _to_autocast(torch, x).unfold(1, k, s).transpose(2, 3)  # (B, T', k, C), a view
    weight = conv.weight.transpose(1, 2).reshape(conv.out_channels, -1)  # (O, k * C)
    return torch.nn.functional.linear(windows.flatten(2).contiguous(), weight, conv.bias)


def _to_autocast(torch: Any, x: Any) -> Any:
    """`x` in the dtype autocast runs matmuls in, where it is on (torch >= 2.4 says which): its
    windows are then copied in that dtype, not copied in float32 and cast; the same values."""
    kind = x.device.type
    if hasattr(torch, "get_autocast_dtype") and torch.is_autocast_enabled(kind):
        return x.to(torch.get_autocast_dtype(kind))
    return x


def _masked_group_norm(torch: Any, norm: Any, x: Any, frames: list[int]) -> Any:
    """`norm` (a `GroupNorm`) of channels-last (B, T, C) `x`, each row's statistics over its
    first `frames` frames only; in float32, as CUDA's autocast runs group norms. The statistics
    one row at a time (a pass over its frames each), the normalisation in one pass over the
    batch."""
    c, groups = x.shape[-1], norm.num_groups
    rows = [x[i, :n].float().reshape(n, groups, c // groups) for i, n in enumerate(frames)]
    stats = [torch.var_mean(r, dim=(0, 2), unbiased=False) for r in rows]
    var, mean = torch.stack([v for v, _ in stats]), torch.stack([m for _, m in stats])
    scale = torch.rsqrt(var + norm.eps).repeat_interleave(c // groups, dim=1) * norm.weight
    shift = norm.bias - mean.repeat_interleave(c // groups, dim=1) * scale
    return torch.addcmul(shift[:, None], x, scale[:, None])  # float32 out, no float copy of x


def _install_matmul_pos_conv(torch: Any, model: Any) -> bool:
    """Replaces the positional convolution of `model`'s transformer (a `Wav2Vec2ForCTC`'s) by
    the same computed as matmuls (`_pos_conv`), where that replicates it exactly
    (`_replicable`); whether it did. For a GPU: on the CPU torch's conv is as fast."""
    encoder = model.wav2vec2.encoder
    if not _replicable(torch, encoder.pos_conv_embed):
        logger.info("the aligner's positional convolution stays torch's: a variant not replicated")
        return False
    encoder.pos_conv_embed = _matmul_pos_conv_type(torch)(encoder.pos_conv_embed)
    return True


def _replicable(torch: Any, module: Any) -> bool:
    """Whether `_pos_conv` computes `module` exactly: transformers' own
    `Wav2Vec2PositionalConvEmbedding` (not, e.g., Hubert's with `conv_pos_batch_norm`), nothing
    added to it, its conv's weight norm a parametrization (as transformers builds it with torch
    >= 2.1: the weight is computed where it is read; the legacy `weight_norm` hook computes it
    only when the conv itself runs)."""
    from transformers.models.wav2vec2 import modeling_wav2vec2 as hf

    conv = getattr(module, "conv", None)
    return (
        type(module) is hf.Wav2Vec2PositionalConvEmbedding
        and set(dict(module.named_children())) == {"conv", "padding", "activation"}
        and type(module.padding) is hf.Wav2Vec2SamePadLayer
        and isinstance(conv, torch.nn.Conv1d)
        and torch.nn.utils.parametrize.is_parametrized(conv, "weight")
        and (conv.stride, conv.dilation, conv.padding_mode) == ((1,), (1,), "zeros")
        and isinstance(conv.padding, tuple)
    )


@functools.cache
def _matmul_pos_conv_type(torch: Any) -> Any:
    """The module class that replaces the positional convolution (made here, as torch is
    imported only when the aligner is used)."""

    class MatmulPositionalConv(torch.nn.Module):
        """`Wav2Vec2PositionalConvEmbedding`'s forward with its conv as matmuls. It holds the
        same submodules under the same names: the model's state dict keeps its keys."""

        def __init__(self, module: Any) -> None:
            super().__init__()
            self.conv = module.conv
            self.padding = module.padding
            self.activation = module.activation

        def forward(self, hidden: Any) -> Any:
            """(B, T, D) -> (B, T, D), as the replaced module's."""
            y = _pos_conv(torch, self.conv, self.padding.num_pad_remove, hidden)
            return self.activation(y)  # elementwise, as all of transformers' ACT2FN

    return MatmulPositionalConv


def _pos_conv(torch: Any, conv: Any, drop: int, hidden: Any) -> Any:
    """`conv` (a grouped, zero-padded, stride-1 `Conv1d`) of channels-last (B, T, D) `hidden`,
    less its last `drop` output frames (those the same-pad layer drops), as batched matmuls over
    POS_CONV_TAPS taps at a time: each group's windows of those taps, copied tap-major, times
    its weights; the parts summed in float32 and rounded once, as the conv rounds its sum."""
    weight = conv.weight  # (D, D / G, K): the weight norm computed once a call, as the conv does
    out_ch, per_group, k = weight.shape
    groups, (pad,) = conv.groups, conv.padding
    b, t, _ = hidden.shape
    frames = t + 2 * pad - k + 1 - drop
    x = torch.nn.functional.pad(_to_autocast(torch, hidden), (0, 0, pad, pad))
    x = x.unflatten(2, (groups, per_group))  # (B, T + 2 pad, G, D / G)
    w = weight.unflatten(0, (groups, -1)).permute(0, 3, 2, 1)  # (G, K, D / G in, D / G out)
    total = hidden.new_zeros((groups, b * frames, out_ch // groups), dtype=torch.float32)
    for j in range(0, k, POS_CONV_TAPS):
        taps = min(POS_CONV_TAPS, k - j)
        windows = x[:, j : j + frames + taps - 1].unfold(1, taps, 1)  # (B, T', G, D/G, taps)
        windows = windows.permute(2, 0, 1, 4, 3).reshape(groups, b * frames, -1)
        part = torch.bmm(windows, w[:, j : j + taps].flatten(1, 2))  # (G, B T', D / G)
        total += part
    y = total.unflatten(1, (b, frames)).permute(1, 2, 0, 3).flatten(2)  # (B, T', D)
    return (y if conv.bias is None else y + conv.bias).to(part.dtype)


def _timed(
    aligner: Aligner,
    segments: Sequence[tuple[np.ndarray, float, str]],
    encoded: Sequence[tuple[list[int], list[int]]],
    batch_size: int | None,
) -> dict[int, list[TokenSpan] | None]:
    """Token spans of each segment that has tokens and frames enough for them, batched by
    length (`batches`). The next batch's model run is started before this batch's paths are
    found, so that a GPU computes it while the host aligns; at most two batches' emissions in
    memory. (Finding the paths on a second thread instead made the model's launches wait for
    the GIL: slower.) The first batch's run and the last batch's paths overlap nothing, so on a
    GPU the shortest batch runs first and the others from the longest down: the last is the
    second shortest (a trellis grows with frames times characters)."""
    samples = [len(audio) for audio, _, _ in segments]
    size = batch_size or BATCH_SIZE["cpu" if aligner.on_cpu else "gpu"]
    todo = batches(_alignable(aligner, segments, encoded, samples), samples, size)
    if not todo:
        return {}
    if not aligner.on_cpu:
        todo = todo[:1] + todo[:0:-1]
    torch, _ = _imports()
    audios = [[segments[i][0] for i in batch] for batch in todo]
    out: dict[int, list[TokenSpan] | None] = {}
    started = _logits(torch, aligner, audios[0], aligner.autocast)
    for k, batch in enumerate(todo):
        logps = _finish(torch, aligner, audios[k], started)
        if k + 1 < len(todo):
            started = _logits(torch, aligner, audios[k + 1], aligner.autocast)
        spans = forced_align_batch(logps, [encoded[i][0] for i in batch], aligner.blank)
        out.update(zip(batch, spans, strict=True))
    return out


def _alignable(
    aligner: Aligner,
    segments: Sequence[tuple[np.ndarray, float, str]],
    encoded: Sequence[tuple[list[int], list[int]]],
    samples: list[int],
) -> list[int]:
    """The segments with tokens and frames enough for them; a warning for each with tokens
    and too few frames."""
    counts = frame_counts(aligner, samples)
    fits = []
    for i, (tokens, _) in enumerate(encoded):
        if tokens and counts[i] >= min_frames(tokens):
            fits.append(i)
        elif tokens:
            logger.warning("segment at %.2f s too short to align its text", segments[i][1])
    return fits


def batches(items: Sequence[int], lengths: Sequence[int], size: int) -> list[list[int]]:
    """`items` (indices into `lengths`, in samples) from shortest to longest in batches of at
    most `size` that pad to at most BATCH_SECONDS of audio."""
    out: list[list[int]] = []
    limit = BATCH_SECONDS * SAMPLE_RATE
    for i in sorted(items, key=lambda i: lengths[i]):
        if not out or len(out[-1]) >= size or (len(out[-1]) + 1) * lengths[i] > limit:
            out.append([])
        out[-1].append(i)
    return out


def align_segments(
    aligner: Aligner,
    segments: Sequence[tuple[np.ndarray, float, str]],
    interpolate: str = "nearest",
    return_char_alignments: bool = False,
    batch_size: int | None = None,
    language: str | None = None,
) -> list[AlignedSegment]:
    """Words of each (audio, start, text) segment timed by `aligner`: audio (samples,) float32
    at 16 kHz, start its offset in seconds on the file's timeline.

    interpolate: how words the CTC path cannot time get times, WhisperX's methods within the
    segment: "nearest" or "linear" (`ctc.interpolate_words`; when no word of the segment is
    timed, the words share the segment by characters), or "ignore" (start and end None).
    batch_size: segments run through the model together, at most (`batches`); None: BATCH_SIZE
    for the aligner's device.
    """
    if interpolate not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolate!r}; choose from {INTERPOLATIONS}")
    by_char = (language or aligner.language) in NO_SPACES
    encoded = [encode_chars(t, aligner.vocab, aligner.delimiter, by_char) for _, _, t in segments]
    spans = _timed(aligner, segments, encoded, batch_size)
    out = []
    for i, (audio, start, text) in enumerate(segments):
        tokens, positions = encoded[i]
        words, chars = words_from_chars(
            text,
            tokens,
            positions,
            spans.get(i),
            aligner.seconds_per_frame,
            start,
            by_char,
            with_chars=return_char_alignments,
        )
        if interpolate != "ignore" and any(w.start is None for w in words):
            if any(w.start is not None for w in words):
                words = interpolate_words(words, interpolate)
            else:
                words = spread_words(words, Segment(start, start + len(audio) / SAMPLE_RATE, text))
        out.append(AlignedSegment(tuple(words), tuple(chars) if return_char_alignments else None))
    return out


def align_result(
    aligner: Aligner,
    result: Result,
    audio: np.ndarray,
    interpolate: str = "nearest",
    return_char_alignments: bool = False,
    batch_size: int | None = None,
) -> list[Segment]:
    """The segments of `result` with their words timed by `aligner` from the input's `audio`
    ((samples,) float32, 16 kHz; each segment reads its own stretch of it, a view, not a copy)."""
    stretches = [
        (audio[round(s.start * SAMPLE_RATE) : round(s.end * SAMPLE_RATE)], s.start, s.text)
        for s in result.segments
    ]
    aligned = align_segments(
        aligner, stretches, interpolate, return_char_alignments, batch_size, result.language
    )
    return [
        replace(s.with_words(a.words), chars=a.chars or ())
        for s, a in zip(result.segments, aligned, strict=True)
    ]
