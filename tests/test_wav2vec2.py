"""The wav2vec2 aligner (mlxwx.align.wav2vec2) on tiny randomly initialised `Wav2Vec2ForCTC`
models saved in a temporary folder: loading, batched emissions equal to one-at-a-time ones,
wildcards, too-short audio, interpolation, and the one-line errors."""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlxwx.align import wav2vec2
from mlxwx.align.ctc import WILDCARD, encode_chars
from mlxwx.align.wav2vec2 import (
    DEFAULT_ALIGN_MODELS,
    EXTRA_HINT,
    Aligner,
    _feature_frames,
    align_segments,
    autocast_dtype,
    emissions,
    frame_counts,
    load_aligner,
)
from mlxwx.errors import ModelError

from .speech import save_random_wav2vec2


def save_tiny_model(folder: Path, norm: str) -> Path:
    """A 2-layer, 16-wide wav2vec2 CTC model with its processor. norm: "group" (base models:
    group-normalised first conv) or "layer" (large/XLS-R models)."""
    pytest.importorskip("torch", reason="torch missing: pip install 'mlxwx[align]'")
    pytest.importorskip("transformers", reason="pip install 'mlxwx[align]'")
    return save_random_wav2vec2(
        folder,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm=norm,
        do_stable_layer_norm=norm == "layer",
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Torch on one thread for these tiny models: on a busy 2-core machine its thread pool
    made each call ~20x slower. The setting is restored after this module."""
    torch = pytest.importorskip("torch", reason="torch missing: pip install 'mlxwx[align]'")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def group_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base-like model (group-normalised first conv), the English default's kind."""
    return save_tiny_model(tmp_path_factory.mktemp("w2v") / "group", "group")


@pytest.fixture(scope="module")
def aligner(group_folder: Path) -> Aligner:
    return load_aligner("en", str(group_folder), device="cpu")


@pytest.fixture(scope="module", params=["group", "layer"])
def any_aligner(
    request: pytest.FixtureRequest, aligner: Aligner, tmp_path_factory: pytest.TempPathFactory
) -> Aligner:
    """Both kinds of feature encoder normalisation."""
    if request.param == "group":
        return aligner
    folder = save_tiny_model(tmp_path_factory.mktemp("w2v") / "layer", "layer")
    return load_aligner("en", str(folder), device="cpu")


def noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)


SEGMENTS = [
    (noise(1.0, 0), 0.0, " hello world"),
    (noise(0.5, 1), 1.0, "Are you there?"),
    (noise(1.52, 2), 2.0, "the park is nice"),
    (noise(0.31, 3), 4.0, "ok"),
]


def test_load_from_folder(aligner: Aligner) -> None:
    assert aligner.vocab["a"] == 5 and aligner.vocab["'"] == 31 and aligner.vocab["|"] == 4
    assert "A" not in aligner.vocab
    assert (aligner.blank, aligner.delimiter, aligner.normalize) == (0, "|", True)
    assert aligner.seconds_per_frame == pytest.approx(0.02)
    assert aligner.device == "cpu" and aligner.language == "en"
    assert not aligner.model.training


def test_emissions_are_the_models_log_probs(any_aligner: Aligner) -> None:
    """The batched path (conv per segment, masked transformer) computes the model's forward."""
    import torch

    aligner = any_aligner
    audio = SEGMENTS[2][0]
    normalized = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    with torch.inference_mode():
        logits = aligner.model(torch.from_numpy(normalized)[None]).logits
    expected = torch.log_softmax(logits, dim=-1)[0].numpy()
    (got,) = emissions(aligner, [audio])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.allclose(np.exp(got).sum(axis=1), 1, atol=1e-5)


def test_precision_auto_is_half_on_a_gpu_and_float32_on_the_cpu() -> None:
    from types import SimpleNamespace

    import torch

    assert autocast_dtype(torch, "cpu") is None
    assert autocast_dtype(torch, "cpu", "bfloat16") is torch.bfloat16
    gpu_torch = SimpleNamespace(
        device=torch.device, float16=torch.float16, autocast=lambda *a, **k: 0
    )
    assert autocast_dtype(gpu_torch, "cuda:1") is torch.float16  # a torch with autocast there
    assert autocast_dtype(gpu_torch, "mps") is torch.float16
    assert autocast_dtype(gpu_torch, "cuda:1", "float32") is None
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        autocast_dtype(torch, "cpu", "half")


