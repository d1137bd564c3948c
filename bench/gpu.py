"""Whisper decoding speed on a GPU: mlxwx against mlx-whisper and Hugging Face transformers.

For each model shape (base, large-v3, large-v3-turbo) and batch size, all systems run on the
SAME weights (one MLX parameter tree, shared with mlx-whisper's model class and converted to the
Hugging Face layout by `convert.hf.to_hf_weights`), on the same random log-mel input, for the same
FIXED number of decoded tokens per window: greedy decoding with timestamps (each system's real
decode loop and logit filters) and <|endoftext|> suppressed, so that every window decodes exactly
--tokens tokens. Decoding speed does not depend on the weights' values, so shapes without a
checkpoint here use seeded random weights.

- mlxwx: `mlxwx.asr.decoding.encode`, then `decode_features` (the engine's batched loop), eot
  added to the suppressed tokens.
- mlxwx-compiled: the same with `DecodingOptions(compiled_step=True)` (the decoder step compiled
  once per batch shape over the whole cache; mlxwx builds it op by op by default).
- mlxwx-unfused: the same with each self-attention's query, key and value as three matmuls
  (`Whisper.fuse` undone for the run: mlxwx before it fused them at load).
- mlxwx-kv8: the same with `DecodingOptions(cross_kv_bits=8)` (cross-attention keys and values
  read in 8 bits, a scale and an offset per 64 values).
- mlxwx-q8 / mlxwx-q4: mlxwx on the same weights quantized as mlx-community's Whisper folders are
  (`nn.quantize`, groups of 64, every Linear and Embedding: what `load_model` reads from such a
  folder), 8 or 4 bits.
- mlx-whisper: `mlx_whisper.decoding.decode` (its DecodingTask: one window at a time in its
  transcribe), batch 1, `suppress_tokens=[-1, eot]`, `sample_len=--tokens`.
- transformers: `WhisperForConditionalGeneration` with `attn_implementation="sdpa"`, batched
  `generate(max_new_tokens=N, min_new_tokens=N, return_timestamps=True)` in float16 (the
  insanely-fast-whisper recipe minus its CPU feature extraction), one generate call per batch.

Audio seconds per second = batch * 30 s / (encoder + decode wall time). The bound per decoder step
is the time to read, once, what a step must read from HBM (formula printed with the table).

    python bench/gpu.py [--shapes base,large-v3,large-v3-turbo] [--batches 1,8,32,64]
        [--tokens 100] [--device gpu|cpu] [--smoke] [--base DIR] [--mlx-whisper-path DIR]

Needs mlx (with a GPU backend for --device gpu), numpy, tokenizers, safetensors; mlx-whisper needs
tiktoken (and regex); transformers needs torch. PyAV is not needed (no audio file is decoded).
A tokenizer.json is needed: from --tokenizer, --base DIR, or the mlxwx model cache.

On a machine without these files (the lent H100), carry:
- the mlx_whisper package folder (1.8 MB, pure Python + its .tiktoken assets; only whisper.py,
  decoding.py, audio.py, tokenizer.py, _version.py and assets/ are imported, not its __init__):
  `cp -r $(python -c 'import mlx_whisper,os;print(os.path.dirname(mlx_whisper.__file__))') D/`,
  then `--mlx-whisper-path D`;
- the mlxwx base folder without its weights (config.json, tokenizer.json, mlxwx.json: 2.2 MB),
  then `--base B`: base runs on random weights. weights.safetensors is 137 MiB, over one 64 MiB
  upload: to use the real weights, `split -b 60M -d weights.safetensors weights.safetensors.part`
  and carry the parts into B in successive calls; they are joined in name order.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

try:
    importlib.import_module("av")
except ImportError:
    # mlxwx.audio imports PyAV at the top to decode files; this benchmark decodes none, and the
    # GPU machine has no PyAV wheel. An empty module lets `import mlxwx` work there.
    sys.modules["av"] = types.ModuleType("av")

import mlxwx  # noqa: E402 (first: preloads a fast BLAS on Linux CPUs before mlx.core loads)

# isort: split
import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
import tokenizers  # noqa: E402
from mlx.utils import tree_flatten, tree_unflatten  # noqa: E402

from convert.hf import hf_config, to_hf_weights  # noqa: E402
from mlxwx.asr.decoding import DecodingOptions, decode_features, encode  # noqa: E402
from mlxwx.asr.model import WhisperModel, load_model  # noqa: E402
from mlxwx.asr.tokenizer import Tokenizer  # noqa: E402
from mlxwx.models.whisper import ModelDimensions, Whisper  # noqa: E402
from mlxwx.ops import PACK_GROUP  # noqa: E402
from mlxwx.weights.folder import cache_dir  # noqa: E402

WINDOW_S = 30.0  # audio seconds in one encoder window
HBM_BYTES_PER_S = 3.35e12  # H100 SXM5 HBM3, NVIDIA's datasheet figure
SYSTEMS = (
    "mlxwx",
    "mlxwx-compiled",
    "mlxwx-unfused",
    "mlxwx-kv8",
    "mlxwx-q8",
    "mlxwx-q4",
    "mlx-whisper",
    "transformers",
)
OURS = ("mlxwx", "mlxwx-compiled", "mlxwx-unfused", "mlxwx-kv8", "mlxwx-q8", "mlxwx-q4")
QUANTIZED = {"mlxwx-q8": 8, "mlxwx-q4": 4}  # bits of the weights
QUANT_GROUP = 64  # mlx-community's group size
SHAPES = {  # ModelDimensions of the public checkpoints (their config.json)
    "base": ModelDimensions(80, 1500, 512, 8, 6, 51865, 448, 512, 8, 6),
    "large-v3": ModelDimensions(128, 1500, 1280, 20, 32, 51866, 448, 1280, 20, 32),
    "large-v3-turbo": ModelDimensions(128, 1500, 1280, 20, 32, 51866, 448, 1280, 20, 4),
}
V3_EXTRA_LANGUAGE = ("<|yue|>", 50358)  # large-v3 adds one language token before <|translate|>


def smoke_dims(dims: ModelDimensions) -> ModelDimensions:
    """Tiny widths and depths, real vocabulary, window length and mel bins (the same code paths)."""
    return dataclasses.replace(
        dims,
        n_audio_state=64,
        n_text_state=64,
        n_audio_head=2,
        n_text_head=1,  # heads 64 wide, as in every Whisper (mlxwx-kv8 packs 64 values a group)
        n_audio_layer=max(1, dims.n_audio_layer // 16),
        n_text_layer=max(1, dims.n_text_layer // 16),
    )


# ------------------------------------------------------------------------------ setup


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--shapes", default="base,large-v3,large-v3-turbo")
    p.add_argument("--batches", default=None, help="default 1,8,32,64 (smoke: 1,2)")
    p.add_argument("--tokens", type=int, default=None, help="tokens per window (default 100)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs after 1 warm-up (2)")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    p.add_argument("--smoke", action="store_true", help="tiny shapes and few steps (CPU check)")
    p.add_argument("--base", type=Path, help="mlxwx folder of base (weights may be split)")
    p.add_argument("--tokenizer", type=Path, help="tokenizer.json of the base vocabulary")
    p.add_argument("--mlx-whisper-path", type=Path, help="folder holding the mlx_whisper package")
    p.add_argument("--no-timestamps", action="store_true", help="decode text only (all systems)")
    p.add_argument("--bandwidth", type=float, default=HBM_BYTES_PER_S, help="HBM bytes/s")
    p.add_argument("--budget-s", type=float, default=480.0, help="skip runs after this time")
    p.add_argument("--out", type=Path, help="also write the report (markdown) here")
    args = p.parse_args(argv)
    args.batches = [
        int(b) for b in (args.batches or ("1,2" if args.smoke else "1,8,32,64")).split(",")
    ]
    args.tokens = args.tokens or (8 if args.smoke else 100)
    args.repeats = args.repeats or (1 if args.smoke else 2)
    args.shapes = args.shapes.split(",")
    args.systems = args.systems.split(",")
    unknown = [s for s in args.shapes if s not in SHAPES] + [
        s for s in args.systems if s not in SYSTEMS
    ]
    if unknown:
        p.error(f"unknown shapes/systems {unknown}; shapes: {list(SHAPES)}, systems: {SYSTEMS}")
    return args


def setup_device(name: str) -> mx.Dtype:
    """Default device for MLX, and the dtype every system runs in (float16 on the GPU)."""
    try:
        mlxwx.use_device(name)
    except mlxwx.MlxwxError as err:
        sys.exit(f"--device {name}: {err}")
    return mlxwx.asr.model.default_dtype()


def find_base_folder(given: Path | None) -> Path | None:
    if given is not None:
        return given
    found = sorted((cache_dir() / "models").glob("base-*"))
    return found[0] if found else None


def tokenizer_json(args: argparse.Namespace) -> Path:
    for path in (
        args.tokenizer,
        (find_base_folder(args.base) or Path("/nonexistent")) / "tokenizer.json",
    ):
        if path is not None and path.exists():
            return path
    sys.exit("no tokenizer.json: pass --tokenizer FILE or --base DIR (an mlxwx base folder)")


def v3_tokenizer_text(text: str) -> str:
    """large-v3's vocabulary from the base one: <|yue|> inserted at 50358, later specials +1."""
    spec = json.loads(text)
    name, at = V3_EXTRA_LANGUAGE
    added = spec["added_tokens"]
    if any(t["content"] == name for t in added):
        return text
    template = dict(added[0])
    for t in added:
        t["id"] += t["id"] >= at
    added.append({**template, "id": at, "content": name})
    added.sort(key=lambda t: t["id"])
    for special in (spec.get("post_processor") or {}).get("special_tokens", {}).values():
        special["ids"] = [i + (i >= at) for i in special["ids"]]
    return json.dumps(spec)


