"""python -m convert {ct2,hf,openai,silero} SRC DST

Whisper formats also take [--dtype ...] [--quantize BITS] [--group-size N].
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlxwx.weights.whisper import DTYPES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convert", description="Convert a Whisper checkpoint to an MLX folder."
    )
    p.add_argument(
        "format",
        choices=("ct2", "hf", "openai", "silero", "pyannote"),
        help="ct2: CTranslate2 folder; hf: Hugging Face folder; openai: .pt file; "
        "silero: silero-vad .onnx/.safetensors file or package folder; "
        "pyannote: segmentation checkpoint file ('whisperx': the one in its wheel), float32",
    )
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path, help="output folder (must not exist)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float16")
    p.add_argument(
        "--quantize",
        type=int,
        choices=(2, 3, 4, 5, 6, 8),
        metavar="BITS",
        help="quantize Linear/Embedding weights to BITS bits",
    )
    p.add_argument("--group-size", type=int, default=64, choices=(32, 64, 128))
    p.add_argument("--tokenizer", type=Path, help="openai: tokenizer.json to copy")
    p.add_argument(
        "--alignment-heads",
        help="openai: JSON [[layer, head], ...] or openai-whisper's base85 dump",
    )
    return p


def run(args: argparse.Namespace) -> Path:
    if args.format == "silero":
        from .silero import convert as convert_silero

        return convert_silero(args.src, args.dst)
    if args.format == "pyannote":
        from .pyannote import convert as convert_pyannote

        return convert_pyannote(None if str(args.src) == "whisperx" else args.src, args.dst)
    quantize = (args.group_size, args.quantize) if args.quantize else None
    common = {"dtype": args.dtype, "quantize": quantize}
    if args.format == "openai":
        from .openai import convert as convert_openai

        return convert_openai(
            args.src,
            args.dst,
            tokenizer=args.tokenizer,
            alignment_heads=args.alignment_heads,
            **common,
        )
    if args.tokenizer is not None or args.alignment_heads is not None:
        raise ValueError("--tokenizer and --alignment-heads apply to openai checkpoints only")
    if args.format == "ct2":
        from .ct2 import convert as convert_ct2

        return convert_ct2(args.src, args.dst, **common)
    from .hf import convert as convert_hf

    return convert_hf(args.src, args.dst, **common)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        dst = run(args)
    except (ValueError, OSError, KeyError, RuntimeError) as err:
        text = f"missing {err.args[0]}" if isinstance(err, KeyError) else str(err)
        message = text.splitlines()[0] if text else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
