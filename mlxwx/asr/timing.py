"""Whisper's own token timing: cross-attention of the alignment heads, DTW over tokens x frames.

For the windows of a batch together, the decoder runs teacher-forced over each window's final
text tokens (`<|sot|> [lang task] <|notimestamps|> text <|eot|>`, as openai-whisper's
`find_alignment`), with the encoder features the window was decoded from. The alignment heads'
attention scores over the window's frames of audio are softmaxed, standardised over tokens,
median-filtered along time and averaged over heads; DTW through the negated matrix gives the
frame at which each token starts (`TokenTimes`). `mlxwx.align.whisper` builds words from them.

The fused attention returns no weights, so the alignment heads' scores are computed explicitly
here (one extra matmul per layer holding alignment heads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import mlx.core as mx
import numpy as np

from ..audio import N_SAMPLES_PER_TOKEN, TOKENS_PER_SECOND, window_mel
from ..dtw import dtw_batch, median_filter
from ..kernels import dtw_starts_kernel, kernel_backend
from ..models.whisper import split_heads
from ..ops import logsumexp, rows_of
from ..ops import scores as attention_scores
from ..types import Result, TokenTimes, Window
from .decoding import CrossKV, encode, take_kv
from .model import WhisperModel

MEDFILT_WIDTH = 7  # openai-whisper's median filter along time, in 20 ms audio tokens
PAD_TO = 16  # sequence lengths are rounded up to this: fewer shapes for MLX to compile for
# Work of the teacher-forced pass bounded by bytes, on a CPU (which gains little from larger
# batches, and whose process's peak memory follows these) and on a GPU (which needs the batch).
# Logits: computed for as many token positions at a time as fit. Scores: windows timed together
# are as many as keep the attention scores (all heads of a layer, and the alignment heads kept)
# within the bytes.
LOGITS_BYTES = {"cpu": 1 << 24, "gpu": 1 << 28}
SCORES_BYTES = {"cpu": 1 << 26, "gpu": 1 << 31}


def _budget(table: dict[str, int]) -> int:
    return table["cpu" if mx.default_device() == mx.cpu else "gpu"]


def segment_tokens(wm: WhisperModel, window: Window) -> list[list[int]]:
    """The ordinary tokens of each of a window's segments (timestamps and specials dropped)."""
    eot = wm.tokenizer.eot
    return [[t for t in s.tokens if t < eot] for s in window.segments]


def heads_by_layer(wm: WhisperModel) -> dict[int, list[int]]:
    """The alignment heads, {decoder layer: [heads]}."""
    out: dict[int, list[int]] = {}
    for layer, head in np.asarray(wm.model.alignment_heads).reshape(-1, 2).tolist():
        out.setdefault(int(layer), []).append(int(head))
    return out


