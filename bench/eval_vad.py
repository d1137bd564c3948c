"""VAD quality on the files with reference RTTMs: detection error rate of mlxwx's energy VAD and of
Silero's ONNX model (silero-vad's `get_speech_timestamps`, its defaults), with and without a
0.5 s collar, and an onset sweep of the energy VAD.

Regions of the energy VAD come from a plain hysteresis (onset, offset 0.363 = WhisperX's default,
no padding or minimum durations): replace `hysteresis` by `mlxwx.vad.regions` once it lands.

    python bench/eval_vad.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
import mlxwx  # noqa: F401  first: preloads OpenBLAS on Linux before mlx.core loads

# isort: split
import numpy as np

from mlxwx.audio import load_audio
from mlxwx.vad.base import SAMPLE_RATE, SpeechProbs, SpeechRegion
from mlxwx.vad.energy import EnergyVad
from mlxwx.vad.metrics import evaluate, format_metrics, format_sweep, sweep
from mlxwx.vad.rttm import read_rttm

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
FILES = {"sample": DATA / "sample.wav", "synthconv": DATA / "synthconv.wav"}
OFFSET = 0.363


def hysteresis(probs: SpeechProbs, onset: float) -> list[SpeechRegion]:
    """Speech from the first frame >= onset until the first frame < min(onset, OFFSET)."""
    offset, regions, start = min(onset, OFFSET), [], None
    for i, p in enumerate(np.array(probs.probs)):
        if start is None and p >= onset:
            start = i
        elif start is not None and p < offset:
            regions.append(
                SpeechRegion(probs.offset + start * probs.hop, probs.offset + i * probs.hop)
            )
            start = None
    if start is not None:
        end = probs.offset + probs.frames * probs.hop
        regions.append(SpeechRegion(probs.offset + start * probs.hop, end))
    return regions


def silero_regions(audio: np.ndarray) -> list[SpeechRegion] | None:
    try:
        import torch
        from silero_vad import get_speech_timestamps, load_silero_vad
    except ImportError:
        return None
    model = load_silero_vad(onnx=True)
    stamps = get_speech_timestamps(torch.from_numpy(audio), model, sampling_rate=SAMPLE_RATE)
    return [SpeechRegion(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def main() -> None:
    vad = EnergyVad()
    for name, path in FILES.items():
        audio = load_audio(path)
        duration = audio.shape[0] / SAMPLE_RATE
        reference = read_rttm(path.with_suffix(".rttm"))[name]
        probs = vad(audio)
        hypotheses = {"mlxwx energy": hysteresis(probs, 0.5), "silero onnx": None}
        hypotheses["silero onnx"] = silero_regions(np.array(audio))
        print(f"== {name} ({duration:.1f} s)")
        for method, regions in hypotheses.items():
            if regions is None:
                print(f"  {method}: skipped (silero-vad not installed)")
                continue
            for collar in (0.0, 0.5):
                metrics = evaluate(reference, regions, collar=collar, duration=duration)
                print(f"  {method:12s} collar {collar}: {format_metrics(metrics)}")
        thresholds = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
        print("  mlxwx energy onset sweep (offset min(onset, 0.363)):")
        print(format_sweep(sweep(reference, probs, thresholds, hysteresis)))


if __name__ == "__main__":
    main()
