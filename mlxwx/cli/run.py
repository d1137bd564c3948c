"""`mlxwx run`: parse, build the pipeline's options, run the pipeline, choose the exit code."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .. import distributed
from ..align import AlignOptions, wav2vec2_installed
from ..align.wav2vec2 import EXTRA_HINT
from ..asr.decoding import DecodingOptions
from ..asr.engine import ProgressHook, TranscribeOptions
from ..asr.languages import language_code
from ..asr.model import check_language, load_model, resolve
from ..audio import CHUNK_LENGTH, read_audio
from ..device import use_device
from ..diarize import DEFAULT_PIPELINE, DiarizeOptions
from ..distributed import RayOptions
from ..errors import MlxwxError
from ..inputs import check_output_dir, expand, local_folder
from ..pipeline import DEFAULT_MODEL, DEFAULT_VAD, Pipeline, PipelineOptions
from ..types import SAMPLE_RATE, Result
from ..vad.methods import transcribe_options
from ..vad.regions import VadOptions
from ..writers import (
    ALL_FORMATS,
    FORMATS,
    STDIN,
    SubtitleOptions,
    complete,
    label,
    output_stems,
    timestamp,
    write_result,
)
from .common import (
    DeviceOption,
    Quiet,
    Terminated,
    Verbose,
    fail,
    setup_logging,
    show_progress,
    vad_options,
)

_RUN = TranscribeOptions()  # the defaults the CLI shares with the library
_PASS = _RUN.decoding
_ALIGN = AlignOptions()
MAX_CHUNK = float(CHUNK_LENGTH)  # Whisper's window, seconds


class Task(str, Enum):
    TRANSCRIBE = "transcribe"
    TRANSLATE = "translate"


def parse_formats(value: str) -> list[str]:
    formats = (
        list(ALL_FORMATS) if value == "all" else [f.strip() for f in value.split(",") if f.strip()]
    )
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise fail(
            f"unknown output format {','.join(unknown) or value!r}; "
            f"choose from {', '.join(FORMATS)} or all"
        )
    return formats


def run_vad_options(
    method: str, onset: float | None, offset: float | None, chunk_size: float
) -> VadOptions:
    """`run`'s VAD options: the method's transcription defaults with the options given."""
    if chunk_size <= 0 or chunk_size > 30:
        raise ValueError(f"--chunk-size must be within (0, 30] seconds, got {chunk_size}")
    if method == "none":
        return VadOptions(chunk_size=chunk_size)
    return vad_options(
        method, transcribe_options, onset=onset, offset=offset, chunk_size=chunk_size
    )


def preload_aligner(pipeline: Pipeline, options: PipelineOptions, language: str | None) -> None:
    """Load the wav2vec2 model before any audio is read when the language is known: a model
    that `--align wav2vec2` cannot load stops the run here (under auto, whisper is used)."""
    align = options.align
    if align is None or align.method == "whisper":
        return
    if not wav2vec2_installed():
        if align.method == "wav2vec2":
            raise MlxwxError(EXTRA_HINT)
        return
    if language is None and align.model is None:
        return
    try:
        pipeline.aligners.get(language, align)
    except MlxwxError:
        if align.method == "wav2vec2":
            raise


def diarize_options(
    diarize: bool,
    rttm: Path | None,
    model: str,
    token: str | None,
    speakers: tuple[int | None, int | None, int | None],
    fill_nearest: bool,
    embeddings: bool,
) -> DiarizeOptions | None:
    """The diarize stage's options from `run`'s (None: no diarization)."""
    if rttm is None and not diarize:
        flags = [f for f, v in (("--num-speakers", speakers[0]), ("--min-speakers", speakers[1]),
                 ("--max-speakers", speakers[2])) if v is not None]  # fmt: skip
        flags += ["--speaker-embeddings"] if embeddings else []
        flags += ["--fill-nearest"] if fill_nearest else []
        if flags:
            raise ValueError(f"{', '.join(flags)} need --diarize (or --diarization-rttm)")
        return None
    method = "rttm" if rttm is not None else "pyannote"
    num, low, high = speakers
    return DiarizeOptions(method, model, token, num, low, high, rttm, fill_nearest, embeddings)


def check_diarizer(pipeline: Pipeline, options: PipelineOptions) -> tuple[PipelineOptions, bool]:
    """Load the diarizer before any audio: an RTTM that cannot be read stops the run (raises);
    a pyannote pipeline that cannot be loaded is said once, and the run goes on without
    speakers (the options returned, and whether speakers were lost)."""
    try:
        pipeline.diarizers.check(options.diarize)
    except MlxwxError as err:
        if options.diarize is not None and options.diarize.method == "rttm":
            raise
        typer.echo(f"error: {err}; transcripts are written without speakers", err=True)
        return replace(options, diarize=None), True
    return options, False


@dataclass
class Writer:
    """The run's sink: writes each finished file's outputs, prints its segments (each line
    led by the file's name when the run has several), counts."""

    paths: list[Path]
    stems: list[Path]
    formats: list[str]
    quiet: bool
    subtitles: SubtitleOptions | None = None
    failed: int = 0
    written: set[int] = field(default_factory=set)

    def __call__(self, index: int, outcome: Result | MlxwxError) -> None:
        path, stem = self.paths[index], self.stems[index]
        if not isinstance(outcome, Result):
            self.failed += 1
            typer.echo(f"error: {outcome}", err=True)
            return
        try:
            write_result(outcome, stem, self.formats, self.subtitles)
        except (OSError, ValueError, AssertionError) as err:
            self.failed += 1
            typer.echo(f"error: cannot write results of {path}: {err}", err=True)
            return
        self.written.add(index)
        if not self.quiet:
            lead = f"{path}: " if len(self.paths) > 1 else ""
            for s in outcome.segments:
                typer.echo(f"{lead}[{timestamp(s.start)} --> {timestamp(s.end)}] {label(s)}")

    def interrupted(self, signal_name: str) -> str:
        """What an interrupted run says: how many files were written, which were not."""
        left = [str(p) for i, p in enumerate(self.paths) if i not in self.written]
        shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        done = f"{len(self.written)} of {len(self.paths)} files written"
        return f"{signal_name}: {done}" + (f"; not finished: {shown}" if left else "")


@contextmanager
def progress_bar(quiet: bool, files: int) -> Iterator[ProgressHook | None]:
    """A rich progress bar (files done, audio minutes decoded, speed as a multiple of real
    time) on a terminal; nothing otherwise."""
    if not show_progress(quiet):
        yield None
        return
    columns = [
        TextColumn("transcribing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TextColumn("{task.fields[minutes]}"),
        TextColumn("{task.fields[speed]}"),
        TimeRemainingColumn(),
    ]
    start = time.perf_counter()
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("transcribing", total=files, minutes="", speed="")

        def hook(stage: str, completed: int = 0, total: int = 0, **_: object) -> None:
            if stage == "finish":
                bar.update(task, completed=completed)
            elif stage == "transcribe":
                audio_s, total_s = completed / SAMPLE_RATE, total / SAMPLE_RATE
                speed = audio_s / max(time.perf_counter() - start, 1e-9)
                minutes = f"{audio_s / 60:.1f}/{total_s / 60:.1f} min of speech"
                bar.update(task, minutes=minutes, speed=f"{speed:.1f}x real time")

        yield hook


@dataclass(frozen=True)
class Fallback:
    """The temperature ladder and the checks that send a window up it (WhisperX's options)."""

    temperature: float = _RUN.temperatures[0]
    increment: float = round(_RUN.temperatures[1] - _RUN.temperatures[0], 6)
    compression_ratio_threshold: float | None = _RUN.compression_ratio_threshold
    logprob_threshold: float | None = _RUN.logprob_threshold
    no_speech_threshold: float | None = _RUN.no_speech_threshold

    def temperatures(self) -> tuple[float, ...]:
        """From `temperature` to 1.0 by `increment` (openai-whisper's ladder)."""
        if self.increment <= 0:
            raise ValueError(
                f"--temperature-increment-on-fallback must be > 0, got {self.increment}"
            )
        steps = max(0, int((1.0 - self.temperature) / self.increment + 1e-6))
        return tuple(round(self.temperature + k * self.increment, 6) for k in range(steps + 1))


def parse_suppress_tokens(value: str) -> tuple[int, ...]:
    """WhisperX's `--suppress_tokens`: comma-separated ids; -1: the checkpoint's own list."""
    try:
        ids = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--suppress-tokens takes token ids like 1,2, got {value!r}") from None
    return tuple(i for i in ids if i != -1)


def build_options(
    *,
    task: Task,
    language: str | None,
    beam_size: int,
    best_of: int,
    patience: float,
    without_timestamps: bool,
    temperature_fallback: bool,
    batch_size: int,
    loop_guard: bool = _RUN.loop_guard,
    finish_chunks: bool = _RUN.finish_chunks,
    condition_on_previous_text: bool,
    initial_prompt: str | None,
    hotwords: str | None,
    workers: int | None,
    vad: str,
    vad_onset: float | None,
    vad_offset: float | None,
    chunk_size: float,
    align: str | None = _ALIGN.method,
    segment_resolution: str = _ALIGN.segment_resolution,
    align_model: str | None = None,
    interpolate_method: str = _ALIGN.interpolate,
    return_char_alignments: bool = False,
    align_precision: str = _ALIGN.precision,
    fallback: Fallback | None = None,
    suppress: tuple[tuple[int, ...], bool] = ((), False),
    length_penalty: float | None = None,
    seed: int | None = None,
    cross_kv_bits: int | None = None,
) -> PipelineOptions:
    """The pipeline's options from `run`'s; raises ValueError or MlxwxError for a bad one.
    `suppress`: extra tokens never decoded, and whether numerals are."""
    decoding = DecodingOptions(
        task=task.value,
        language=language_code(language) if language is not None else None,
        beam_size=beam_size,
        best_of=best_of,
        patience=patience,
        length_penalty=length_penalty,
        without_timestamps=without_timestamps,
        suppress_tokens=suppress[0],
        suppress_numerals=suppress[1],
        cross_kv_bits=cross_kv_bits,
    )
    ladder = fallback or Fallback()
    transcribe = TranscribeOptions(
        decoding,
        batch_size=batch_size,
        temperatures=ladder.temperatures() if temperature_fallback else (ladder.temperature,),
        compression_ratio_threshold=ladder.compression_ratio_threshold,
        logprob_threshold=ladder.logprob_threshold,
        no_speech_threshold=ladder.no_speech_threshold,
        condition_on_previous_text=condition_on_previous_text,
        initial_prompt=initial_prompt,
        hotwords=hotwords,
        workers=workers,
        loop_guard=loop_guard,
        finish_chunks=finish_chunks,
        seed=seed,
    )
    chunking = run_vad_options(vad, vad_onset, vad_offset, chunk_size)
    return PipelineOptions(
        transcribe,
        vad=None if vad == "none" else vad,
        vad_options=chunking,
        align=None
        if align is None
        else AlignOptions(
            align,
            segment_resolution,
            align_model,
            interpolate_method,
            return_char_alignments,
            precision=align_precision,
        ),
    )


def run(
    audio: Annotated[
        list[Path] | None,
        typer.Argument(help="Audio or video files, folders (their audio files), - for stdin."),
    ] = None,
    input_list: Annotated[
        Path | None, typer.Option(help="A file naming one input per line (- for stdin).")
    ] = None,
    skip_existing: Annotated[
        bool, typer.Option(help="Skip inputs whose outputs are all there (resume a run).")
    ] = False,
    model: Annotated[
        str,
        typer.Option(
            help="Model name (tiny.en, base, large-v3-turbo, ...), "
            "MLX folder or Hugging Face repo id."
        ),
    ] = DEFAULT_MODEL,
    language: Annotated[
        str | None,
        typer.Option(help="Language code or name (en, English); detected per file when omitted."),
    ] = None,
    task: Annotated[
        Task, typer.Option(help="Transcribe, or translate to English.")
    ] = Task.TRANSCRIBE,
    output_dir: Annotated[
        str, typer.Option("--output-dir", "-o", help="Where to write (with --ray: or a URL).")
    ] = ".",
    output_format: Annotated[
        str,
        typer.Option(
            "--output-format", "-f", help=f"Comma list of {','.join(FORMATS)}, or all (but aud)."
        ),
    ] = "all",
    batch_size: Annotated[
        int, typer.Option(help="Windows decoded together, across all files.")
    ] = _RUN.batch_size,
    beam_size: Annotated[int, typer.Option(help="Beams per window (1: greedy).")] = _PASS.beam_size,
    best_of: Annotated[
        int, typer.Option(help="Samples per window when falling back to sampling.")
    ] = _PASS.best_of,
    patience: Annotated[float, typer.Option(help="Beam search patience.")] = _PASS.patience,
    length_penalty: Annotated[
        float | None, typer.Option(help="Beam ranking length penalty alpha (default: per token).")
    ] = None,
    cross_kv_bits: Annotated[
        int | None,
        typer.Option(help="Audio keys and values read in 8 (or 4) bits at each step (GPUs)."),
    ] = None,
    temperature: Annotated[
        float, typer.Option(help="First temperature of the ladder (0: beam search / greedy).")
    ] = Fallback.temperature,
    temperature_increment_on_fallback: Annotated[
        float, typer.Option(help="Temperature step of the fallback ladder, up to 1.0.")
    ] = Fallback.increment,
    compression_ratio_threshold: Annotated[
        float | None, typer.Option(help="A window whose text compresses more fails (repetition).")
    ] = _RUN.compression_ratio_threshold,
    logprob_threshold: Annotated[
        float | None, typer.Option(help="A window whose mean token log-prob is lower fails.")
    ] = _RUN.logprob_threshold,
    no_speech_threshold: Annotated[
        float | None, typer.Option(help="Failing windows likelier silent than this give no text.")
    ] = _RUN.no_speech_threshold,
    suppress_tokens: Annotated[
        str, typer.Option(help="Token ids never decoded, comma-separated (-1: the model's).")
    ] = "-1",
    suppress_numerals: Annotated[
        bool, typer.Option(help="Numbers spelled out: no digit or %$£ tokens.")
    ] = False,
    temperature_fallback: Annotated[
        bool, typer.Option(help="Re-decode failing windows at rising temperatures.")
    ] = True,
    loop_guard: Annotated[
        bool,
        typer.Option(
            help="Stop looping windows early, cap samples by the window's length, keep the "
            "likeliest attempt (off: openai-whisper's fallback)."
        ),
    ] = _RUN.loop_guard,
    finish_chunks: Annotated[
        bool,
        typer.Option(
            help="Decode a window holding the end of its speech chunk to that end (off: "
            "openai-whisper's seek rule decodes the chunk's last utterance again in a window "
            "of its own)."
        ),
    ] = _RUN.finish_chunks,
    condition_on_previous_text: Annotated[
        bool, typer.Option(help="Prompt each window with the previous window's text.")
    ] = _RUN.condition_on_previous_text,
    initial_prompt: Annotated[
        str | None, typer.Option(help="Text prompting windows with no previous text.")
    ] = None,
    hotwords: Annotated[str | None, typer.Option(help="Words or phrases to favour.")] = None,
    without_timestamps: Annotated[
        bool, typer.Option(help="Text only: one segment per 30 s window.")
    ] = _PASS.without_timestamps,
    vad: Annotated[
        str,
        typer.Option(help="Speech detection first: silero, pyannote, energy or none."),
    ] = DEFAULT_VAD,
    vad_onset: Annotated[
        float | None, typer.Option(help="VAD probability that starts speech (method default).")
    ] = None,
    vad_offset: Annotated[
        float | None, typer.Option(help="VAD probability below which speech ends.")
    ] = None,
    chunk_size: Annotated[
        float, typer.Option(help="Longest stretch of speech decoded as one window, seconds.")
    ] = VadOptions().chunk_size,
    align: Annotated[
        str,
        typer.Option(
            help="Word timestamps: whisper (cross-attention, no torch), wav2vec2 (CTC, the "
            "align extra), or auto (wav2vec2 if its model is on this machine, else whisper)."
        ),
    ] = _ALIGN.method or "auto",
    no_align: Annotated[
        bool, typer.Option("--no-align", help="Segments only: no word timestamps.")
    ] = False,
    align_model: Annotated[
        str | None,
        typer.Option(help="wav2vec2 model: Hugging Face repo id or folder (language default)."),
    ] = None,
    interpolate_method: Annotated[
        str, typer.Option(help="wav2vec2: words it cannot time: nearest, linear or ignore.")
    ] = _ALIGN.interpolate,
    return_char_alignments: Annotated[
        bool, typer.Option(help="wav2vec2: each segment's characters with times in the JSON.")
    ] = False,
    align_precision: Annotated[
        str,
        typer.Option(
            help="wav2vec2: auto (float16 on a GPU, float32 on the CPU), float32, float16 or "
            "bfloat16."
        ),
    ] = _ALIGN.precision,
    segment_resolution: Annotated[
        str,
        typer.Option(
            help="Aligned segments: sentence (cut at sentence ends) or chunk (as decoded)."
        ),
    ] = _ALIGN.segment_resolution,
    max_line_width: Annotated[
        int | None, typer.Option(help="srt/vtt: characters in a line before it wraps.")
    ] = None,
    max_line_count: Annotated[
        int | None, typer.Option(help="srt/vtt: lines in a cue (with --max-line-width).")
    ] = None,
    highlight_words: Annotated[
        bool, typer.Option(help="srt/vtt: underline each word as it is spoken.")
    ] = False,
    diarize: Annotated[
        bool, typer.Option("--diarize", help="Speaker labels (pyannote; the diarize extra).")
    ] = False,
    diarize_model: Annotated[
        str, typer.Option(help="pyannote pipeline: Hugging Face repo id or local folder.")
    ] = DEFAULT_PIPELINE,
    hf_token: Annotated[
        str | None,
        typer.Option(help="Hugging Face token for a gated model not yet cached (or HF_TOKEN)."),
    ] = None,
    num_speakers: Annotated[
        int | None, typer.Option(min=1, help="Exact number of speakers, if known.")
    ] = None,
    min_speakers: Annotated[int | None, typer.Option(min=1, help="At least this many.")] = None,
    max_speakers: Annotated[int | None, typer.Option(min=1, help="At most this many.")] = None,
    diarization_rttm: Annotated[
        Path | None,
        typer.Option(help="Speaker turns from this RTTM file instead of a model."),
    ] = None,
    fill_nearest: Annotated[
        bool, typer.Option(help="Words outside every turn take the nearest turn's speaker.")
    ] = False,
    speaker_embeddings: Annotated[
        bool, typer.Option(help="Each speaker's embedding in the JSON (pyannote).")
    ] = False,
    device: DeviceOption = "auto",
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Processes decoding on the CPU (default: one per core, at most 2)."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the fallback's sampling: runs repeat exactly.")
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(help="Run on a Ray cluster: auto, local or its address (mlxwx[ray])."),
    ] = None,
    ray_actors: Annotated[
        int, typer.Option(min=1, help="Ray: transcribing actors, each with its model.")
    ] = 1,
    ray_gpus: Annotated[float, typer.Option(min=0, help="Ray: GPUs per actor (0: CPU).")] = 0.0,
    ray_actor_resource: Annotated[
        str | None, typer.Option(help="Ray: a custom resource each actor takes one of.")
    ] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Transcribe AUDIO files together, writing each file's outputs as soon as it is done."""
    setup_logging(verbose, quiet)
    formats = parse_formats(output_format)
    if chunk_size > MAX_CHUNK:
        note(quiet, f"--chunk-size {chunk_size:g}: Whisper hears {MAX_CHUNK:g} s windows, so "
             f"speech is cut into chunks of at most {MAX_CHUNK:g} s")  # fmt: skip
        chunk_size = MAX_CHUNK
    fallback = Fallback(
        temperature, temperature_increment_on_fallback,
        compression_ratio_threshold, logprob_threshold, no_speech_threshold,
    )  # fmt: skip
    try:
        if ray is None:
            check_output_dir(local_folder(output_dir))
        paths = expand(audio or [], input_list)
        if ray is None:  # with --ray, the device is the actors' (the driver decodes nothing)
            use_device(device)
        options = build_options(
            task=task, language=language, beam_size=beam_size, best_of=best_of,
            patience=patience, without_timestamps=without_timestamps,
            temperature_fallback=temperature_fallback, batch_size=batch_size,
            loop_guard=loop_guard, finish_chunks=finish_chunks,
            condition_on_previous_text=condition_on_previous_text,
            initial_prompt=initial_prompt, hotwords=hotwords, workers=workers, vad=vad,
            vad_onset=vad_onset, vad_offset=vad_offset, chunk_size=chunk_size,
            align=None if no_align else align, segment_resolution=segment_resolution,
            align_model=align_model, interpolate_method=interpolate_method,
            return_char_alignments=return_char_alignments, align_precision=align_precision,
            fallback=fallback,
            suppress=(parse_suppress_tokens(suppress_tokens), suppress_numerals),
            length_penalty=length_penalty, seed=seed, cross_kv_bits=cross_kv_bits,
        )  # fmt: skip
        speakers = diarize_options(
            diarize, diarization_rttm, diarize_model, hf_token,
            (num_speakers, min_speakers, max_speakers), fill_nearest, speaker_embeddings,
        )  # fmt: skip
        options = replace(options, diarize=speakers)
        subtitles = SubtitleOptions(max_line_width, max_line_count, highlight_words)
        if ray is not None:
            spread = RayOptions(ray, ray_actors, gpus_per_actor=ray_gpus, device=device,
                                actor_resource=ray_actor_resource)  # fmt: skip
            ray_run = (paths, output_dir, model, options, formats, subtitles, spread)
            raise typer.Exit(run_on_ray(*ray_run, quiet))
        stems = output_stems(paths, Path(output_dir))
        todo = pending(paths, stems, formats, skip_existing, quiet)
        pipeline, options, no_speakers = prepare(model, options, task)
        inputs = [read_stdin() if str(p) == STDIN else p for p in (paths[i] for i in todo)]
    except (MlxwxError, ValueError) as err:
        raise fail(str(err)) from None
    writer = Writer([paths[i] for i in todo], [stems[i] for i in todo], formats, quiet, subtitles)
    transcribe(pipeline, inputs, writer, options)
    if writer.failed:
        raise fail(f"{writer.failed} of {len(todo)} files failed", code=1)
    if no_speakers:
        raise fail(f"{len(todo) - writer.failed} files written without speakers", code=1)


def run_on_ray(
    paths: list[Path],
    output_dir: str,
    model: str,
    options: PipelineOptions,
    formats: list[str],
    subtitles: SubtitleOptions,
    spread: RayOptions,
    quiet: bool,
) -> int:
    """`--ray`: the inputs across a Ray cluster (`mlxwx.distributed`); inputs whose outputs are
    all there are skipped. The exit code: 1 when an input failed (see failures.tsv)."""
    if any(str(p) == STDIN for p in paths):
        raise MlxwxError("--ray reads files: - (stdin) is not supported")
    resolve(model)  # an unknown model fails here, not in every actor
    summary = distributed.transcribe(paths, output_dir, model, options, formats, spread, subtitles)
    if not quiet:
        typer.echo(summary.line(), err=True)
    if summary.failed:
        typer.echo(f"error: see {output_dir.rstrip('/')}/{distributed.FAILURES_FILE}", err=True)
    return 1 if summary.failed else 0


def note(quiet: bool, message: str) -> None:
    if not quiet:
        typer.echo(f"note: {message}", err=True)


def pending(
    paths: list[Path], stems: list[Path], formats: list[str], skip: bool, quiet: bool
) -> list[int]:
    """The inputs to transcribe: all, or with `--skip-existing` those missing an output."""
    if not skip:
        return list(range(len(paths)))
    todo = [i for i, stem in enumerate(stems) if not complete(stem, formats)]
    if len(todo) < len(paths):
        note(quiet, f"--skip-existing: {len(paths) - len(todo)} of {len(paths)} files are done")
    return todo


def prepare(
    model: str, options: PipelineOptions, task: Task
) -> tuple[Pipeline, PipelineOptions, bool]:
    """The model, VAD, aligner and diarizer loaded and checked before any audio is read: the
    pipeline, the options (without speakers if the diarizer cannot load), whether it cannot."""
    wm = load_model(model)
    check_language(wm, options.transcribe.decoding.language)
    pipeline = Pipeline(wm, options)
    pipeline.vad(options.vad)  # its weights too, before any audio is read
    english = None if wm.tokenizer.multilingual and task == Task.TRANSCRIBE else "en"
    preload_aligner(pipeline, options, english or options.transcribe.decoding.language)
    options, no_speakers = check_diarizer(pipeline, options)
    return pipeline, options, no_speakers


def read_stdin() -> np.ndarray:
    """The audio piped in (`-`), decoded from memory."""
    return read_audio(sys.stdin.buffer)


def transcribe(pipeline: Pipeline, inputs: list, writer: Writer, options: PipelineOptions) -> None:  # type: ignore[type-arg]
    """Run the pipeline; on Ctrl-C or SIGTERM stop it, say what was written, exit 130 / 143."""
    if not inputs:
        return
    try:
        with progress_bar(writer.quiet, len(inputs)) as hook:
            pipeline.run(inputs, writer, options, progress=hook)
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        message = writer.interrupted("terminated" if terminated else "interrupted")
        raise fail(message, code=143 if terminated else 130) from None