def make_tokenizer(path: Path, n_vocab: int) -> Tokenizer:
    text = path.read_text()
    if n_vocab == 51866:
        text = v3_tokenizer_text(text)
    tokenizer = Tokenizer(tokenizers.Tokenizer.from_str(text), multilingual=True)
    if tokenizer.timestamp_begin + 1501 != n_vocab:
        raise ValueError(f"tokenizer does not fit a {n_vocab}-token model")
    return tokenizer


# ------------------------------------------------------------------------------ models


def random_model(dims: ModelDimensions, tokenizer: Tokenizer, dtype: mx.Dtype) -> WhisperModel:
    """Seeded random weights (MLX's default initialisers) in `dtype`."""
    mx.random.seed(0)
    model = Whisper(dims)
    model.set_dtype(dtype, lambda x: mx.issubdtype(x, mx.floating))
    mx.eval(model.parameters())
    model.fuse()  # as `load_model` does
    space = tokenizer.encode(" ")[0]
    return WhisperModel(
        model=model,
        tokenizer=tokenizer,
        path=Path("random"),
        suppress_tokens=tokenizer.suppress_tokens(),
        begin_suppress_tokens=(space, tokenizer.eot),
    )


def quantized(wm: WhisperModel, bits: int) -> WhisperModel:
    """A copy of `wm` whose Linear and Embedding layers are quantized to `bits` in groups of
    QUANT_GROUP (`nn.quantize`'s default choice of layers, as mlx-community's folders); `wm` is
    left as it is."""
    model = Whisper(wm.dims)
    model.update(tree_unflatten(flat(wm.model)))
    nn.quantize(model, group_size=QUANT_GROUP, bits=bits)
    mx.eval(model.parameters())
    model.fuse()  # as `load_model` does: the quantized projections stay apart
    return dataclasses.replace(wm, model=model)


