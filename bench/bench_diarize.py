"""Diarization against transcription: the cost of `--diarize` on the bench input.

Input: the corpus input of bench_engine.py (clips repeated in seeded orders, 0.5 s gaps),
`--minutes` long. In one process, after a warm-up of each on the first 30 s (a GPU compiles
kernels per shape):
- transcription: `mlxwx.Pipeline.transcribe` with `mlxwx run`'s defaults (Silero VAD, beam 5,
  word alignment), English, `--model` (default base);
- diarization: the pyannote.audio `SpeakerDiarization` pipeline of `--pipeline` (a folder) on the
  same audio handed over from memory, as the diarize stage runs it; then `assign_speakers` onto the
  transcript's words.

No pyannote diarization weights ship in a package: without `--pipeline` the folder is built as
tests/pyannote_pipeline.py builds it, with the layout and architectures of
pyannote/speaker-diarization-community-1 where they can be had: the real pyannote segmentation v2
checkpoint (whisperx 3.8.6 wheel; community-1 has segmentation-3.0, of the same PyanNet family),
a randomly initialised WeSpeaker ResNet34 embedding (community-1's architecture; speed does not
depend on the values) and VBx clustering over a random PLDA. WeSpeaker computes its features with
torchaudio (`torchaudio.compliance.kaldi.fbank`, pure Python): torchaudio must import.

    python bench/bench_diarize.py [--minutes 10] [--model base] [--pipeline FOLDER]
        [--embedding WeSpeakerResNet34|XVectorSincNet] [--device auto|cpu|gpu] [--torch-first]

`--torch-first` imports torch before MLX: on Linux with mlx[cuda], MLX's CUDA backend loads its
own (older) cuDNN, which torch then refuses, so the diarize stage runs torch without cuDNN;
with torch first, torch has its own cuDNN (the comparison of the two).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if "--torch-first" in sys.argv:  # torch loads its own cuDNN before MLX's CUDA backend loads one
    import torch  # noqa: F401

import mlxwx
from bench.bench_engine import SAMPLE_RATE, build_input
from mlxwx.diarize.pyannote import load_diarizer


def machine() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {stamp}"


def pipeline_folder(args: argparse.Namespace, tmp: Path) -> Path:
    if args.pipeline:
        return Path(args.pipeline)
    from mlxwx.weights.pyannote import fetch_checkpoint
    from tests.pyannote_pipeline import build

    return build(fetch_checkpoint(), tmp / "pipeline", args.embedding, "VBxClustering")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", default="base")
    parser.add_argument("--pipeline")
    parser.add_argument("--embedding", default="WeSpeakerResNet34")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--torch-first", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    mlxwx.use_device(args.device)
    audio = build_input(args.minutes).audio
    seconds = len(audio) / SAMPLE_RATE
    warm = audio[: 30 * SAMPLE_RATE]
    with tempfile.TemporaryDirectory() as tmp:
        folder = pipeline_folder(args, Path(tmp))
        start = time.perf_counter()
        diarizer = load_diarizer(str(folder))
        load_s = time.perf_counter() - start
    options = mlxwx.PipelineOptions(mlxwx.TranscribeOptions(mlxwx.DecodingOptions(language="en")))
    pipeline = mlxwx.load_model(args.model, options)
    pipeline.vad("silero")
    pipeline.transcribe(warm)
    start = time.perf_counter()
    result = pipeline.transcribe(audio)
    transcribe_s = time.perf_counter() - start
    assert isinstance(result, mlxwx.Result)
    diarizer(warm)
    start = time.perf_counter()
    speakers = diarizer(audio)
    diarize_s = time.perf_counter() - start
    start = time.perf_counter()
    labelled = mlxwx.assign_speakers(result, speakers.turns)
    assign_s = time.perf_counter() - start
    words = len(labelled.word_segments)
    where = f"torch on {diarizer.device}"
    print(f"\n{args.model}, {seconds / 60:.1f} min of audio, {where}; {machine()}")
    print(f"pipeline: {args.pipeline or f'segmentation v2 + {args.embedding} (random) + VBx'}")
    print("| step | seconds | x real time | share of transcription |")
    print("|---|---:|---:|---:|")
    for name, s in (
        ("transcription (mlxwx, defaults)", transcribe_s),
        ("diarization (pyannote pipeline)", diarize_s),
        (f"assign_speakers ({words} words, {len(speakers.turns)} turns)", assign_s),
        ("pipeline load (once)", load_s),
    ):
        print(f"| {name} | {s:.3f} | {seconds / s:.1f} | {100 * s / transcribe_s:.1f}% |")


if __name__ == "__main__":
    main()