def forced_scores(
    wm: WhisperModel, cross_kv: CrossKV, sequences: Sequence[Sequence[int]]
) -> tuple[mx.array, list[mx.array]]:
    """Teacher-forced pass of `sequences` (right-padded with eot to a multiple of `PAD_TO`, so
    that batches reuse a few shapes) over encoded windows, given by their cross-attention keys
    and values (`TextDecoder.cross_kv`): the alignment heads' scaled cross-attention scores
    (B, heads, L, n_audio_ctx), and per sequence the float32 log-probability of each of its
    tokens after the first."""
    dec, heads = wm.model.decoder, heads_by_layer(wm)
    length = -(-max(len(s) for s in sequences) // PAD_TO) * PAD_TO
    tokens = mx.array([[*s, *[wm.tokenizer.eot] * (length - len(s))] for s in sequences])
    x = dec.token_embedding(tokens) + dec.positional_embedding[:length]
    q, k = mx.arange(length)[:, None], mx.arange(length)[None, :]
    mask = mx.where(k <= q, 0.0, -mx.inf).astype(x.dtype)
    scores = []
    for layer, block in enumerate(dec.blocks):
        x = x + block.attn(block.attn_ln(x), mask)
        h = block.cross_attn_ln(x)
        keys, values = cross_kv[layer]
        x = x + block.cross_attn.attend(h, keys, values, None)
        if layer in heads:
            query = split_heads(block.cross_attn.query(h), dec.n_head)
            pick = mx.array(heads[layer])
            scale = query.shape[-1] ** -0.5
            heads_keys = rows_of(keys, (slice(None), pick))
            scores.append(attention_scores(query[:, pick] * scale, heads_keys))
        x = block.mlp(x)
    return mx.concatenate(scores, axis=1).astype(mx.float32), token_logprobs(wm, x, sequences)


def token_logprobs(
    wm: WhisperModel, x: mx.array, sequences: Sequence[Sequence[int]]
) -> list[mx.array]:
    """Per sequence, the log-probability of each of its tokens after the first, from the
    decoder's last hidden states `x` (B, L, D): logits only at the positions that predict a
    token of a sequence (not at padding), as many positions at a time as fit in LOGITS_BYTES."""
    dec = wm.model.decoder
    rows = [(b, t) for b, s in enumerate(sequences) for t in range(len(s) - 1)]
    flat = dec.ln(x[mx.array([b for b, _ in rows]), mx.array([t for _, t in rows])])
    targets = mx.array([s[t + 1] for s in sequences for t in range(len(s) - 1)])
    group = max(1, _budget(LOGITS_BYTES) // (wm.dims.n_vocab * 4))
    picked = []
    for at in range(0, len(rows), group):
        logits = dec.token_embedding.as_linear(flat[at : at + group]).astype(mx.float32)
        chosen = mx.take_along_axis(logits, targets[at : at + group, None], axis=-1)[:, 0]
        picked.append(chosen - logsumexp(logits, axis=-1))
        mx.eval(picked[-1])
    out = mx.concatenate(picked)
    ends = np.cumsum([len(s) - 1 for s in sequences]).tolist()
    return [out[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def token_starts(matrices: list[np.ndarray]) -> list[np.ndarray]:
    """For each (rows, frames) attention matrix, the seconds at which each row starts on the DTW
    path through it (openai-whisper's jump times); the paths are found together."""
    out = []
    for rows, frames in dtw_batch([-m for m in matrices]):  # swept in float64
        jumps = np.diff(rows, prepend=-1).astype(bool)
        out.append(frames[jumps] / TOKENS_PER_SECOND)
    return out


def window_matrix(scores: np.ndarray, begin: int, rows: int, frames: int) -> np.ndarray:
    """A window's (rows, frames) DTW matrix from its heads' scores (heads, L, n_audio_ctx):
    softmax over the frames holding audio, standardised over the sequence's tokens, median
    filtered along time, averaged over heads; rows [begin, begin + rows). A head at a time:
    the median filter's copy is (rows, frames, width)."""
    total = np.zeros((rows, frames), np.float32)
    for head in scores:
        w = head[: begin + rows + 1, :frames]
        w = np.exp(w - w.max(axis=-1, keepdims=True))
        w /= w.sum(axis=-1, keepdims=True)
        w = (w - w.mean(axis=-2, keepdims=True)) / (w.std(axis=-2, keepdims=True) + 1e-10)
        total += median_filter(w[begin : begin + rows], MEDFILT_WIDTH)
    return total / len(scores)


def standardized(scores: mx.array, lengths: mx.array, frames: mx.array) -> mx.array:
    """`window_matrix`'s first steps on the device for a group of windows: scores (B, heads, L,
    F) softmaxed over each window's `frames` (B,) and standardised over its `lengths` (B,)
    sequence rows (the rest masked out)."""
    col = mx.arange(scores.shape[-1]) < frames[:, None, None, None]
    row = mx.arange(scores.shape[-2])[:, None] < lengths[:, None, None, None]
    p = mx.where(row, mx.softmax(mx.where(col, scores, -mx.inf), axis=-1), 0.0)
    count = lengths.astype(mx.float32)[:, None, None, None]
    mean = p.sum(axis=-2, keepdims=True) / count
    var = mx.where(row, (p - mean) ** 2, 0.0).sum(axis=-2, keepdims=True) / count
    return (p - mean) / (mx.sqrt(var) + 1e-10)


def group_starts(scores: mx.array, shapes: list[tuple[int, int, int]]) -> list[np.ndarray]:
    """For each window of a group, the seconds at which each of its token rows starts, from the
    alignment heads' `scores` (B, heads, L, n_audio_ctx) and its `window_matrix` shape (first
    text row, rows, frames): on a GPU one kernel launch for the group
    (`mlxwx.kernels.dtw_starts_kernel`); elsewhere the numpy matrices and DTW (its reference)."""
    backend = kernel_backend()
    if backend is None:
        matrices = [window_matrix(np.array(scores[k]), *shape) for k, shape in enumerate(shapes)]
        return token_starts(matrices)
    dims = mx.array(shapes, dtype=mx.int32)
    z = standardized(scores, dims[:, 0] + dims[:, 1] + 1, dims[:, 2])  # the sequence's rows
    starts = np.array(dtw_starts_kernel(z, dims, MEDFILT_WIDTH, backend=backend))
    return [starts[k, :n] / TOKENS_PER_SECOND for k, (_, n, _) in enumerate(shapes)]


def unit_texts(wm: WhisperModel, tokens: list[int]) -> list[str]:
    """Per token, the text it completes ("" inside a character spread over tokens)."""
    out: list[str] = []
    for text, run in wm.tokenizer.units(tokens):
        out += [""] * (len(run) - 1) + [text]
    return out


def audio_frames(window: Window) -> int:
    """The 20 ms frames of a window that hold its audio."""
    return max(1, -(-sum(s.length for s in window.spans) // N_SAMPLES_PER_TOKEN))


def token_times(
    wm: WhisperModel, segments: list[list[int]], starts: np.ndarray, probs: np.ndarray
) -> TokenTimes:
    """The `TokenTimes` of a window's text tokens (per segment), their starts and probabilities."""
    tokens = [t for s in segments for t in s]
    return TokenTimes(
        tokens=tuple(tokens),
        counts=tuple(len(s) for s in segments),
        texts=tuple(unit_texts(wm, tokens)),
        starts=tuple(starts.tolist()),
        probs=tuple(probs.tolist()),
        lag=wm.timing_lag,
    )


def timing_groups(wm: WhisperModel, rows: list[int], length: int) -> list[list[int]]:
    """`rows` in groups timed together (see SCORES_BYTES), for sequences of `length` tokens."""
    heads = wm.dims.n_text_head + sum(len(h) for h in heads_by_layer(wm).values())
    per_row = heads * length * wm.dims.n_audio_ctx * 4
    size = max(1, _budget(SCORES_BYTES) // per_row)
    return [rows[at : at + size] for at in range(0, len(rows), size)]


def annotate(
    wm: WhisperModel, cross_kv: CrossKV, windows: list[Window], task: str = "transcribe"
) -> list[Window]:
    """`windows` (decoded from the encoded windows whose cross-attention keys and values are
    `cross_kv`, one row each) with the `TokenTimes` of their text."""
    per_segment = [segment_tokens(wm, w) for w in windows]
    texts = [[t for s in segs for t in s] for segs in per_segment]
    rows = [i for i, t in enumerate(texts) if t]
    if not rows:
        return windows
    prompts = {i: wm.tokenizer.sot_sequence(windows[i].language, task, False) for i in rows}
    sequences = {i: prompts[i] + texts[i] + [wm.tokenizer.eot] for i in rows}
    out = list(windows)
    longest = max(len(s) for s in sequences.values())
    for group in timing_groups(wm, rows, -(-longest // PAD_TO) * PAD_TO):
        kv = take_kv(cross_kv, group)
        scores, logprobs = forced_scores(wm, kv, [sequences[i] for i in group])
        begins = [len(prompts[i]) - 1 for i in group]
        shapes = [
            (b, len(texts[i]) + 1, audio_frames(windows[i]))
            for i, b in zip(group, begins, strict=True)
        ]
        for k, (i, starts) in enumerate(zip(group, group_starts(scores, shapes), strict=True)):
            probs = np.exp(np.array(logprobs[k])[begins[k] : begins[k] + len(texts[i])])
            times = token_times(wm, per_segment[i], starts, probs)
            out[i] = replace(windows[i], token_times=times)
    return out


def annotate_result(
    wm: WhisperModel, result: Result, audio: np.ndarray, task: str = "transcribe"
) -> Result:
    """`result` with `TokenTimes` on every window with text that lacks them, each such window
    encoded again from the input's `audio` ((samples,) float32, 16 kHz): for results decoded
    without `TranscribeOptions.token_times`."""
    todo = [i for i, w in enumerate(result.windows) if w.token_times is None and w.segments]
    if not todo:
        return result
    windows = list(result.windows)
    for i in todo:
        w = windows[i]
        samples = np.concatenate([audio[s.start : s.end] for s in w.spans])
        mel = window_mel(mx.array(samples), 0, samples.size, wm.dims.n_mels)
        windows[i] = annotate(wm, wm.model.decoder.cross_kv(encode(wm, mel[None])), [w], task)[0]
    return replace(result, windows=tuple(windows))
