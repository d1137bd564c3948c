"""Peak memory and time to the first written output of `mlxwx run` as the number of files grows.

Writes N files of `--minutes` minutes each (the offline corpus's clips in turn, 16 kHz wav) and
runs `python -m mlxwx run FILES --model M -f json -q` on the first 5, 20 and 60 of them, for this
checkout and, with `--peer PATH`, for another checkout of mlxwx (e.g. a git worktree of an older
commit) on the same files in the same run. While each run goes on, /proc is read every 50 ms:
the peak of the summed resident memory of the run's process and all its descendants (worker
processes included; also the peaks of the main process alone and of its descendants), and the
time the first .json appears in the output folder.

    python bench/bench_memory.py --model tiny.en --vad silero --beam-size 1 \
        --peer /tmp/mlxwx-before

`--batch-size N` passes `mlxwx run --batch-size N` (default: the CLI's own).

Printed: a row per (checkout, files) with wall time, real-time factor, peak RSS, time to the first
output (and its fraction of the wall time), then the peak of each count relative to 5 files.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE_RATE = 16000
POLL = 0.05  # seconds between /proc readings


def make_inputs(folder: Path, count: int, minutes: float) -> list[Path]:
    """`count` wav files of `minutes` each: the corpus's clips, in turn, from a different one
    in each file."""
    import soundfile as sf

    from mlxwx.audio import read_audio
    from tests.speech import corpus

    clips = [read_audio(c.path) for c in corpus()]
    length = round(minutes * 60 * SAMPLE_RATE)
    paths = []
    for i in range(count):
        path = folder / f"f{i:03d}.wav"
        paths.append(path)
        if path.exists():
            continue
        parts, total, k = [], 0, i
        while total < length:
            parts.append(clips[k % len(clips)])
            total += parts[-1].size
            k += 1
        sf.write(path, np.concatenate(parts)[:length], SAMPLE_RATE, subtype="PCM_16")
    return paths


def children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def rss(pid: int) -> int:
    """Resident bytes of `pid` (0 once it has ended)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> tuple[int, int]:
    """Resident bytes of `pid`, and of all its descendants."""
    tree, others = children(), 0
    todo = list(tree.get(pid, []))
    while todo:
        p = todo.pop()
        todo += tree.get(p, [])
        others += rss(p)
    return rss(pid), others


def measure(checkout: Path, files: list[Path], out: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "mlxwx", "run", *map(str, files), "-o", str(out)]
    command += ["--model", args.model, "--vad", args.vad, "--beam-size", str(args.beam_size)]
    command += ["-f", "json", "-q"]
    if args.batch_size is not None:
        command += ["--batch-size", str(args.batch_size)]
    env = dict(os.environ, PYTHONPATH=str(checkout))
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=checkout, env=env, stderr=subprocess.PIPE)
    peak = main_peak = others_peak = 0
    first = None
    while process.poll() is None:
        main, others = tree_rss(process.pid)
        peak = max(peak, main + others)
        main_peak, others_peak = max(main_peak, main), max(others_peak, others)
        if first is None and any(out.glob("*.json")):
            first = time.perf_counter() - start
        time.sleep(POLL)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{checkout}: exit {process.returncode}: {process.stderr.read().decode()}")
    written = len(list(out.glob("*.json")))
    if first is None:
        first = wall
    return {
        "wall": wall,
        "peak": peak,
        "main": main_peak,
        "others": others_peak,
        "first": first,
        "written": written,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--counts", default="5,20,60")
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--vad", default="silero")
    p.add_argument("--beam-size", type=int, default=1)
    p.add_argument("--batch-size", type=int, help="mlxwx run --batch-size (default: its own)")
    p.add_argument("--peer", type=Path, help="another mlxwx checkout run on the same files")
    p.add_argument("--workdir", type=Path, help="where the inputs are written (kept)")
    args = p.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mlxwx-bench-memory-"))
    (work / "inputs").mkdir(parents=True, exist_ok=True)
    inputs = make_inputs(work / "inputs", max(counts), args.minutes)
    checkouts = [("this", ROOT)] + ([("peer", args.peer.resolve())] if args.peer else [])
    print(f"inputs: {max(counts)} x {args.minutes:g} min in {work / 'inputs'}; model {args.model}, "
          f"VAD {args.vad}, beam {args.beam_size}, {os.cpu_count()} CPUs")  # fmt: skip
    print("| checkout | files | audio min | wall s | x real time | peak RSS MB | first output s "
          "| first / wall | outputs | peak main / workers MB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    peaks: dict[str, dict[int, int]] = {}
    for count in counts:
        for name, checkout in checkouts:
            out = work / f"out-{name}-{count}"
            if out.exists():
                for old in out.iterdir():
                    old.unlink()
            m = measure(checkout, inputs[:count], out, args)
            audio = count * args.minutes * 60
            peaks.setdefault(name, {})[count] = m["peak"]
            wall, first = m["wall"], m["first"]
            print(
                f"| {name} | {count} | {audio / 60:.1f} | {wall:.1f} | {audio / wall:.1f}x "
                f"| {m['peak'] / 2**20:.0f} | {first:.1f} | {first / wall:.2f} | {m['written']} "
                f"| {m['main'] / 2**20:.0f} / {m['others'] / 2**20:.0f} |",
                flush=True,
            )
    for name, by_count in peaks.items():
        base = by_count[counts[0]]
        ratios = ", ".join(f"{c} files {v / base:.2f}x" for c, v in by_count.items())
        print(f"{name}: peak RSS relative to {counts[0]} files: {ratios}")


if __name__ == "__main__":
    main()
