"""Checkpoint converters: tiny random models in every source format, plus the real offline packs.

Each random model is run by its own framework (transformers, openai's torch model shipped in
mlx-whisper, CTranslate2, mlx-whisper) and by ours after conversion, in float32.

Tolerance: outputs must agree to TOL = 1e-4 of the reference's largest magnitude. Both sides compute
the same float32 math in a different order (conv vs. im2col, fused vs. explicit softmax), which
leaves ~1e-6 relative; every mapping mistake we guard against (a missed transpose, swapped q/k,
a dropped bias, gamma/beta exchanged, an untied projection) moves outputs by O(1) relative.
"""

from __future__ import annotations

import base64
import gzip
import json
import shutil
import struct
from dataclasses import asdict
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from convert import alignment_pairs
from convert.__main__ import main
from convert.ct2 import convert as convert_ct2
from convert.hf import convert as convert_hf
from convert.openai import convert as convert_openai
from mlxwx.asr.model import load_whisper as load_folder
from mlxwx.models.whisper import ModelDimensions, Whisper
from mlxwx.weights.ct2 import read_ct2, read_model_bin
from mlxwx.weights.whisper import quantize_predicate

TOL = 1e-4
D, HEADS, LAYERS = 64, 4, 2  # divisible by the quantization group of 64
HF_HEADS = [[1, 0], [1, 3]]
TOKENS = [
    [50258, 50259, 50359, 50363, 440, 1029, 2068, 13],
    [50258, 50260, 50359, 50363, 7, 8, 9, 10],
]


def scaled_err(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(np.asarray(ours, np.float64) - ref).max() / np.abs(ref).max())


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


def random_mel(n_mels: int = 80, batch: int = 2, seed: int = 0) -> np.ndarray:
    """(B, 3000, n_mels) float32: our layout; torch models take the transpose."""
    return np.random.default_rng(seed).standard_normal((batch, 3000, n_mels)).astype(np.float32)