def join_parts(folder: Path, into: Path) -> Path:
    """An mlxwx folder at `into` whose weights.safetensors joins folder's weights.safetensors.part*
    (sorted by name): a 145 MB file cannot travel in one 64 MiB upload."""
    into.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        if f.is_file() and not f.name.startswith("weights.safetensors"):
            shutil.copyfile(f, into / f.name)
    with open(into / "weights.safetensors", "wb") as out:
        for part in sorted(folder.glob("weights.safetensors.part*")):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 24)
    return into


def base_model(
    args: argparse.Namespace, dtype: mx.Dtype, tok_path: Path
) -> tuple[WhisperModel, str]:
    """The real base checkpoint if its weights are here (whole or in parts), else random weights."""
    folder = find_base_folder(args.base)
    if folder is not None and (folder / "weights.safetensors").exists():
        return load_model(str(folder), dtype), f"real weights ({folder})"
    if folder is not None and any(folder.glob("weights.safetensors.part*")):
        tmp = Path(tempfile.mkdtemp(prefix="mlxwx-base-"))
        wm = load_model(str(join_parts(folder, tmp)), dtype)
        return wm, f"real weights ({folder}, joined from parts)"
    tok = make_tokenizer(tok_path, SHAPES["base"].n_vocab)
    return random_model(SHAPES["base"], tok, dtype), "RANDOM weights (base weights not given)"


def shape_model(
    name: str, args: argparse.Namespace, dtype: mx.Dtype, tok_path: Path
) -> tuple[WhisperModel, str]:
    if args.smoke:
        dims = smoke_dims(SHAPES[name])
        return random_model(dims, make_tokenizer(tok_path, dims.n_vocab), dtype), "random (smoke)"
    if name == "base":
        return base_model(args, dtype, tok_path)
    dims = SHAPES[name]
    return random_model(dims, make_tokenizer(tok_path, dims.n_vocab), dtype), "random weights"


def fixed_length(wm: WhisperModel) -> WhisperModel:
    """The same model with <|endoftext|> never sampled: every window decodes sample_len tokens."""
    return dataclasses.replace(
        wm, suppress_tokens=tuple(sorted({*wm.suppress_tokens, wm.tokenizer.eot}))
    )


# ------------------------------------------------------------------------------ measuring


@dataclass
class Row:
    shape: str
    system: str
    batch: int
    tokens: int  # decoded per window (checked)
    encoder_s: float
    decode_s: float
    peak_bytes: float | None
    bound_s: float  # per decoder step
    note: str = ""

    @property
    def audio_per_s(self) -> float:
        return self.batch * WINDOW_S / (self.encoder_s + self.decode_s)

    @property
    def step_s(self) -> float:
        return self.decode_s / self.tokens


class Clock:
    """Elapsed time since start, progress lines, and the time budget."""

    def __init__(self, budget_s: float):
        self.start, self.budget_s = time.perf_counter(), budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def say(self, text: str) -> None:
        print(f"[{self.elapsed():6.1f} s] {text}", flush=True)

    def over(self) -> bool:
        return self.elapsed() > self.budget_s


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


