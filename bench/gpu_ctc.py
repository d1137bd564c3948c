"""The wav2vec2 aligner's CTC paths by the GPU kernel (`mlxwx.align.ctc.GPU_PATHS`) against
numpy's, on the GPU machine (MLX CUDA or Metal, torch with cuda or mps):

1. the same spans from the same emissions (a random base-sized wav2vec2 of
   tests/speech.py, noise segments of 0.3-28 s with texts holding digits and symbols);
2. `align_segments` over ~10 minutes of such segments (150, lengths log-normal around 3.5 s),
   paths by the kernel and by numpy, in the aligner's batches (64 segments / 120 s of padded
   audio) and in larger ones (256 / 600 s), in alternating runs after a warm-up: the align
   stage's time each way and whether every word is the same;
3. with --profile, one more `align_segments` each way under cProfile: the time inside the
   model's launches, the wait for its output, the paths, and the words.

    python bench/gpu_ctc.py [--device cuda] [--segments 150] [--rounds 4] [--variants ...]
        [--profile]

Speed does not depend on the weights' values (random weights, peaky emissions).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlxwx  # noqa: F401  (first: a fast BLAS before mlx.core on Linux CPUs)

# isort: split
import mlx.core as mx

from mlxwx.align import ctc
from mlxwx.align import wav2vec2 as w
from tests.speech import save_random_wav2vec2

VOCAB = "the quick brown fox jumps over a lazy dog 42 times at $5 mail@x.org".split()


def segments(seconds: list[float], seed: int) -> list[tuple[np.ndarray, float, str]]:
    """(audio, start, text) noise segments, 2.5 words a second of text."""
    rng = np.random.default_rng(seed)
    out = []
    for i, s in enumerate(seconds):
        audio = (0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32)
        out.append((audio, float(i), " ".join(rng.choice(VOCAB, max(1, int(s * 2.5))))))
    return out


def same_spans(aligner: w.Aligner) -> None:
    segs = segments([0.7, 2.5, 7.3, 12.0, 28.0, 1.1, 4.4, 19.5, 0.3], seed=0)
    encoded = [ctc.encode_chars(t, aligner.vocab, aligner.delimiter) for _, _, t in segs]
    logps = w.emissions(aligner, [a for a, _, _ in segs])
    spans = {}
    for on in (True, False):
        ctc.GPU_PATHS = on
        spans[on] = ctc.forced_align_batch(logps, [e[0] for e in encoded], aligner.blank)
    same = sum(a == b for a, b in zip(spans[True], spans[False], strict=True))
    print(f"same emissions: spans identical for {same} of {len(segs)} segments")


def timing_segments(count: int) -> list[tuple[np.ndarray, float, str]]:
    """The timed runs' `count` segments: lengths log-normal around 3.5 s, within 0.5-28 s."""
    rng = np.random.default_rng(1)
    seconds = np.clip(rng.lognormal(np.log(3.5), 0.7, count), 0.5, 28.0).tolist()
    return segments(seconds, seed=2)


def timed(aligner: w.Aligner, count: int, rounds: int, variants: list[str]) -> None:
    """`align_segments` over `count` segments in each variant ("kernel" or "numpy" paths, then
    "/SIZE/SECONDS": the aligner's batches of at most SIZE segments and SECONDS of padded
    audio), in alternating runs after a warm-up; the word times of every variant compared (the
    scores may differ in the last bits: batched matmuls of other shapes)."""
    segs = timing_segments(count)
    seconds = sum(len(audio) for audio, _, _ in segs) / 16000
    print(f"align_segments: {len(segs)} segments, {seconds:.0f} s of audio")
    times: dict[str, list[float]] = {v: [] for v in variants}
    words = {}
    default_seconds = w.BATCH_SECONDS
    for k in range(rounds + 1):  # the first round warms up
        for variant in variants:
            paths, size, batch_seconds = variant.split("/")
            ctc.GPU_PATHS = paths == "kernel"
            w.BATCH_SECONDS = float(batch_seconds)
            start = time.perf_counter()
            out = w.align_segments(aligner, segs, batch_size=int(size))
            if k:
                times[variant].append(time.perf_counter() - start)
            words[variant] = [[(x.word, x.start, x.end) for x in a.words] for a in out]
    w.BATCH_SECONDS = default_seconds
    for variant in variants:
        runs = " ".join(f"{t:.3f}" for t in times[variant])
        print(f"paths by {variant}: median {statistics.median(times[variant]):.3f} s ({runs})")
    total = sum(len(x) for x in words[variants[0]])
    for variant in variants[1:]:
        same = sum(a == b for a, b in zip(words[variants[0]], words[variant], strict=True))
        print(
            f"{variant} against {variants[0]}: {same} of {len(segs)} segments with identical "
            f"word times ({total} words)"
        )


PHASES = {  # (file name ends, function): what the align stage spends its time on
    "model launches (_logits)": ("wav2vec2.py", "_logits"),
    "model wait + copy (_finish)": ("wav2vec2.py", "_finish"),
    "paths (_paths)": ("ctc.py", "_paths"),
    "spans from paths (path_spans)": ("ctc.py", "path_spans"),
    "prepare (_prepare)": ("ctc.py", "_prepare"),
    "words (words_from_chars)": ("ctc.py", "words_from_chars"),
    "encode texts (encode_chars)": ("ctc.py", "encode_chars"),
    "whole (align_segments)": ("wav2vec2.py", "align_segments"),
}


def profiled(aligner: w.Aligner, count: int) -> None:
    """One `align_segments` each way under cProfile: cumulative seconds per phase."""
    segs = timing_segments(count)
    for on in (True, False):
        ctc.GPU_PATHS = on
        profile = cProfile.Profile()
        profile.runcall(w.align_segments, aligner, segs)
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        name = "kernel" if on else "numpy"
        for phase, (file, function) in PHASES.items():
            total = sum(
                v[3] for (f, _, fn), v in stats.items() if f.endswith(file) and fn == function
            )
            print(f"profile, paths by {name}: {phase} {total:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device of the aligner")
    parser.add_argument("--segments", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--variants",
        default="kernel/64/120,numpy/64/120,numpy/256/600,kernel/256/600",
        help="PATHS/SIZE/SECONDS: paths by kernel or numpy, batches of SIZE segments, SECONDS",
    )
    parser.add_argument("--profile", action="store_true", help="also the phases under cProfile")
    args = parser.parse_args()
    if not (mx.metal.is_available() or mx.cuda.is_available()):
        sys.exit("no MLX GPU backend here: the kernel runs on Metal or CUDA")
    mx.set_default_device(mx.gpu)
    folder = save_random_wav2vec2(Path(tempfile.mkdtemp()))
    aligner = w.load_aligner("en", str(folder), args.device)
    same_spans(aligner)
    timed(aligner, args.segments, args.rounds, args.variants.split(","))
    if args.profile:
        profiled(aligner, args.segments)


if __name__ == "__main__":
    main()