def test_a_torch_without_autocast_for_the_device_runs_in_float32() -> None:
    """torch 2.3 raises for autocast on mps; others warn and turn it off."""
    import warnings
    from types import SimpleNamespace

    import torch

    def raising(kind: str, dtype: object) -> None:
        raise RuntimeError(f"User specified an unsupported autocast device_type '{kind}'")

    def warning(kind: str, dtype: object) -> None:
        warnings.warn("In CPU autocast, but the target dtype is not supported.", stacklevel=1)

    for autocast in (raising, warning):
        old = SimpleNamespace(device=torch.device, float16=torch.float16, autocast=autocast)
        assert autocast_dtype(old, "mps") is None


def test_bfloat16_runs_the_model_under_autocast(aligner: Aligner) -> None:
    """The batched path under autocast computes the model's own forward under autocast, which
    is not float32's."""
    import dataclasses

    import torch

    audio = SEGMENTS[2][0]
    normalized = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = aligner.model(torch.from_numpy(normalized)[None]).logits.float()
    expected = torch.log_softmax(logits, dim=-1)[0].numpy()
    (got,) = emissions(dataclasses.replace(aligner, autocast=torch.bfloat16), [audio])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    (full,) = emissions(aligner, [audio])
    assert np.abs(full - got).max() > 0.1


