"""VAD quality on the files with reference RTTMs: detection error rate of mlxwx's energy VAD and of
Silero's ONNX model (silero-vad's `get_speech_timestamps`, its defaults), with and without a
0.5 s collar, and an onset sweep of the energy VAD.

Regions of the energy VAD come from the shared binarize with a plain hysteresis (onset, offset
0.363 = WhisperX's default, no padding, minimum durations or cuts): `tests.speech.hysteresis`.

`--noise` adds the noise-robustness numbers of the energy VAD's docstring:
- speech in noise: each file plus white, pink or brown noise 10 dB and 0 dB below its RMS (seed 3),
  DetER of the default energy VAD, of `low_hz=150` and of Silero;
- noise alone: 10 minutes of white, pink, brown noise and 50 Hz hum at -70, -40 and -10 dBFS,
  highest probability and regions found;
- noise after speech: 50 s of white noise at -54 dBFS with JFK added at 12 s and a LibriVox clip
  8 s after it, mean probability of the noise before and after the clips, and the regions.

    python bench/eval_vad.py [--noise]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
import mlxwx  # noqa: F401  first: preloads a fast BLAS (MKL or OpenBLAS) on Linux before mlx.core loads

# isort: split
import mlx.core as mx
import numpy as np

from mlxwx.audio import load_audio
from mlxwx.vad.base import SAMPLE_RATE, SpanSeconds
from mlxwx.vad.energy import EnergyOptions, EnergyVad
from mlxwx.vad.metrics import evaluate, format_metrics, format_sweep, sweep
from mlxwx.vad.rttm import read_rttm
from tests.speech import hysteresis, noises

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
FILES = {"sample": DATA / "sample.wav", "synthconv": DATA / "synthconv.wav"}
LIBRIVOX = sorted(Path("/usr/share/pocketsphinx/test/data/librivox").glob("*.wav"))
OFFSET = 0.363


def silero_regions(audio: np.ndarray) -> list[SpanSeconds] | None:
    try:
        import torch
        from silero_vad import get_speech_timestamps, load_silero_vad
    except ImportError:
        return None
    model = load_silero_vad(onnx=True)
    stamps = get_speech_timestamps(torch.from_numpy(audio), model, sampling_rate=SAMPLE_RATE)
    return [SpanSeconds(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def speech_in_noise() -> None:
    vads = {"energy": EnergyVad(), "energy low_hz=150": EnergyVad(EnergyOptions(low_hz=150))}
    print("== speech in noise: DetER (collar 0), noise `snr` dB below the file's RMS, seed 3")
    print("| file | noise | snr dB | " + " | ".join([*vads, "silero onnx"]) + " |")
    print("|---|---|---:|" + "---:|" * (len(vads) + 1))
    means: dict[tuple[str, int], list[float]] = {}
    for name, path in FILES.items():
        audio = np.array(load_audio(path))
        duration = audio.size / SAMPLE_RATE
        reference = read_rttm(path.with_suffix(".rttm"))[name]
        rms = np.sqrt(np.mean(audio**2))
        noise = noises(duration, 0.0, seed=3)
        conditions: list[tuple[str, int | None]] = [("none", None)]
        conditions += [(colour, snr) for colour in ("white", "pink", "brown") for snr in (10, 0)]
        for colour, snr in conditions:
            mixed = audio if snr is None else audio + noise[colour] * rms * 10 ** (-snr / 20)
            cells = []
            for method, vad in vads.items():
                regions = hysteresis(vad(mx.array(mixed)), 0.5)
                der = evaluate(reference, regions, duration=duration).detection_error_rate
                cells.append(f"{100 * der:.1f}%")
                if colour in ("white", "pink") and snr is not None:
                    means.setdefault((method, snr), []).append(der)
            silero = silero_regions(mixed)
            if silero is None:
                cells.append("-")
            else:
                metrics = evaluate(reference, silero, duration=duration)
                cells.append(f"{100 * metrics.detection_error_rate:.1f}%")
            label = "-" if snr is None else str(snr)
            print(f"| {name} | {colour} | {label} | " + " | ".join(cells) + " |")
    for (method, snr), values in means.items():
        print(f"  {method}, white and pink at {snr} dB: mean DetER {100 * np.mean(values):.1f}%")


def noise_alone() -> None:
    vad = EnergyVad()
    print("== noise alone, 10 minutes: highest probability, regions (onset 0.5 / offset 0.363)")
    for level in (-70, -40, -10):
        for colour, noise in noises(600, level, seed=-level).items():
            probs = vad(mx.array(noise))
            regions = hysteresis(probs, 0.5)
            print(
                f"  {colour:5s} {level:4d} dBFS: max prob {np.array(probs.probs).max():.3f}, "
                f"{len(regions)} regions, {sum(r.duration for r in regions):.2f} s"
            )


def noise_after_speech() -> None:
    if not LIBRIVOX:
        print("== noise after speech: skipped (pocketsphinx-testdata missing)")
        return
    noise = np.random.default_rng(0).normal(0, 0.002, 50 * SAMPLE_RATE).astype(np.float32)
    clips, start = [], 12 * SAMPLE_RATE
    for path in (DATA / "jfk.flac", LIBRIVOX[0]):
        clip = np.array(load_audio(path))
        noise[start : start + clip.size] += clip
        clips.append((start / SAMPLE_RATE, (start + clip.size) / SAMPLE_RATE))
        start += clip.size + 8 * SAMPLE_RATE
    probs = EnergyVad()(mx.array(noise))
    p = np.array(probs.probs)
    per_second = [float(p[i * 100 : (i + 1) * 100].mean()) for i in range(50)]
    stretches = {"before": (0, clips[0][0]), "between": (clips[0][1], clips[1][0])}
    stretches["after"] = (clips[1][1], 50.0)
    print(
        "== noise after speech: white noise -54 dBFS, clips at "
        + ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in clips)
    )
    for label, (a, b) in stretches.items():
        print(
            f"  mean prob {label} the clips ({a:.1f}-{b:.1f} s): "
            f"{p[int(a * 100) : int(b * 100)].mean():.3f}"
        )
    print("  per second: " + " ".join(f"{v:.2f}" for v in per_second))
    print("  regions: " + ", ".join(f"{r.start:.2f}-{r.end:.2f}" for r in hysteresis(probs, 0.5)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noise", action="store_true", help="add the noise-robustness numbers")
    args = parser.parse_args()
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
    if args.noise:
        speech_in_noise()
        noise_alone()
        noise_after_speech()


if __name__ == "__main__":
    main()