Runner = tuple[Callable[[], object], Callable[[], list[list[int]]]]


def measure(runner: Runner, repeats: int) -> tuple[float, float, int]:
    """Median encoder and decode seconds over `repeats` runs after one warm-up, and the tokens
    decoded per window. runner: (encoder alone, whole decode call returning tokens per window);
    decode time = whole call - encoder alone."""
    encode_only, decode_all = runner
    runs = []
    for i in range(repeats + 1):
        t_enc, _ = timed(encode_only)
        t_all, tokens = timed(decode_all)
        lengths = {len(t) for t in tokens}
        if len(lengths) != 1:
            raise RuntimeError(f"windows decoded different lengths {sorted(lengths)}")
        if i > 0:  # the first run warms up
            runs.append((t_enc, t_all - t_enc, lengths.pop()))
    counts = {r[2] for r in runs}
    if len(counts) != 1:
        raise RuntimeError(f"decode length varied between runs: {sorted(counts)}")
    enc = statistics.median(r[0] for r in runs)
    return enc, statistics.median(r[1] for r in runs), counts.pop()


def flat(module: nn.Module) -> list[tuple[str, mx.array]]:
    return tree_flatten(module.parameters())  # type: ignore[return-value]


def decoder_step_bytes(
    model: Whisper, batch: int, prompt: int, tokens: int, cross_bits: int | None = None
) -> float:
    """Bytes one decode step must read from memory, averaged over the decode (see FORMULA);
    `cross_bits`: cross-attention keys and values packed in that many bits (plus a scale and
    an offset in the model's dtype per PACK_GROUP values; keys stored in whole groups of
    PACK_GROUP frames, `mlxwx.ops.pack`)."""
    dims, itemsize = model.dims, model.dtype.size
    skip = (".cross_attn.key.", ".cross_attn.value.", "positional_embedding")
    weights = sum(v.nbytes for k, v in flat(model.decoder) if not any(s in f".{k}" for s in skip))
    per_row = batch * dims.n_text_layer * 2 * dims.n_text_state
    frames, key_frames = dims.n_audio_ctx, dims.n_audio_ctx
    cross = float(itemsize)
    if cross_bits is not None:
        cross = cross_bits / 8 + 2 * itemsize / PACK_GROUP
        key_frames = -(-frames // PACK_GROUP) * PACK_GROUP
    own = prompt + (tokens + 1) / 2
    return weights + per_row * own * itemsize + per_row * (frames + key_frames) / 2 * cross


FORMULA = (
    "bound per step = [W + B * L * 2 * d * (n_audio_ctx + P + (N + 1) / 2) * s] / BW, where W = "
    "bytes of the decoder parameters read per step (all but the cross-attention K/V projections, "
    "which run once per window, and the positional table, of which one row is read; the token "
    "embedding counted once, as the output projection; quantized layers (mlxwx-q8/q4) as stored: "
    "packed weights, scales and offsets), B = batch, L = decoder layers, d = width, "
    "2*d*(n_audio_ctx) = cross-attention K+V per row and layer, P + (N+1)/2 = mean self-attention "
    "positions read (P = prompt tokens, N = decoded tokens), s = bytes per element (2 for fp16), "
    "BW = HBM bandwidth; for mlxwx-kv8 the cross-attention K+V count 1 + 4/64 bytes an element "
    "(8 bits, a float16 scale and offset per 64), the keys over whole groups of 64 frames (1536 "
    "for 1500)"
)


@contextlib.contextmanager
def unfused(model: Whisper, really: bool = True) -> Iterator[None]:
    """While inside (if `really`): every self-attention of `model` projects with three matmuls,
    as mlxwx did before `Whisper.fuse` (the fused matrices are put back on leaving)."""
    attns = [b.attn for b in [*model.encoder.blocks, *model.decoder.blocks]]
    kept = [a.pop("_qkv", None) for a in attns] if really else []  # modules are dicts
    try:
        yield
    finally:
        for a, fused in zip(attns, kept, strict=False):
            if fused is not None:
                a._qkv = fused


def mlxwx_runner(
    wm: WhisperModel, mel: mx.array, tokens: int, timestamps: bool, system: str = "mlxwx"
) -> Runner:
    """The engine's path: `encode` then `decode_features` on the whole batch; mlxwx-compiled:
    the decoder step option (`DecodingOptions.compiled_step`); mlxwx-unfused: three matmuls
    for query, key and value; mlxwx-kv8: 8-bit cross keys."""
    wm = fixed_length(wm)
    plain = system == "mlxwx-unfused"
    options = DecodingOptions(
        beam_size=1,
        language="en",
        sample_len=tokens,
        without_timestamps=not timestamps,
        compiled_step=system == "mlxwx-compiled",
        cross_kv_bits=8 if system == "mlxwx-kv8" else None,
        stop_loops=False,  # random weights loop: the guard would end rows early
    )

    def encode_only() -> None:
        with unfused(wm.model, plain):
            mx.eval(encode(wm, mel))

    def decode_all() -> list[list[int]]:
        with unfused(wm.model, plain):
            return [r.tokens for r in decode_features(wm, encode(wm, mel), options)]

    return encode_only, decode_all


# ------------------------------------------------------------------------------ mlx-whisper


def import_mlx_whisper(path: Path | None) -> tuple[types.ModuleType, types.ModuleType, str]:
    """mlx_whisper.whisper and .decoding without the package's __init__ (which would import
    transcribe -> numba, scipy, tqdm, huggingface_hub). They need mlx, numpy and tiktoken."""
    if "mlx_whisper" in sys.modules:
        pkg_dir = Path(next(iter(sys.modules["mlx_whisper"].__path__)))
    elif path is not None:
        pkg_dir = path / "mlx_whisper"
    else:
        found = importlib.util.find_spec("mlx_whisper")
        if found is None or not found.submodule_search_locations:
            raise ImportError("mlx_whisper not installed; pass --mlx-whisper-path")
        pkg_dir = Path(next(iter(found.submodule_search_locations)))
    if not (pkg_dir / "decoding.py").exists():
        raise ImportError(f"{pkg_dir} is not the mlx_whisper package")
    if "mlx_whisper" not in sys.modules:  # the package, its __init__ not run
        spec = importlib.machinery.ModuleSpec("mlx_whisper", None, is_package=True)
        spec.submodule_search_locations = [str(pkg_dir)]
        sys.modules["mlx_whisper"] = importlib.util.module_from_spec(spec)
    whisper = importlib.import_module("mlx_whisper.whisper")
    decoding = importlib.import_module("mlx_whisper.decoding")
    version = re.search(r"['\"](.+)['\"]", (pkg_dir / "_version.py").read_text())
    return whisper, decoding, f"{version.group(1) if version else '?'} ({pkg_dir})"


def mlx_whisper_runner(
    mw: tuple[types.ModuleType, types.ModuleType, str],
    wm: WhisperModel,
    mel: mx.array,
    tokens: int,
    timestamps: bool,
) -> Runner:
    """mlx-whisper's model class holding our parameter arrays (shared, not copied), decoded by
    its `decode` (DecodingTask: encoder, then its loop)."""
    whisper, decoding, _ = mw
    dtype = wm.model.dtype
    theirs = whisper.Whisper(whisper.ModelDimensions(**wm.dims.to_dict()), dtype)
    theirs.update(tree_unflatten(flat(wm.model)))
    mx.eval(theirs.parameters())
    options = decoding.DecodingOptions(
        language="en",
        sample_len=tokens,
        suppress_tokens=[-1, wm.tokenizer.eot],  # -1: its default non-speech symbols
        without_timestamps=not timestamps,
        fp16=dtype == mx.float16,
    )

    def encode_only() -> None:
        mx.eval(theirs.encoder(mel.astype(dtype)))

    def decode_all() -> list[list[int]]:
        return [list(r.tokens) for r in decoding.decode(theirs, mel, options)]

    return encode_only, decode_all


# ------------------------------------------------------------------------------ transformers


def build_hf(wm: WhisperModel, device: str) -> Any:
    """WhisperForConditionalGeneration (SDPA) on `device` holding our weights, tied projection."""
    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # not its per-call notes on max/min lengths
    tok, dims = wm.tokenizer, wm.dims
    dtype = torch.float16 if wm.model.dtype == mx.float16 else torch.float32
    config = transformers.WhisperConfig(
        **hf_config(dims),
        decoder_start_token_id=tok.sot,
        bos_token_id=tok.eot,
        eos_token_id=tok.eot,
        pad_token_id=tok.eot,
    )
    state = to_hf_weights(dict(flat(wm.model)), dims)
    with torch.device("meta"):
        model = transformers.WhisperForConditionalGeneration._from_config(
            config, attn_implementation="sdpa", dtype=dtype
        )
    tensors = {k: torch.from_numpy(v).to(device=device, dtype=dtype) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False, assign=True)
    model.tie_weights()
    if set(missing) - {"proj_out.weight"} or unexpected:
        raise RuntimeError(f"HF state dict mismatch: missing {missing}, unexpected {unexpected}")
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        raise RuntimeError("HF proj_out is not tied to embed_tokens")
    model.generation_config = hf_generation_config(wm)
    return model.eval()


def hf_generation_config(wm: WhisperModel) -> Any:
    """What openai/whisper-* repos' generation_config.json holds, from our tokenizer."""
    import transformers

    tok = wm.tokenizer
    return transformers.GenerationConfig(
        decoder_start_token_id=tok.sot,
        bos_token_id=tok.eot,
        eos_token_id=tok.eot,
        pad_token_id=tok.eot,
        no_timestamps_token_id=tok.no_timestamps,
        prev_sot_token_id=tok.sot_prev,
        lang_to_id={f"<|{code}|>": i for code, i in tok.languages.items()},
        task_to_id={"transcribe": tok.transcribe, "translate": tok.translate},
        is_multilingual=True,
        max_initial_timestamp_index=50,
        suppress_tokens=list(wm.suppress_tokens),
        begin_suppress_tokens=list(wm.begin_suppress_tokens),
    )


def hf_runner(
    model: Any, wm: WhisperModel, mel_np: np.ndarray, tokens: int, timestamps: bool
) -> Runner:
    """Batched `generate`, one call (force_unique_generate_call: no re-decoding from the last
    timestamp), exactly `tokens` new tokens per window (min_new_tokens masks <|endoftext|>)."""
    import torch

    param = next(model.parameters())
    features = torch.from_numpy(mel_np.transpose(0, 2, 1).copy()).to(param.device, param.dtype)
    prompt = len(wm.tokenizer.sot_sequence("en", "transcribe", timestamps))

    def sync() -> None:
        if param.device.type == "cuda":
            torch.cuda.synchronize()

    def encode_only() -> None:
        with torch.inference_mode():
            model.model.encoder(features)
        sync()

    def decode_all() -> list[list[int]]:
        with torch.inference_mode():
            out = model.generate(
                input_features=features,
                language="en",
                task="transcribe",
                return_timestamps=timestamps,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
                num_beams=1,
                force_unique_generate_call=True,
                return_dict_in_generate=True,
            )
        return out.sequences[:, prompt:].tolist()

    return encode_only, decode_all


# ------------------------------------------------------------------------------ driver


class Memory:
    """Peak device memory of one allocator since `reset` (MLX or torch)."""

    def __init__(self, system: str, device: str):
        self.torch = system == "transformers"
        self.device = device

    def reset(self) -> None:
        if self.torch:
            import torch

            if self.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
        else:
            mx.reset_peak_memory()

    def peak(self) -> float | None:
        if self.torch:
            import torch

            return float(torch.cuda.max_memory_allocated()) if self.device == "cuda" else None
        return float(mx.get_peak_memory())


def free_memory(torch_too: bool) -> None:
    gc.collect()
    mx.clear_cache()
    if torch_too:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


@dataclass
class Shape:
    """One shape's model and input, shared by every system."""

    name: str
    wm: WhisperModel
    mel: np.ndarray  # (max batch, 2 * n_audio_ctx, n_mels) float32
    hf: Any = None  # the transformers model, while its rows run
    variant: tuple[str, WhisperModel] | None = None  # the last quantized copy of wm made


def measure_row(shape: Shape, system: str, batch: int, args: argparse.Namespace, mw: Any) -> Row:
    wm, stamps = shape.wm, not args.no_timestamps
    torch_device = "cuda" if args.device == "gpu" else "cpu"
    memory = Memory(system, torch_device)
    memory.reset()
    mel = mx.array(shape.mel[:batch]).astype(wm.model.dtype)
    if system in QUANTIZED:
        if shape.variant is None or shape.variant[0] != system:  # one copy at a time
            shape.variant = (system, quantized(shape.wm, QUANTIZED[system]))
        wm = shape.variant[1]
    if system in OURS:
        runner = mlxwx_runner(wm, mel, args.tokens, stamps, system)
    elif system == "mlx-whisper":
        runner = mlx_whisper_runner(mw, wm, mel, args.tokens, stamps)
    else:
        runner = hf_runner(shape.hf, wm, shape.mel[:batch], args.tokens, stamps)
    enc, dec, n = measure(runner, args.repeats)
    prompt = len(wm.tokenizer.sot_sequence("en", "transcribe", stamps))
    bits = 8 if system == "mlxwx-kv8" else None
    bound = decoder_step_bytes(wm.model, batch, prompt, n, bits) / args.bandwidth
    row = Row(shape.name, system, batch, n, enc, dec, memory.peak(), bound)
    if n != args.tokens:
        row.note = f"decoded {n} tokens, asked {args.tokens}"
    return row


def bench_system(
    shape: Shape, system: str, args: argparse.Namespace, mw: Any, clock: Clock
) -> tuple[list[Row], list[str]]:
    """Rows of one system at each batch size; a failing row is reported, the rest still run."""
    rows, failures = [], []
    batches = [1] if system == "mlx-whisper" else args.batches
    clock.say(f"{shape.name} {system}: batches {batches}")
    for batch in batches:
        where = f"{shape.name} {system} B={batch}"
        if clock.over():
            failures.append(f"{where}: skipped (time budget {args.budget_s:.0f} s)")
            clock.say(failures[-1])
            continue
        try:
            row = measure_row(shape, system, batch, args, mw)
        except Exception as err:  # out of memory, a library error: keep the other rows
            failures.append(f"{where}: failed ({type(err).__name__}: {err})")
            clock.say(failures[-1])
            free_memory(system == "transformers")
            continue
        rows.append(row)
        clock.say(
            f"{where}: encoder {row.encoder_s * 1e3:.1f} ms, decode {row.decode_s * 1e3:.1f} ms"
            f" ({row.tokens} tokens), {row.audio_per_s:.1f} audio s/s"
        )
    return rows, failures


def bench_shape(
    name: str, args: argparse.Namespace, dtype: mx.Dtype, tok_path: Path, clock: Clock, mw: Any
) -> tuple[list[Row], list[str], str]:
    wm, source = shape_model(name, args, dtype, tok_path)
    clock.say(f"{name}: {source}; dims {wm.dims.to_dict()}")
    rng = np.random.default_rng(0)
    mel = rng.standard_normal((max(args.batches), 2 * wm.dims.n_audio_ctx, wm.dims.n_mels))
    shape = Shape(name, wm, mel.astype(np.float32))
    rows: list[Row] = []
    failures: list[str] = []
    for system in args.systems:
        if system == "mlx-whisper" and mw is None:
            continue  # reported once by load_mlx_whisper
        if clock.over():
            failures.append(f"{name} {system}: skipped (time budget {args.budget_s:.0f} s)")
            continue
        if system == "transformers":
            free_memory(False)
            try:
                shape.hf = build_hf(wm, "cuda" if args.device == "gpu" else "cpu")
            except Exception as err:  # missing torch/transformers/CUDA: report, go on
                failures.append(f"{name} transformers: not run ({type(err).__name__}: {err})")
                clock.say(failures[-1])
                continue
        got, failed = bench_system(shape, system, args, mw, clock)
        rows, failures = rows + got, failures + failed
        if system == "transformers":
            shape.hf = None
            free_memory(True)
    del shape, wm
    free_memory(False)
    return rows, failures, source


# ------------------------------------------------------------------------------ report


def versions(args: argparse.Namespace, mw: Any) -> list[str]:
    lines = [
        f"command: python {shlex.join(sys.argv)}",
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"platform: {platform.platform()}, python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs",
        f"mlx {dist_version('mlx')} (mlx-cuda-13 {dist_version('mlx-cuda-13')}, mlx-cpu "
        f"{dist_version('mlx-cpu')}), device {mx.default_device()}, "
        f"mlxwx {mlxwx.__version__} ({git_commit()})",
    ]
    if mx.default_device() == mx.gpu:
        info = mx.device_info()
        memory = float(info.get("memory_size", 0)) / 2**30
        lines.append(f"mlx gpu: {info.get('device_name', '?')}, {memory:.0f} GiB")
    lines.append(f"mlx-whisper: {mw[2] if mw else 'not run'}")
    try:
        import torch
        import transformers

        cuda = f"cuda {torch.version.cuda}" if torch.cuda.is_available() else "no cuda"
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        lines.append(
            f"torch {torch.__version__} ({cuda}, {name}), transformers {transformers.__version__}"
        )
    except ImportError as err:
        lines.append(f"torch/transformers: not available ({err})")
    lines.append(f"driver: {nvidia_driver()}")
    return lines


def dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        return out.stdout.strip() or "no git"
    except OSError:
        return "no git"


def nvidia_driver() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip() or "n/a"
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"


def table(rows: list[Row]) -> list[str]:
    out = [
        "| shape | system | B | tokens/window | encoder ms | decode ms | ms/step | bound ms/step "
        "| step / bound | audio s/s | peak GiB | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        peak = f"{r.peak_bytes / 2**30:.2f}" if r.peak_bytes is not None else "n/a"
        out.append(
            f"| {r.shape} | {r.system} | {r.batch} | {r.tokens} | {r.encoder_s * 1e3:.1f} "
            f"| {r.decode_s * 1e3:.1f} | {r.step_s * 1e3:.3f} | {r.bound_s * 1e3:.3f} "
            f"| {r.step_s / r.bound_s:.1f}x | {r.audio_per_s:.1f} | {peak} | {r.note} |"
        )
    return out


def summary(rows: list[Row], shapes: list[str]) -> list[str]:
    """Per shape: each system's best throughput, and the issue's three goals."""
    out = [
        "| shape | mlxwx best audio s/s (B) | transformers best (B) | mlx-whisper B=1 "
        "| mlxwx / transformers (goal >= 1.5x) | mlxwx / mlx-whisper (goal >= 5x) "
        "| mlxwx step / bound at B=1 (goal <= 3x) |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for shape in shapes:
        best: dict[str, Row | None] = {}
        for system in SYSTEMS:
            mine = [r for r in rows if r.shape == shape and r.system == system]
            best[system] = max(mine, key=lambda r: r.audio_per_s) if mine else None
        mine = [r for s in OURS if (r := best[s]) is not None]
        ours = max(mine, key=lambda r: r.audio_per_s) if mine else None
        hf, mw = best["transformers"], best["mlx-whisper"]
        ones = [r for r in rows if r.shape == shape and r.system in OURS and r.batch == 1]
        one = sorted(ones, key=lambda r: r.step_s / r.bound_s)[:1]

        def cell(r: Row | None) -> str:
            name = f", {r.system}" if r and r.system in OURS and r.system != "mlxwx" else ""
            return f"{r.audio_per_s:.1f} ({r.batch}{name})" if r else "n/a"

        def ratio(a: Row | None, b: Row | None) -> str:
            return f"{a.audio_per_s / b.audio_per_s:.2f}x" if a and b else "n/a"

        bound = f"{one[0].step_s / one[0].bound_s:.1f}x" if one else "n/a"
        out.append(
            f"| {shape} | {cell(ours)} | {cell(hf)} | {cell(mw)} | {ratio(ours, hf)} "
            f"| {ratio(ours, mw)} | {bound} |"
        )
    return out


def report(
    args: argparse.Namespace,
    head: list[str],
    rows: list[Row],
    sources: dict[str, str],
    failures: list[str],
) -> str:
    lines = [*head, ""]
    lines += [f"- {shape}: {src}" for shape, src in sources.items()]
    lines += [
        "",
        "Speed does not depend on the weights' values: shapes without a checkpoint here run "
        "seeded random weights; all systems share each shape's weights and input.",
        f"Decode: greedy, {'no ' if args.no_timestamps else ''}timestamps, language en, "
        f"<|endoftext|> suppressed so that each window decodes exactly {args.tokens} tokens "
        "(tokens/window column: checked per run). Each figure: median of "
        f"{args.repeats} run(s) after one warm-up. encoder ms: the encoder alone; decode ms: the "
        "rest (mlxwx: decode_features; mlx-whisper: decode() minus its encoder; transformers: "
        "generate() minus its encoder). ms/step = decode ms / tokens (includes the prompt "
        "forward, the cross-attention K/V projection and the logit filters). Peak: each "
        "allocator's own peak (mx.get_peak_memory / torch.cuda.max_memory_allocated), reset "
        "before each row, weights included.",
        f"{FORMULA}; BW = {args.bandwidth:.3g} B/s.",
        "",
        *table(rows),
        "",
        *summary(rows, list(sources)),
    ]
    if failures:
        lines += ["", "Not measured:", *[f"- {f}" for f in failures]]
    return "\n".join(lines) + "\n"


def load_mlx_whisper(args: argparse.Namespace, clock: Clock, failures: list[str]) -> Any:
    if "mlx-whisper" not in args.systems:
        return None
    try:
        return import_mlx_whisper(args.mlx_whisper_path)
    except Exception as err:  # missing package or tiktoken: report, run the rest
        failures.append(f"mlx-whisper: not run ({type(err).__name__}: {err})")
        clock.say(failures[-1])
        return None


def kv8_check(dtype: mx.Dtype) -> str:
    """8-bit packed attention against attention over the values the packing stands for, at a
    beam-5 step's shapes (64 windows, 20 heads, 1500 keys): the device's quantized kernels."""
    from mlxwx.ops import attention, pack, unpack

    shapes = [(64, 20, 5, 64), (64, 20, 1500, 64), (64, 20, 1500, 64)]
    q, k, v = (mx.random.normal(s, key=mx.random.key(i)) for i, s in enumerate(shapes))
    q, k, v = q.astype(dtype), k.astype(dtype), v.astype(dtype)
    pk, pv = pack(k, 8, keys=True), pack(v, 8)
    dk, dv = unpack(pk), unpack(pv)
    got = attention(q, pk, pv, 0.125).astype(mx.float32)
    want = mx.fast.scaled_dot_product_attention(q, dk, dv, scale=0.125).astype(mx.float32)
    err, top = mx.abs(got - want).max().item(), mx.abs(want).max().item()
    return f"kv8 check ({dtype}): max |packed - unpacked| {err:.2e}, values up to {top:.2f}"


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    clock = Clock(args.budget_s)
    dtype = setup_device(args.device)
    tok_path = tokenizer_json(args)
    failures: list[str] = []
    mw = load_mlx_whisper(args, clock, failures)
    head = versions(args, mw)
    if "mlxwx-kv8" in args.systems:
        head.append(kv8_check(dtype))
    print("\n".join(head), flush=True)
    rows: list[Row] = []
    sources: dict[str, str] = {}
    for shape in args.shapes:
        if clock.over():
            failures.append(f"{shape}: skipped (time budget {args.budget_s:.0f} s)")
            continue
        got, failed, sources[shape] = bench_shape(shape, args, dtype, tok_path, clock, mw)
        rows, failures = rows + got, failures + failed
        if args.out:  # after each shape: a run cut short still leaves its table
            args.out.write_text(report(args, head, rows, sources, failures))
    text = report(args, head, rows, sources, failures)
    text += f"\ntotal time {clock.elapsed():.0f} s\n"
    print("\n" + text, flush=True)
    if args.out:
        args.out.write_text(text)
    return text


if __name__ == "__main__":
    main()
