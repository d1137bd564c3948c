"""pyannote segmentation VAD: the MLX port vs pyannote.audio (torch) on the same audio.

Builds MINUTES of real speech by repeating the bundled clips (sample.wav, synthconv.wav, the
LibriVox utterances), runs WhisperX's sliding-window inference with both (5 s windows every
0.5 s, max over speakers, overlap-add), and prints seconds, x-realtime and the largest frame-score
difference. torch runs on --threads threads; MLX on the default device (CPU here, or a GPU):

    python bench/bench_vad_pyannote.py [--minutes 10] [--batch 32 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mlxwx  # noqa: F401  first of all: loads a fast BLAS before mlx.core on Linux

# isort: split
import mlx.core as mx
import numpy as np

from mlxwx.audio import load_audio
from mlxwx.vad.pyannote import PyannoteOptions, PyannoteVad
from mlxwx.weights.pyannote import fetch_checkpoint, read_checkpoint
from tests.speech import DATA, LIBRIVOX


def speech(minutes: float) -> np.ndarray:
    clips = [DATA / "sample.wav", DATA / "synthconv.wav", *sorted(LIBRIVOX.glob("*.wav"))]
    one = np.concatenate([np.array(load_audio(p)) for p in clips])
    reps = int(np.ceil(minutes * 60 * 16000 / one.size))
    return np.tile(one, reps)[: int(minutes * 60 * 16000)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--torch-device", default="cpu", help="e.g. cuda")
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args()
    audio = speech(args.minutes)
    seconds = audio.size / 16000
    from mlxwx.weights.pyannote import build

    model = build(*read_checkpoint(fetch_checkpoint()))
    print(f"{seconds / 60:.1f} min of speech, mlx {mx.__version__} on {mx.default_device()}")
    print("| implementation | batch | seconds | x realtime | max abs diff vs torch |")
    print("|---|---|---|---|---|")
    reference = None
    if not args.no_torch:
        import torch

        from tests.pyannote_ref import Reference

        torch.set_num_threads(args.threads)
        ref = Reference(str(fetch_checkpoint()))
        ref.inference.to(torch.device(args.torch_device))
        start = time.perf_counter()
        out = ref.inference({"waveform": torch.from_numpy(audio)[None], "sample_rate": 16000})
        took = time.perf_counter() - start
        reference = out.data[:, 0]
        print(
            f"| pyannote.audio 4.0.7, torch {torch.__version__} on {args.torch_device} "
            f"({args.threads} threads) | "
            f"32 | {took:.1f} | {seconds / took:.0f} | - |",
            flush=True,
        )
    for batch in args.batch:
        vad = PyannoteVad(model, PyannoteOptions(batch_size=batch))
        vad(mx.array(audio[: 16000 * 6]))  # warm-up
        start = time.perf_counter()
        probs = vad(mx.array(audio)).probs
        took = time.perf_counter() - start
        diff = "-" if reference is None else f"{np.abs(np.array(probs) - reference).max():.1e}"
        print(
            f"| mlxwx PyannoteVad | {batch} | {took:.1f} | {seconds / took:.0f} | {diff} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