def test_a_half_precision_overflow_runs_again_in_float32(
    aligner: Aligner, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import dataclasses

    import torch

    head = aligner.model.lm_head
    half = dataclasses.replace(aligner, autocast=torch.bfloat16)
    forward = head.forward

    def overflowing(hidden: torch.Tensor) -> torch.Tensor:
        out = forward(hidden)
        return out * torch.inf if torch.is_autocast_enabled("cpu") else out

    monkeypatch.setattr(head, "forward", overflowing)
    audios = [audio for audio, _, _ in SEGMENTS]
    with caplog.at_level("WARNING", logger="mlxwx.align.wav2vec2"):
        got = emissions(half, audios)
    assert "runs again in float32" in caplog.text
    monkeypatch.undo()
    for a, b in zip(got, emissions(aligner, audios), strict=True):
        np.testing.assert_array_equal(a, b)


def test_padding_invariance(any_aligner: Aligner) -> None:
    aligner = any_aligner
    audios = [a for a, _, _ in SEGMENTS]
    batched = emissions(aligner, audios)
    counts = frame_counts(aligner, [len(a) for a in audios])
    assert counts == [49, 24, 75, 15]  # (samples - 400) // 320 + 1
    for audio, emission, count in zip(audios, batched, counts, strict=True):
        (alone,) = emissions(aligner, [audio])
        assert emission.shape == alone.shape == (count, 32)
        np.testing.assert_allclose(emission, alone, atol=1e-4)


@pytest.fixture(
    params=[("group", False), ("group", True), ("layer", False), ("layer", True)],
    ids=["group", "group-bias", "layer", "layer-bias"],
)
def feature_encoder(request: pytest.FixtureRequest) -> Any:
    """A `Wav2Vec2FeatureEncoder` (base models' group norm on the first conv, or large models'
    layer norm on every conv; conv biases or none) of random weights, norm scales and biases,
    its channel count changing from layer to layer."""
    import torch
    import transformers

    norm, bias = request.param
    config = transformers.Wav2Vec2Config(
        conv_dim=(8, 12, 12, 16, 16, 8, 8), feat_extract_norm=norm, conv_bias=bias
    )
    torch.manual_seed(0)
    encoder = transformers.models.wav2vec2.modeling_wav2vec2.Wav2Vec2FeatureEncoder(config)
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if param.dim() == 3:  # conv weights: values of order 1 through every layer
                param.normal_(0.0, 2 / math.sqrt(param[0].numel()))
            else:  # conv biases, norm shifts and norm scales (around 1)
                param.normal_(1.0 if name.endswith("norm.weight") else 0.0, 1.0)
    return encoder.eval()


def encoder_frames(samples: int) -> int:
    """Frames of the default conv stack (kernels 10, 3, 3, 3, 3, 2, 2; strides 5, 2, ...)."""
    return (samples - 400) // 320 + 1


def test_the_feature_encoder_gives_each_input_of_a_batch_its_frames_alone(
    feature_encoder: Any,
) -> None:
    """The GPU's path: the convolutional feature encoder as matmuls over a zero-padded batch
    (the first layer's group norm masked) gives every input the frames the model's own encoder
    gives it alone (the CPU's path), and zeros past them."""
    import torch

    encoder = feature_encoder
    inputs = [torch.from_numpy(a) for a, _, _ in SEGMENTS]
    lengths = torch.tensor([encoder_frames(len(a)) for a in inputs])
    with torch.inference_mode():
        batched = _feature_frames(torch, encoder, inputs, lengths, one_by_one=False)
        alone = _feature_frames(torch, encoder, inputs, lengths, one_by_one=True)
        assert batched.shape == alone.shape == (4, 75, 8)
        for x, n, frames in zip(inputs, lengths.tolist(), batched, strict=True):
            own = encoder(x[None])[0].T.numpy()  # the model's own encoder on the input alone
            assert np.abs(own).max() > 0.5  # not vanished through the layers
            atol = 1e-5 * np.abs(own).max()
            np.testing.assert_allclose(frames[:n], own, rtol=1e-5, atol=atol)
            assert not frames[n:].any()


def test_windows_copied_in_autocasts_dtype_hold_the_values_autocast_would_give(
    feature_encoder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under autocast each matmul's input is cast before its windows are copied: the same
    values as copying them in float32 and letting autocast cast the copy."""
    import torch

    inputs = [torch.from_numpy(a) for a, _, _ in SEGMENTS]
    lengths = torch.tensor([encoder_frames(len(a)) for a in inputs])
    hidden = torch.randn(2, 50, 16)
    pos_conv = wav2vec2._matmul_pos_conv_type(torch)(positional_conv(40, 16, 2))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert wav2vec2._to_autocast(torch, hidden).dtype == torch.bfloat16
        cast = _feature_frames(torch, feature_encoder, inputs, lengths, one_by_one=False)
        cast_pos = pos_conv(hidden)
        monkeypatch.setattr(wav2vec2, "_to_autocast", lambda torch, x: x)
        copied = _feature_frames(torch, feature_encoder, inputs, lengths, one_by_one=False)
        copied_pos = pos_conv(hidden)
    assert cast_pos.dtype == torch.bfloat16  # as the conv's output under autocast
    torch.testing.assert_close(cast, copied, rtol=0, atol=0)
    torch.testing.assert_close(cast_pos, copied_pos, rtol=0, atol=0)


def positional_conv(kernel: int, width: int, groups: int) -> Any:
    """transformers' `Wav2Vec2PositionalConvEmbedding` of random weights (the weight norm's
    direction and scale, and the bias)."""
    import torch
    import transformers

    config = transformers.Wav2Vec2Config(
        hidden_size=width, num_conv_pos_embeddings=kernel, num_conv_pos_embedding_groups=groups
    )
    torch.manual_seed(kernel)
    module = transformers.models.wav2vec2.modeling_wav2vec2.Wav2Vec2PositionalConvEmbedding(config)
    with torch.no_grad():
        for param in module.parameters():
            param.normal_()
    return module.eval()


# odd and even kernels (the even one's last frame dropped), kernels of one, several and a
# partial last chunk of POS_CONV_TAPS taps
@pytest.mark.parametrize("kernel", [7, 16, 40, 128])
def test_the_positional_conv_as_matmuls_is_the_modules(kernel: int) -> None:
    import torch

    module = positional_conv(kernel, 32, 4)
    matmuls = wav2vec2._matmul_pos_conv_type(torch)(module)
    generator = torch.Generator().manual_seed(1)
    for frames in (3, 50):  # fewer and more frames than taps
        hidden = torch.randn(2, frames, 32, generator=generator)
        with torch.inference_mode():
            expected, got = module(hidden), matmuls(hidden)
        assert got.shape == expected.shape == (2, frames, 32)
        atol = 1e-5 * float(expected.abs().max())
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=atol)


def test_an_aligner_for_a_gpu_gets_the_matmul_positional_conv(
    group_folder: Path, aligner: Aligner
) -> None:
    """Loading for any device but the CPU replaces the module (the meta device, which holds no
    weights, stands in for a GPU); the CPU keeps the model's own. The model's state dict keeps
    its keys."""
    import torch

    gpu = load_aligner("en", str(group_folder), device="meta")
    replaced = gpu.model.wav2vec2.encoder.pos_conv_embed
    assert type(replaced) is wav2vec2._matmul_pos_conv_type(torch)
    assert gpu.model.state_dict().keys() == aligner.model.state_dict().keys()
    own = aligner.model.wav2vec2.encoder.pos_conv_embed
    assert type(own).__name__ == "Wav2Vec2PositionalConvEmbedding"


def test_a_positional_conv_not_replicated_stays(aligner: Aligner) -> None:
    """A module with more in it (as Hubert's batch norm) or with the legacy weight norm (whose
    hook computes the weight only when the conv runs) is left in place."""
    import torch

    model = copy.deepcopy(aligner.model)
    module = model.wav2vec2.encoder.pos_conv_embed
    assert wav2vec2._replicable(torch, module)
    module.add_module("batch_norm", torch.nn.BatchNorm1d(16))
    assert not wav2vec2._install_matmul_pos_conv(torch, model)
    assert model.wav2vec2.encoder.pos_conv_embed is module

    legacy = positional_conv(16, 16, 2)
    assert wav2vec2._replicable(torch, legacy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for the parametrization
        legacy.conv = torch.nn.utils.weight_norm(torch.nn.Conv1d(16, 16, 16, 1, 8, groups=2), dim=2)
    assert not wav2vec2._replicable(torch, legacy)


def test_the_gpu_path_computes_the_models_forward(
    any_aligner: Aligner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU's path run on the CPU (the feature encoder as matmuls over the batch, the
    positional conv replaced): each segment's log-probabilities are the model's own forward on
    the segment alone."""
    import torch

    model = copy.deepcopy(any_aligner.model)
    assert wav2vec2._install_matmul_pos_conv(torch, model)
    monkeypatch.setattr(Aligner, "on_cpu", property(lambda self: False))
    audios = [a for a, _, _ in SEGMENTS]
    got = emissions(dataclasses.replace(any_aligner, model=model), audios)
    for audio, logp in zip(audios, got, strict=True):
        normalized = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
        with torch.inference_mode():
            logits = any_aligner.model(torch.from_numpy(normalized)[None]).logits
        np.testing.assert_allclose(logp, torch.log_softmax(logits, dim=-1)[0], atol=5e-5)


def test_the_gpu_paths_transformer_is_the_encoders_without_reading_the_mask(
    any_aligner: Aligner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off the CPU the transformer runs from `_encoded`: the encoder's own output for every
    frame, padded ones included, and transformers' mask function (which reads the mask back
    to the host) never called. An encoder it does not replicate (eager attention, a module
    added) runs its own forward."""
    import torch
    from transformers.models.wav2vec2 import modeling_wav2vec2 as hf

    encoder = any_aligner.model.wav2vec2.encoder
    hidden = torch.randn(
        3, 40, encoder.config.hidden_size, generator=torch.Generator().manual_seed(0)
    )
    mask = torch.arange(40)[None] < torch.tensor([40, 17, 29])[:, None]
    with torch.inference_mode():
        expected = encoder(hidden.clone(), attention_mask=mask).last_hidden_state

        def no_mask(**_: Any) -> None:
            raise AssertionError("the mask was built")

        monkeypatch.setattr(hf, "create_bidirectional_mask", no_mask)
        got = wav2vec2._encoded(torch, encoder, hidden.clone(), mask, on_cpu=False)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        with pytest.raises(AssertionError, match="mask was built"):
            wav2vec2._encoded(torch, encoder, hidden, mask, on_cpu=True)
    assert wav2vec2._own_encoder(encoder)
    eager = copy.deepcopy(encoder)
    eager.config = copy.copy(eager.config)
    eager.config._attn_implementation = "eager"
    assert not wav2vec2._own_encoder(eager)
    added = copy.deepcopy(encoder)
    added.add_module("adapter", torch.nn.Identity())
    assert not wav2vec2._own_encoder(added)


def test_batches_run_from_shortest_to_longest_within_a_count_and_seconds_of_padding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wav2vec2, "BATCH_SECONDS", 10.0)
    second = 16000
    lengths = [3 * second, 1 * second, 2 * second, 12 * second, 2 * second, 4 * second]
    assert wav2vec2.batches(range(6), lengths, size=3) == [[1, 2, 4], [0, 5], [3]]
    assert wav2vec2.batches([0, 3, 5], lengths, size=8) == [[0, 5], [3]]  # 2 x 4 s fit, 12 s alone
    assert wav2vec2.batches([2, 4, 1], lengths, size=8) == [[1, 2, 4]]
    assert wav2vec2.batches([], lengths, size=8) == []


def test_batched_words_equal_one_at_a_time(aligner: Aligner) -> None:
    batched = align_segments(aligner, SEGMENTS, batch_size=8)
    alone = align_segments(aligner, SEGMENTS, batch_size=1)
    # times exactly (the paths agree); scores up to float32 rounding
    assert [[(w.word, w.start, w.end, w.interpolated) for w in s.words] for s in batched] == [
        [(w.word, w.start, w.end, w.interpolated) for w in s.words] for s in alone
    ]
    scores = [w.score for s in batched for w in s.words]
    assert scores == pytest.approx([w.score for s in alone for w in s.words], rel=1e-5)
    assert [w.word for s in batched for w in s.words] == [
        *("hello", "world", "Are", "you", "there?", "the", "park", "is", "nice", "ok")
    ]


def test_rows_normalised_over_their_own_samples() -> None:
    """Each row of a padded batch at zero mean and unit variance over its own samples (the
    feature extractor's formula, computed alone), zeros past them."""
    import torch

    rng = np.random.default_rng(3)
    rows = [
        (rng.standard_normal(n) * s + m).astype(np.float32)
        for n, s, m in [(50, 0.1, 0.3), (7, 2.0, -1), (33, 1e-3, 0)]
    ]
    batch = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(r) for r in rows], batch_first=True)
    got = wav2vec2._normalized(torch, batch, [len(r) for r in rows]).numpy()
    for row, out in zip(rows, got, strict=True):
        alone = (row - row.mean()) / np.sqrt(row.var() + 1e-7)
        np.testing.assert_allclose(out[: len(row)], alone, rtol=1e-5, atol=1e-5)
        assert not out[len(row) :].any()


