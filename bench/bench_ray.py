"""`mlxwx run --ray` against `mlxwx run` on the same files, in the same run (issue 17).

The input: the offline corpus (`tests.speech.corpus`: jfk, five LibriVox utterances, synthconv,
pyannote's sample; 8 clips, 89 s; where Debian's LibriVox clips are missing, the other three)
written as --passes copies of each clip (16 kHz wav files,
different names). Every system is one whole command as a user types it, timed from start to
exit (interpreter start, model load, cluster join and actor start included), into a fresh
output folder, with the same options (`--model M -f json,txt --beam-size 1 --seed 7 -q`):

- run: `mlxwx run FILES` on this machine (its default worker processes).
- ray-aN: `mlxwx run FILES --ray ADDRESS --ray-actors N [--ray-gpus G]` on a Ray head started
  here (`ray start --head --num-cpus C`, not timed) before the runs.

Each system also runs on one file (jfk): its wall time there is the fixed cost of a run. The
per-file overhead of Ray is (ray wall - run wall) / files over the whole corpus. Throughput:
audio seconds per wall second (x real time). The outputs of every Ray run are compared with
`run`'s (same text and times): a row whose outputs differ says so.

    python bench/bench_ray.py [--model tiny.en] [--passes 4] [--actors 1,2] [--gpus 0]
                              [--cpus C] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import wave
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
import mlxwx  # noqa: F401  (first: preloads a fast BLAS (MKL or OpenBLAS) on Linux before mlx.core loads)

# isort: split
import numpy as np

from tests.speech import DATA, corpus

COMMON = ["-f", "json,txt", "--beam-size", "1", "--seed", "7", "-q"]
PORT = 6397
# Ray's command line (installed with --target, a wheel's scripts may be missing: call its main)
RAY = [shutil.which("ray") or sys.executable, *([] if shutil.which("ray") else
       ["-c", "from ray.scripts.scripts import main; main()"])]  # fmt: skip


def clips() -> list[Path]:
    """The corpus clips; without Debian's LibriVox clips (the GPU machine), the three in
    tests/data (jfk, synthconv, sample)."""
    try:
        return [clip.path for clip in corpus()]
    except OSError:
        return sorted(DATA / name for name in ("jfk.flac", "synthconv.wav", "sample.wav"))


def write_wav(path: Path, audio: np.ndarray) -> None:
    """16-bit PCM wav (the standard library's wave: no soundfile needed on the GPU machine)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 32767 / 32768) * 32768).astype("<i2").tobytes())


def build_corpus(folder: Path, passes: int) -> tuple[list[Path], float]:
    """--passes copies of each clip as wav files; (paths, audio seconds)."""
    from mlxwx.audio import read_audio

    paths, seconds = [], 0.0
    for clip in clips():
        audio = read_audio(clip)
        for k in range(passes):
            path = folder / f"{clip.stem}-{k}.wav"
            write_wav(path, audio)
            paths.append(path)
            seconds += audio.size / 16000
    return paths, seconds


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])}...: exit {done.returncode}\n{done.stderr}")
    return wall


def outputs(folder: Path) -> dict[str, list]:
    found = {}
    for path in sorted(folder.glob("*.json")):
        segments = json.loads(path.read_text())["segments"]
        found[path.name] = [(s["text"], round(s["start"], 3), round(s["end"], 3)) for s in segments]
    return found


def start_cluster(cpus: int, gpus: int, env: dict[str, str]) -> str:
    subprocess.run([*RAY, "stop", "--force"], env=env, capture_output=True, check=False)
    command = [*RAY, "start", "--head", f"--port={PORT}", f"--num-cpus={cpus}",
               f"--num-gpus={gpus}", "--include-dashboard=false",
               "--disable-usage-stats"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"ray start --address='([^']+)'", done.stdout + done.stderr)
    if not found:
        raise SystemExit(done.stdout + done.stderr)
    return found.group(1)


def systems(args: argparse.Namespace, address: str) -> dict[str, list[str]]:
    out = {"run": []}
    for n in args.actors:
        extra = ["--ray-gpus", "1"] if args.gpus else []
        out[f"ray-a{n}"] = ["--ray", address, "--ray-actors", str(n), *extra]
    return out


def measure(args: argparse.Namespace, work: Path, env: dict[str, str]) -> None:
    files, seconds = build_corpus(work / "in", args.passes)
    one = [next(p for p in files if p.name.startswith("jfk"))]
    with wave.open(str(one[0])) as w:
        one_seconds = w.getnframes() / w.getframerate()
    address = start_cluster(args.cpus, args.gpus, env)
    base = [sys.executable, "-m", "mlxwx", "run", "--model", args.model, *COMMON]
    walls: dict[str, list[float]] = {}
    singles: dict[str, list[float]] = {}
    agree: dict[str, bool] = {}
    try:
        for r in range(args.repeat):
            for name, extra in systems(args, address).items():
                out = work / f"{name}-{r}"
                command = [*base, *extra, "-o", str(out), *map(str, files)]
                walls.setdefault(name, []).append(timed(command, env))
                agree[name] = agree.get(name, True) and outputs(out) == outputs(work / "run-0")
                solo = work / f"{name}-one-{r}"
                command = [*base, *extra, "-o", str(solo), *map(str, one)]
                singles.setdefault(name, []).append(timed(command, env))
    finally:
        subprocess.run([*RAY, "stop", "--force"], env=env, capture_output=True, check=False)
    report(args, walls, singles, agree, len(files), seconds, one_seconds)


def report(
    args: argparse.Namespace,
    walls: dict[str, list[float]],
    singles: dict[str, list[float]],
    agree: dict[str, bool],
    files: int,
    seconds: float,
    one_seconds: float,
) -> None:
    run = float(np.median(walls["run"]))
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} cores, model {args.model}, {files} files, {seconds:.0f} s of audio,"
          f" Ray head {args.cpus} CPUs / {args.gpus} GPUs, median of {args.repeat}")  # fmt: skip
    print("| system | wall s | x real time | vs run | files/min | one file s | overhead/file s "
          "| outputs |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, values in walls.items():
        wall = float(np.median(values))
        single = float(np.median(singles[name]))
        overhead = "" if name == "run" else f"{(wall - run) / files:+.2f}"
        same = "reference" if name == "run" else ("same as run" if agree[name] else "DIFFER")
        print(f"| {name} | {wall:.1f} | {seconds / wall:.1f} | {run / wall:.2f}x | "
              f"{files / wall * 60:.1f} | {single:.1f} | {overhead} | {same} |")  # fmt: skip
    print(f"(one file: jfk, {one_seconds:.1f} s of audio)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--passes", type=int, default=4, help="copies of each of the 8 clips")
    parser.add_argument("--actors", default="1,2", help="comma list of transcribing actors")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs on the head (1 per actor)")
    parser.add_argument("--cpus", type=int, default=3, help="CPUs the Ray head offers")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    args.actors = [int(a) for a in args.actors.split(",")]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=uuid.uuid4().hex)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in").mkdir()
        measure(args, Path(tmp), env)


if __name__ == "__main__":
    main()