def run_ours(folder: Path | Whisper, mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Encoder output (B, 1500, D) and logits (B, T, vocab) of TOKENS, float32."""
    m = folder if isinstance(folder, Whisper) else load_folder(folder, mx.float32)
    audio = m.encoder(mx.array(mel))
    cache = m.decoder.new_cache(mel.shape[0], mx.float32)
    logits = m.decoder(mx.array(TOKENS), m.decoder.cross_kv(audio), cache, 0)
    return np.array(audio), np.array(logits)


def heads_of(folder: Path) -> list[list[int]]:
    return np.array(load_folder(folder, mx.float32).alignment_heads).tolist()


def randomize_(named_parameters, seed: int, keep: tuple[str, ...] = ()) -> None:
    """Every parameter ~ N(0, 0.1^2), layer-norm scales around 1, except names in `keep`."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in named_parameters:
            if any(k in name for k in keep):
                continue
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            norm = "layer_norm" in name or "_ln" in name or ".ln" in name
            if norm and name.endswith("weight"):
                p.add_(1.0)


# ----------------------------------------------------------------------------- Hugging Face


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """A random tiny WhisperForConditionalGeneration saved as safetensors, with its outputs."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.WhisperConfig(
        vocab_size=51865,
        num_mel_bins=80,
        d_model=D,
        encoder_layers=LAYERS,
        decoder_layers=LAYERS,
        encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS,
        encoder_ffn_dim=4 * D,
        decoder_ffn_dim=4 * D,
        max_source_positions=1500,
        max_target_positions=448,
    )
    model = transformers.WhisperForConditionalGeneration(config).eval()
    randomize_(model.named_parameters(), seed=1, keep=("encoder.embed_positions",))
    model.generation_config.alignment_heads = HF_HEADS
    model.generation_config.suppress_tokens = [1, 2, 7]
    model.generation_config.begin_suppress_tokens = [220, 50257]
    src = tmp_path_factory.mktemp("hf") / "whisper"
    model.save_pretrained(src, safe_serialization=True)
    (src / "tokenizer.json").write_text('{"stand-in": true}')
    mel = random_mel()
    with torch.no_grad():
        out = model(
            input_features=torch.from_numpy(mel.transpose(0, 2, 1)),
            decoder_input_ids=torch.tensor(TOKENS),
        )
    ref = (out.encoder_last_hidden_state.double().numpy(), out.logits.double().numpy())
    return {"src": src, "mel": mel, "ref": ref, "config": config}


@pytest.fixture(scope="module")
def hf_mlx(hf, tmp_path_factory) -> Path:
    return convert_hf(hf["src"], tmp_path_factory.mktemp("out") / "hf", dtype="float32")


@pytest.fixture(scope="module")
def hf_ours(hf, hf_mlx) -> tuple[np.ndarray, np.ndarray]:
    """Our outputs for the converted HF model, computed once."""
    return run_ours(hf_mlx, hf["mel"])


def test_hf_round_trip(hf, hf_mlx, hf_ours):
    enc, logits = hf_ours
    enc_err, logit_err = scaled_err(enc, hf["ref"][0]), scaled_err(logits, hf["ref"][1])
    print(f"HF round trip: encoder {enc_err:.2e}, logits {logit_err:.2e} (scaled max abs)")
    assert enc_err <= TOL and logit_err <= TOL
    assert heads_of(hf_mlx) == HF_HEADS
    meta = json.loads((hf_mlx / "mlxwx.json").read_text())
    assert meta == {
        "suppress_tokens": [1, 2, 7],
        "begin_suppress_tokens": [220, 50257],
        "source": "huggingface",
    }
    assert (hf_mlx / "tokenizer.json").read_text() == '{"stand-in": true}'
    config = json.loads((hf_mlx / "config.json").read_text())
    assert config.pop("model_type") == "whisper" and "quantization" not in config
    assert ModelDimensions.from_dict(config).n_vocab == 51865


@pytest.mark.parametrize("layout", ["sharded", "pytorch_bin", "bfloat16"])
def test_hf_storage_layouts(layout, hf, hf_mlx, tmp_path):
    """Sharded safetensors with an index, pytorch_model.bin, and bfloat16 tensors."""
    from safetensors.numpy import load_file, save_file

    src = tmp_path / "src"
    shutil.copytree(hf["src"], src, ignore=shutil.ignore_patterns("model.safetensors"))
    tensors = load_file(str(hf["src"] / "model.safetensors"))
    if layout == "sharded":
        names = sorted(tensors)
        shards = {
            "model-00001-of-00002.safetensors": names[::2],
            "model-00002-of-00002.safetensors": names[1::2],
        }
        for file, keys in shards.items():
            save_file({k: tensors[k] for k in keys}, str(src / file))
        weight_map = {k: file for file, keys in shards.items() for k in keys}
        (src / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    elif layout == "pytorch_bin":
        import torch

        torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, src / "pytorch_model.bin")
    else:  # numpy has no bfloat16: written by MLX, read back through it
        bf16 = {k: mx.array(v).astype(mx.bfloat16) for k, v in tensors.items()}
        mx.save_safetensors(str(src / "model.safetensors"), bf16)
    dst = convert_hf(src, tmp_path / "dst", dtype="float32")
    got = mx.load(str(dst / "weights.safetensors"))
    want = mx.load(str(hf_mlx / "weights.safetensors"))
    assert isinstance(got, dict) and isinstance(want, dict) and got.keys() == want.keys()
    for k, w in want.items():
        if layout == "bfloat16" and mx.issubdtype(w.dtype, mx.floating):
            w = w.astype(mx.bfloat16).astype(mx.float32)
        assert mx.array_equal(got[k], w).item(), k


def test_hf_extra_tensor_named(hf, tmp_path):
    from safetensors.numpy import load_file, save_file

    src = tmp_path / "src"
    shutil.copytree(hf["src"], src)
    tensors = load_file(str(src / "model.safetensors"))
    tensors["model.decoder.layers.0.adapter.weight"] = np.zeros((2, 2), np.float32)
    save_file(tensors, str(src / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model\.decoder\.layers\.0\.adapter\.weight"):
        convert_hf(src, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


# ---------------------------------------------------------------------------- CTranslate2


@pytest.fixture(scope="module")
def ct2_from_hf(hf, tmp_path_factory) -> Path:
    """CTranslate2's own converter applied to the random HF model (float32)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    root = tmp_path_factory.mktemp("ct2")
    src = root / "hf"  # without the stand-in tokenizer.json, which CT2 would try to load
    shutil.copytree(hf["src"], src, ignore=shutil.ignore_patterns("tokenizer.json"))
    ctranslate2.converters.TransformersConverter(str(src)).convert(str(root / "float32"))
    ctranslate2.converters.TransformersConverter(str(src)).convert(
        str(root / "int8"), quantization="int8"
    )
    return root / "float32"


def test_ct2_round_trip(hf, ct2_from_hf, tmp_path):
    dst = convert_ct2(ct2_from_hf, tmp_path / "mlx", dtype="float32")
    enc, logits = run_ours(dst, hf["mel"])
    enc_err, logit_err = scaled_err(enc, hf["ref"][0]), scaled_err(logits, hf["ref"][1])
    print(f"CT2 (random) round trip: encoder {enc_err:.2e}, logits {logit_err:.2e}")
    assert enc_err <= TOL and logit_err <= TOL
    ct2_config = json.loads((ct2_from_hf / "config.json").read_text())
    assert heads_of(dst) == ct2_config["alignment_heads"]


def test_ct2_config_lists_as_json_strings(ct2_from_hf, tmp_path):
    folder = tmp_path / "ct2"
    folder.mkdir()
    (folder / "model.bin").symlink_to(ct2_from_hf / "model.bin")
    config = json.loads((ct2_from_hf / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({k: json.dumps(v) for k, v in config.items()}))
    _, _, meta = read_ct2(folder)
    assert meta["alignment_heads"] == config["alignment_heads"]
    assert meta["suppress_tokens"] == config["suppress_ids"]
    assert meta["begin_suppress_tokens"] == config["suppress_ids_begin"]


def test_ct2_int8_rejected(ct2_from_hf, tmp_path):
    with pytest.raises(ValueError, match="int8-quantized"):
        convert_ct2(ct2_from_hf.parent / "int8", tmp_path / "mlx")


def _model_bin(
    path: Path, spec: str, variables: dict[str, np.ndarray], aliases: dict[str, str] | None = None
) -> None:
    """A model.bin as ctranslate2/specs/model_spec.py writes it (binary version 6); uint16
    arrays stand for bfloat16 bits."""

    def string(s: str) -> bytes:
        return struct.pack("H", len(s) + 1) + s.encode() + b"\0"

    ids = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4, "uint16": 5}
    out = struct.pack("I", 6) + string(spec) + struct.pack("I", 3)
    out += struct.pack("I", len(variables))
    for name, v in variables.items():
        out += string(name) + struct.pack("B", v.ndim)
        out += b"".join(struct.pack("I", d) for d in v.shape)
        out += struct.pack("B", ids[v.dtype.name]) + struct.pack("I", v.nbytes) + v.tobytes()
    out += struct.pack("I", len(aliases or {}))
    for alias, target in (aliases or {}).items():
        out += string(alias) + string(target)
    path.write_bytes(out)


def test_read_model_bin_dtypes_and_aliases(tmp_path):
    values = np.array([[1.5, -2.0], [0.25, 3.0]], np.float32)
    bf16_bits = (values.view(np.uint32) >> 16).astype(np.uint16)  # exact: few mantissa bits
    _model_bin(
        tmp_path / "model.bin",
        "WhisperSpec",
        {
            "a": values,
            "b": values.astype(np.float16),
            "c": bf16_bits,
            "n": np.int16(6),
            "i": np.arange(3, dtype=np.int32),
        },
        {"alias": "a"},
    )
    mb = read_model_bin(tmp_path / "model.bin")
    assert (mb.spec, mb.revision, mb.aliases) == ("WhisperSpec", 3, {"alias": "a"})
    for name in "abc":
        assert mb.variables[name].shape == (2, 2)
        np.testing.assert_array_equal(mb.variables[name].astype(np.float32), values)
    assert mb.variables["c"].dtype == np.float32 and mb.variables["n"].item() == 6
    assert mb.variables["i"].tolist() == [0, 1, 2]


def test_ct2_bad_files_one_line(ct2_from_hf, tmp_path):
    _model_bin(tmp_path / "model.bin", "TransformerSpec", {"x": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="not a CTranslate2 Whisper model"):
        read_ct2(tmp_path)
    _model_bin(tmp_path / "model.bin", "WhisperSpec", {"decoder/rotary_dim": np.int8(1)})
    with pytest.raises(ValueError, match="unsupported CTranslate2 setting decoder/rotary_dim=1"):
        read_ct2(tmp_path)
    data = (ct2_from_hf / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        read_ct2(tmp_path)


# --------------------------------------------------------------------------------- OpenAI


def openai_dims(**kw) -> dict[str, int]:
    dims = dict(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=D,
        n_audio_head=HEADS,
        n_audio_layer=LAYERS,
        n_vocab=51864,
        n_text_ctx=448,
        n_text_state=D,
        n_text_head=HEADS,
        n_text_layer=LAYERS,
    )
    return {**dims, **kw}


@pytest.fixture(scope="module")
def openai(tmp_path_factory):
    """A random tiny openai-whisper model (torch) saved as a .pt checkpoint, with its outputs."""
    torch = pytest.importorskip("torch")
    torch_whisper = pytest.importorskip("mlx_whisper.torch_whisper")
    dims = torch_whisper.ModelDimensions(**openai_dims())
    model = torch_whisper.Whisper(dims).eval()
    randomize_(model.named_parameters(), seed=2)
    mask = torch.zeros(LAYERS, HEADS, dtype=torch.bool)
    mask[0, 2] = mask[1, 1] = True
    state = {**model.state_dict(), "alignment_heads": mask.to_sparse()}
    path = tmp_path_factory.mktemp("openai") / "tiny.pt"
    torch.save({"dims": asdict(dims), "model_state_dict": state}, path)
    mel = random_mel(seed=3)
    with torch.no_grad():
        audio = model.encoder(torch.from_numpy(mel.transpose(0, 2, 1)))
        logits = model.decoder(torch.tensor(TOKENS), audio)
    ref = (audio.double().numpy(), logits.double().numpy())
    return {"path": path, "mel": mel, "ref": ref, "heads": [[0, 2], [1, 1]]}


def test_openai_round_trip(openai, tmp_path):
    tokenizer = tmp_path / "tok.json"
    tokenizer.write_text('{"stand-in": 1}')
    dst = convert_openai(openai["path"], tmp_path / "mlx", dtype="float32", tokenizer=tokenizer)
    enc, logits = run_ours(dst, openai["mel"])
    enc_err, logit_err = scaled_err(enc, openai["ref"][0]), scaled_err(logits, openai["ref"][1])
    print(f"OpenAI round trip: encoder {enc_err:.2e}, logits {logit_err:.2e} (scaled max abs)")
    assert enc_err <= TOL and logit_err <= TOL
    assert heads_of(dst) == openai["heads"]
    assert (dst / "tokenizer.json").read_text() == '{"stand-in": 1}'
    assert json.loads((dst / "mlxwx.json").read_text()) == {"source": "openai"}


def test_openai_without_tokenizer_and_heads_override(openai, tmp_path):
    mask = np.zeros((LAYERS, HEADS), bool)
    mask[1, 3] = True
    dump = base64.b85encode(gzip.compress(mask.tobytes())).decode()  # openai's _ALIGNMENT_HEADS
    dst = convert_openai(openai["path"], tmp_path / "a", alignment_heads=dump)
    assert heads_of(dst) == [[1, 3]] and not (dst / "tokenizer.json").exists()
    dst = tmp_path / "b"
    assert main(["openai", str(openai["path"]), str(dst), "--alignment-heads", "[[0, 0]]"]) == 0
    assert heads_of(dst) == [[0, 0]]
    assert load_folder(dst, mx.float32).dtype == mx.float32  # stored float16, upcast on load
    dims = ModelDimensions.from_dict(openai_dims())
    with pytest.raises(ValueError, match="out of range"):
        alignment_pairs([[2, 0]], dims)


def _resave(openai, tmp_path: Path, edit) -> Path:
    import torch

    checkpoint = torch.load(openai["path"], weights_only=True)
    edit(checkpoint["model_state_dict"])
    path = tmp_path / "edited.pt"
    torch.save(checkpoint, path)
    return path


def test_openai_extra_tensor_named(openai, tmp_path):
    import torch

    path = _resave(openai, tmp_path, lambda s: s.update({"decoder.extra.weight": torch.ones(3)}))
    with pytest.raises(ValueError, match=r"decoder\.extra\.weight"):
        convert_openai(path, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_openai_wrong_shape_named(openai, tmp_path):
    import torch

    path = _resave(openai, tmp_path, lambda s: s.update({"decoder.ln.weight": torch.ones(D + 1)}))
    with pytest.raises(ValueError, match=r"decoder\.ln\.weight: \(65,\) != \(64,\)"):
        convert_openai(path, tmp_path / "dst")


def test_openai_positional_table_checked(openai, tmp_path):
    def edit(state):
        state["encoder.positional_embedding"] = state["encoder.positional_embedding"] * 1.5

    with pytest.raises(ValueError, match=r"encoder\.positional_embedding"):
        convert_openai(_resave(openai, tmp_path, edit), tmp_path / "dst")


# ------------------------------------------------------------------------- shared behaviour


def test_refuses_to_overwrite(hf, openai, ct2_from_hf, tmp_path, capsys):
    dst = tmp_path / "exists"
    dst.mkdir()
    (dst / "keep").write_text("x")
    for fn, src in (
        (convert_hf, hf["src"]),
        (convert_openai, openai["path"]),
        (convert_ct2, ct2_from_hf),
    ):
        with pytest.raises(FileExistsError, match="refusing to overwrite"):
            fn(src, dst)
    assert main(["ct2", str(ct2_from_hf), str(dst)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to overwrite" in err
    assert [p.name for p in dst.iterdir()] == ["keep"]


def test_cli_errors_are_one_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "convert", "hf", str(tmp_path / "nope"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert (
        main(
            [
                "openai",
                str(tmp_path / "x.pt"),
                str(tmp_path / "o"),
                "--dtype",
                "float16",
                "--tokenizer",
                str(tmp_path / "missing.json"),
            ]
        )
        == 1
    )
    assert main(["ct2", str(tmp_path), str(tmp_path / "o"), "--tokenizer", "t.json"]) == 1


# Loose bounds on quantized vs dense logits. 4 bits in groups of 64 leave ~9% noise in every
# Gaussian weight matrix, compounding over the layers: this random model measures rel err 0.25,
# correlation 0.97 (the real tiny.en pack on jfk: 0.19 and 0.98). A wrong group size, bit width
# or layer gives rel err ~1. Exactness is checked separately against fake-quantized weights.
QUANT_BOUNDS = {4: (0.4, 0.95), 8: (0.05, 0.999)}  # bits: (max rel err, min correlation)


@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_close_to_dense(bits, hf, hf_mlx, hf_ours, tmp_path):
    dst = tmp_path / f"q{bits}"
    args = ["hf", str(hf["src"]), str(dst), "--dtype", "float32", "--quantize", str(bits)]
    assert main([*args, "--group-size", "64"]) == 0
    config = json.loads((dst / "config.json").read_text())
    assert config["quantization"] == {"group_size": 64, "bits": bits}
    quantized = load_folder(dst, mx.float32)
    assert hasattr(quantized.decoder.token_embedding, "scales")  # Linear/Embedding quantized
    assert not hasattr(quantized.encoder.conv1, "scales")  # convs stay dense
    q_enc, q = run_ours(quantized, hf["mel"])

    # Exact: a dense model holding dequantize(quantize(w)) computes the same function.
    fake = load_folder(hf_mlx, mx.float32)
    predicate = quantize_predicate(64)
    for path, module in fake.named_modules():
        if predicate(path, module):
            w, scales, biases = mx.quantize(module.weight, 64, bits)
            module.weight = mx.dequantize(w, scales, biases, group_size=64, bits=bits)
    fake_enc, fake_logits = run_ours(fake, hf["mel"])
    assert scaled_err(q_enc, fake_enc) <= TOL and scaled_err(q, fake_logits) <= TOL

    dense_enc, dense = hf_ours
    err, corr = rel_err(q, dense), float(np.corrcoef(q.ravel(), dense.ravel())[0, 1])
    print(
        f"{bits}-bit vs dense logits: rel err {err:.3f}, correlation {corr:.4f}; "
        f"encoder rel err {rel_err(q_enc, dense_enc):.3f}"
    )
    max_err, min_corr = QUANT_BOUNDS[bits]
    assert err < max_err and corr > min_corr


# ------------------------------------------------------------- mlx-whisper compatibility


def run_theirs(model, mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    audio = model.encoder(mx.array(mel))
    return np.array(audio), np.array(model.decoder(mx.array(TOKENS), audio)[0])


@pytest.mark.slow
def test_mlx_whisper_loads_our_folders(hf, hf_mlx, hf_ours, tmp_path):
    load_models = pytest.importorskip("mlx_whisper.load_models")
    theirs = load_models.load_model(str(hf_mlx), dtype=mx.float32)
    ours = hf_ours
    for a, b in zip(run_theirs(theirs, hf["mel"]), ours, strict=True):
        assert scaled_err(a, b) <= TOL
    assert np.array(theirs.alignment_heads).tolist() == HF_HEADS
    q = convert_hf(hf["src"], tmp_path / "q", dtype="float32", quantize=(64, 4))
    theirs_q = load_models.load_model(str(q), dtype=mx.float32)
    for a, b in zip(run_theirs(theirs_q, hf["mel"]), run_ours(q, hf["mel"]), strict=True):
        assert scaled_err(a, b) <= TOL


@pytest.mark.parametrize("layout", ["safetensors", "npz", "quantized"])
def test_we_load_mlx_whisper_folders(layout, tmp_path):
    """Folders written as mlx-examples' whisper/convert.py writes them. The mlx-whisper wheel does
    not ship convert.py, so its writing code is reproduced here: `asdict(dims)` plus
    `model_type`, `tree_flatten(model.parameters())` saved with mx.save_safetensors (np/mx.savez
    to weights.npz in older versions), and for -q `nn.quantize(model, 64, 4)` with its default
    predicate and `"quantization"` in config.json."""
    whisper = pytest.importorskip("mlx_whisper.whisper")
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    dims = whisper.ModelDimensions(**openai_dims(n_vocab=51865))
    model = whisper.Whisper(dims, mx.float32)
    mx.random.seed(4)
    shapes = {k: v.shape for k, v in dict(tree_flatten(model.parameters())).items()}
    params = [
        (k, mx.random.normal(shape) * 0.1 + (1.0 if "ln" in k and "weight" in k else 0))
        for k, shape in shapes.items()
        if k != "alignment_heads"
    ]
    model.load_weights(params, strict=False)
    model.set_alignment_heads(np.array([[1, 2], [0, 3]]))
    config = {**asdict(dims), "model_type": "whisper"}
    if layout == "quantized":
        nn.quantize(model, 64, 4)
        config["quantization"] = {"group_size": 64, "bits": 4}
    weights = dict(tree_flatten(model.parameters()))
    if layout == "npz":
        mx.savez(str(tmp_path / "weights.npz"), **weights)
    else:
        mx.save_safetensors(str(tmp_path / "weights.safetensors"), weights)
    (tmp_path / "config.json").write_text(json.dumps(config, indent=4))
    mel = random_mel(seed=5)
    for a, b in zip(run_ours(tmp_path, mel), run_theirs(model, mel), strict=True):
        assert scaled_err(a, b) <= TOL
    assert heads_of(tmp_path) == [[1, 2], [0, 3]]


# ------------------------------------------------------------------ real offline packs


@pytest.mark.parametrize("pack", ["tiny.en", pytest.param("base", marks=pytest.mark.slow)])
def test_pack_matches_ctranslate2(pack, request, jfk_path):
    """Encoder on the jfk log-mel against CTranslate2 float32 on the pack itself, and the decoder's
    token probabilities (CT2's `align`) given CT2's own encoder output."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    from faster_whisper.audio import decode_audio
    from faster_whisper.feature_extractor import FeatureExtractor
    from tokenizers import Tokenizer

    key = pack.replace(".", "_")
    ct2_dir, mlx_dir = (
        request.getfixturevalue(f"{key}_ct2_dir"),
        request.getfixturevalue(f"{key}_dir"),
    )
    audio = decode_audio(str(jfk_path), 16000)
    audio = np.pad(audio, (0, 16000 * 30 - len(audio)))
    features = FeatureExtractor(80)(audio, padding=0)[None, :, :3000].astype(np.float32)
    ct2 = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    ref = np.array(ct2.encode(ctranslate2.StorageView.from_array(features), to_cpu=True))
    model = load_folder(mlx_dir, mx.float32)
    ours = np.array(model.encoder(mx.array(features.transpose(0, 2, 1))))
    err, max_abs = rel_err(ours, ref), float(np.abs(ours - ref).max())
    print(
        f"{pack} encoder vs CTranslate2: rel {err:.2e}, max abs {max_abs:.3g} "
        f"(output max {np.abs(ref).max():.3g})"
    )
    # ~1e-3, not 1e-6: CT2 adds the fp16-rounded sinusoid table stored in model.bin; we (like
    # mlx-whisper) compute it in float32. With CT2's table the two agree to ~3e-6.
    assert err <= 1e-2

    tok = Tokenizer.from_file(str(ct2_dir / "tokenizer.json"))
    tid = tok.token_to_id
    sot = [tid("<|startoftranscript|>")]
    if model.dims.is_multilingual:
        sot += [tid("<|en|>"), tid("<|transcribe|>")]
    eot = tid("<|endoftext|>")
    text = tok.encode(
        " And so my fellow Americans, ask not what your country can do for you,"
        " ask what you can do for your country.",
        add_special_tokens=False,
    ).ids
    probs = np.array(
        ct2.align(ctranslate2.StorageView.from_array(ref), sot, [text], 1100)[0].text_token_probs
    )
    tokens = mx.array([[*sot, tid("<|notimestamps|>"), *text]])
    audio_features = mx.array(ref)
    logits = model.decoder(
        tokens, model.decoder.cross_kv(audio_features), model.decoder.new_cache(1, mx.float32), 0
    )
    # openai-whisper's find_alignment: softmax over text tokens only; numpy float64 because MLX's
    # CPU float32 softmax over 50k entries is off by up to ~4e-4.
    x = np.array(logits, np.float64)[0, len(sot) : -1, :eot]
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ours_probs = p[np.arange(len(text)), text]
    prob_err = float(np.abs(ours_probs - probs).max())
    print(f"{pack} decoder token probabilities vs CTranslate2 align: max abs {prob_err:.2e}")
    assert prob_err <= 1e-3

    config = json.loads((ct2_dir / "config.json").read_text())
    assert heads_of(mlx_dir) == config["alignment_heads"]
    meta = json.loads((mlx_dir / "mlxwx.json").read_text())
    assert meta["suppress_tokens"] == config["suppress_ids"]
    assert meta["begin_suppress_tokens"] == config["suppress_ids_begin"]
    assert (mlx_dir / "tokenizer.json").read_bytes() == (ct2_dir / "tokenizer.json").read_bytes()
    weights = mx.load(str(mlx_dir / "weights.safetensors"))
    assert isinstance(weights, dict) and weights["decoder.ln.weight"].dtype == mx.float16