def test_the_next_batchs_model_run_starts_before_this_batch_is_aligned(
    aligner: Aligner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU the model runs while the host finds the paths: the run of batch k + 1 is
    started (`_logits`, which does not wait for the device) before batch k's paths are found;
    the words are those of batches aligned one after another."""
    calls: list[str] = []
    logits, paths = wav2vec2._logits, wav2vec2.forced_align_batch

    def started(torch: Any, aligner: Aligner, audios: Any, dtype: Any) -> Any:
        calls.append(f"model {len(audios[0])}")
        return logits(torch, aligner, audios, dtype)

    def aligned(logps: Any, tokens: Any, blank: int) -> Any:
        calls.append(f"paths {len(logps[0])}")
        return paths(logps, tokens, blank)

    expected = align_segments(aligner, SEGMENTS, batch_size=1)
    monkeypatch.setattr(wav2vec2, "_logits", started)
    monkeypatch.setattr(wav2vec2, "forced_align_batch", aligned)
    got = align_segments(aligner, SEGMENTS, batch_size=1)
    assert got == expected
    kinds = [c.split()[0] for c in calls]
    n = len(SEGMENTS)
    assert kinds == ["model", "model", *["paths", "model"] * (n - 2), "paths", "paths"]


def test_on_a_gpu_the_shortest_batch_runs_first_then_the_longest_down(
    aligner: Aligner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off the CPU the first batch's run and the last batch's paths are the ones nothing
    overlaps: the shortest batch runs first, the others from the longest down; the words are
    the CPU's, in the segments' own order."""
    lengths: list[int] = []
    logits = wav2vec2._logits

    def started(torch: Any, aligner: Aligner, audios: Any, dtype: Any) -> Any:
        lengths.append(len(audios[0]))
        return logits(torch, aligner, audios, dtype)

    expected = align_segments(aligner, SEGMENTS, batch_size=1)
    monkeypatch.setattr(wav2vec2, "_logits", started)
    assert align_segments(aligner, SEGMENTS, batch_size=1) == expected
    ascending = sorted(len(a) for a, _, _ in SEGMENTS)
    assert lengths == ascending
    lengths.clear()
    monkeypatch.setattr(Aligner, "on_cpu", property(lambda self: False))
    got = align_segments(aligner, SEGMENTS, batch_size=1)
    assert lengths == [ascending[0], *ascending[:0:-1]]
    # the GPU's path computes the same frames up to rounding (its own test): same times
    timed = [[(w.word, w.start, w.end) for w in s.words] for s in got]
    assert timed == [[(w.word, w.start, w.end) for w in s.words] for s in expected]
    scores = [w.score for s in got for w in s.words]
    assert scores == pytest.approx([w.score for s in expected for w in s.words], rel=1e-4)


def test_words_timed_on_the_file_timeline(aligner: Aligner) -> None:
    for (audio, start, _), seg in zip(SEGMENTS, align_segments(aligner, SEGMENTS), strict=True):
        end = start + len(audio) / 16000
        previous = start
        for w in seg.words:
            assert w.start is not None and w.end is not None
            assert previous <= w.start <= w.end <= end + 1e-9
            assert not w.interpolated and w.score is not None and 0 < w.score <= 1
            # frame edges: multiples of 20 ms from the segment's start
            assert (w.start - start) / 0.02 == pytest.approx(round((w.start - start) / 0.02))
            previous = w.end


def test_char_alignments(aligner: Aligner) -> None:
    (seg,) = align_segments(aligner, SEGMENTS[:1], return_char_alignments=True)
    assert seg.chars is not None
    assert "".join(c.char for c in seg.chars) == " hello world"
    assert seg.chars[0].start is None  # leading space: no token
    hello = seg.words[0]
    assert hello.start == min(c.start for c in seg.chars[1:6] if c.start is not None)
    assert hello.end == max(c.end for c in seg.chars[1:6] if c.end is not None)
    assert align_segments(aligner, SEGMENTS[:1])[0].chars is None


def test_digit_is_a_wildcard(aligner: Aligner) -> None:
    text = "take 5s at 42 past"
    tokens, _ = encode_chars(text, aligner.vocab, aligner.delimiter)
    assert tokens.count(WILDCARD) == 3
    (seg,) = align_segments(aligner, [(noise(2.0, 4), 3.0, text)], return_char_alignments=True)
    assert seg.chars is not None
    words = {w.word: w for w in seg.words}
    five, s = seg.chars[5], seg.chars[6]
    assert five.char == "5" and five.start is not None  # the wildcard itself is on the path
    # "5s" is timed by its "s" alone; "42" has only wildcards: interpolated from a neighbour
    assert (words["5s"].start, words["5s"].end) == (s.start, s.end)
    assert not words["5s"].interpolated
    assert words["42"].interpolated and words["42"].score is None
    assert words["42"].start is not None and words["42"].end is not None
    (ignored,) = align_segments(aligner, [(noise(2.0, 4), 3.0, text)], interpolate="ignore")
    assert [w.word for w in ignored.words if w.start is None] == ["42"]


def test_too_short_audio_is_interpolated(aligner: Aligner) -> None:
    segments = [
        (noise(0.02, 5), 7.0, "much too long a text"),  # 320 samples: no frame at all
        (noise(0.1, 6), 8.0, "much too long a text"),  # 4 frames for 20 tokens
        (noise(1.0, 7), 9.0, "fits"),
    ]
    out = align_segments(aligner, segments)
    assert len(out) == 3
    for (audio, start, _), seg in zip(segments[:2], out[:2], strict=True):
        assert [w.word for w in seg.words] == ["much", "too", "long", "a", "text"]
        assert all(w.interpolated and w.score is None for w in seg.words)
        assert seg.words[0].start == pytest.approx(start)
        assert seg.words[-1].end == pytest.approx(start + len(audio) / 16000)
    assert not out[2].words[0].interpolated
    ignored = align_segments(aligner, segments, interpolate="ignore")
    assert all(w.start is None and w.end is None for w in ignored[1].words)


def test_every_word_timed_with_nearest(aligner: Aligner) -> None:
    segments = [
        (noise(0.6, 8), 0.0, "Zwei 2 drei 3!"),
        (noise(0.05, 9), 1.0, "short"),
        (noise(0.8, 10), 2.0, ""),
        (noise(0.8, 11), 3.0, "  ...  "),
    ]
    out = align_segments(aligner, segments, interpolate="nearest", batch_size=3)
    assert [len(s.words) for s in out] == [4, 1, 0, 1]
    assert all(w.start is not None and w.end is not None for s in out for w in s.words)
    assert align_segments(aligner, []) == []


def test_bad_interpolation(aligner: Aligner) -> None:
    with pytest.raises(ValueError, match="cubic"):
        align_segments(aligner, SEGMENTS, interpolate="cubic")


def test_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(ModelError) as err:
        load_aligner("en")
    assert str(err.value) == EXTRA_HINT
    assert "pip install 'mlxwx[align]'" in EXTRA_HINT


def test_language_without_default() -> None:
    with pytest.raises(ModelError, match="--align-model") as err:
        load_aligner("xx")
    assert "\n" not in str(err.value) and "'xx'" in str(err.value)
    assert DEFAULT_ALIGN_MODELS["en"] == "facebook/wav2vec2-base-960h"


def test_uncached_model_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers", reason="pip install 'mlxwx[align]'")
    name = "mlxwx-tests/no-such-wav2vec2"
    with pytest.raises(ModelError) as err:
        load_aligner("en", name, local_files_only=True)
    message = str(err.value)
    assert "\n" not in message and repr(name) in message
    assert "--align-model" in message and "--align whisper" in message
    # HF_HUB_OFFLINE=1 keeps it from asking the hub too
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match="no-such-wav2vec2"):
        load_aligner("en", name)


