"""Word times on the GPU against the CPU's: `--align whisper` with base on jfk.flac and
synthconv.wav (Silero, beam 5), float16 on the GPU, float32 on the CPU; and accuracy on
synthconv's exact times on each device.

    python bench/gpu_align_check.py --write cpu.json      # on the CPU machine
    python bench/gpu_align_check.py --against cpu.json    # on the GPU machine (MLX CUDA)

Wav clips are read with the standard library (the GPU machine has no PyAV): there, pass
`--clips synthconv.wav,sample.wav`.
"""

from __future__ import annotations

import argparse
import json
import sys
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlxwx  # first: OpenBLAS before mlx.core
from tests.speech import DATA, start_errors, synthconv_words

CLIPS = "jfk.flac,synthconv.wav"


def samples(path: Path) -> np.ndarray | str:
    """A 16 kHz mono 16-bit wav read with the standard library (the GPU machine has no PyAV);
    other files by path, for mlxwx to decode."""
    if path.suffix != ".wav":
        return str(path)
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768


def words(model: str, clips: list[str]) -> dict[str, list[tuple[str, float, float]]]:
    import mlx.core as mx

    pipeline = mlxwx.load_model(model)
    out = {}
    for clip in clips:
        result = pipeline.transcribe(samples(DATA / clip))
        assert isinstance(result, mlxwx.Result)
        out[clip] = [(w.word, w.start or 0.0, w.end or 0.0) for w in result.word_segments]
    print(f"device {mx.default_device()}, {model}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="base")
    parser.add_argument("--write")
    parser.add_argument("--against")
    parser.add_argument("--clips", default=CLIPS, help="files of tests/data (PyAV for non-wav)")
    args = parser.parse_args()
    clips = args.clips.split(",")
    found = words(args.model, clips)
    errors = start_errors([(w, s) for w, s, _ in found["synthconv.wav"]], synthconv_words())
    print(
        f"synthconv: median |start error| {1000 * np.median(np.abs(errors)):.0f} ms, "
        f"{100 * np.mean(np.abs(errors) <= 0.1):.0f}% within 100 ms"
    )
    if args.write:
        Path(args.write).write_text(json.dumps(found))
    if args.against:
        reference = json.loads(Path(args.against).read_text())
        for clip in clips:
            ours, theirs = found[clip], reference[clip]
            same = [w for w, _, _ in ours] == [w for w, _, _ in theirs]
            line = f"{clip}: {len(ours)} words, same words as the CPU: {same}"
            if same:
                diff = np.abs(np.array([s for _, s, _ in ours]) - [s for _, s, _ in theirs])
                line += f"; |start - CPU start| median {1000 * np.median(diff):.0f} ms, "
                line += (
                    f"max {1000 * diff.max():.0f} ms, {100 * np.mean(diff <= 0.02):.0f}% <= 20 ms"
                )
            print(line)


if __name__ == "__main__":
    main()