def test_torch_runs_without_cudnn_where_mlx_loaded_an_older_one(caplog) -> None:
    """On CUDA, MLX's cuDNN is in the process first; torch refuses it and must do without."""
    from types import SimpleNamespace

    from mlxwx.device import check_cudnn

    def refuse(_: object) -> bool:
        raise RuntimeError("cuDNN version incompatibility: PyTorch was compiled against 91900")

    cudnn = SimpleNamespace(enabled=True, is_acceptable=refuse)
    torch = SimpleNamespace(backends=SimpleNamespace(cudnn=cudnn), zeros=lambda *a, **k: 0)
    with caplog.at_level("WARNING", logger="mlxwx.device"):
        check_cudnn(torch, "cpu", "aligning")  # not a cuda device: nothing to check
        check_cudnn(torch, "cuda", "aligning")
        check_cudnn(torch, "cuda:0", "aligning")  # once off, not tried again
    assert cudnn.enabled is False
    assert caplog.text.count("cannot use cuDNN in this process (cuDNN version") == 1
    assert "aligning without it" in caplog.text


def test_loading_prints_no_progress_bar(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """transformers draws a bar while loading weights; the library prints nothing, and leaves
    the bars as it found them."""
    from transformers.utils import logging as bars

    folder = save_tiny_model(tmp_path / "m", "group")
    capfd.readouterr()
    load_aligner("en", str(folder), device="cpu")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert bars.is_progress_bar_enabled()
