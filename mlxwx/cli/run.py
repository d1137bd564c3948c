"""`mlxwx run`: parse, build the pipeline's options, run the pipeline, choose the exit code."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..align import AlignOptions, wav2vec2_installed
from ..align.wav2vec2 import EXTRA_HINT
from ..asr.decoding import DecodingOptions
from ..asr.engine import ProgressHook, TranscribeOptions
from ..asr.model import load_model
from ..device import use_device
from ..diarize import DEFAULT_PIPELINE, DiarizeOptions
from ..errors import MlxwxError
from ..pipeline import DEFAULT_MODEL, DEFAULT_VAD, Pipeline, PipelineOptions
from ..types import SAMPLE_RATE, Result
from ..vad.methods import transcribe_options
from ..vad.regions import VadOptions
from ..writers import FORMATS, SubtitleOptions, label, timestamp, write_result
from .common import DeviceOption, Quiet, Verbose, fail, setup_logging, show_progress, vad_options

_RUN = TranscribeOptions()  # the defaults the CLI shares with the library
_PASS = _RUN.decoding
_ALIGN = AlignOptions()


class Task(str, Enum):
    TRANSCRIBE = "transcribe"
    TRANSLATE = "translate"


def parse_formats(value: str) -> list[str]:
    formats = (
        list(FORMATS) if value == "all" else [f.strip() for f in value.split(",") if f.strip()]
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
    """The run's sink: writes each finished file's outputs, prints its segments, counts."""

    paths: list[Path]
    output_dir: Path
    formats: list[str]
    quiet: bool
    subtitles: SubtitleOptions | None = None
    failed: int = 0

    def __call__(self, index: int, outcome: Result | MlxwxError) -> None:
        path = self.paths[index]
        if not isinstance(outcome, Result):
            self.failed += 1
            typer.echo(f"error: {outcome}", err=True)
            return
        try:
            write_result(outcome, self.output_dir / path.stem, self.formats, self.subtitles)
        except (OSError, ValueError, AssertionError) as err:
            self.failed += 1
            typer.echo(f"error: cannot write results of {path}: {err}", err=True)
            return
        if not self.quiet:
            for s in outcome.segments:
                typer.echo(f"[{timestamp(s.start)} --> {timestamp(s.end)}] {label(s)}")


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
) -> PipelineOptions:
    """The pipeline's options from `run`'s; raises ValueError or MlxwxError for a bad one."""
    decoding = DecodingOptions(
        task=task.value,
        language=language,
        beam_size=beam_size,
        best_of=best_of,
        patience=patience,
        without_timestamps=without_timestamps,
    )
    transcribe = TranscribeOptions(
        decoding,
        batch_size=batch_size,
        temperatures=_RUN.temperatures if temperature_fallback else (0.0,),
        condition_on_previous_text=condition_on_previous_text,
        initial_prompt=initial_prompt,
        hotwords=hotwords,
        workers=workers,
        loop_guard=loop_guard,
    )
    chunking = run_vad_options(vad, vad_onset, vad_offset, chunk_size)
    return PipelineOptions(
        transcribe,
        vad=None if vad == "none" else vad,
        vad_options=chunking,
        align=None
        if align is None
        else AlignOptions(
            align, segment_resolution, align_model, interpolate_method, return_char_alignments
        ),
    )


def run(
    audio: Annotated[list[Path], typer.Argument(help="Audio or video files to transcribe.")],
    model: Annotated[
        str,
        typer.Option(
            help="Model name (tiny.en, base, large-v3-turbo, ...), "
            "MLX folder or Hugging Face repo id."
        ),
    ] = DEFAULT_MODEL,
    language: Annotated[
        str | None, typer.Option(help="Language code; detected per file when omitted.")
    ] = None,
    task: Annotated[
        Task, typer.Option(help="Transcribe, or translate to English.")
    ] = Task.TRANSCRIBE,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where to write.")] = Path(
        "."
    ),
    output_format: Annotated[
        str,
        typer.Option("--output-format", "-f", help=f"Comma list of {','.join(FORMATS)}, or all."),
    ] = "all",
    batch_size: Annotated[
        int, typer.Option(help="Windows decoded together, across all files.")
    ] = _RUN.batch_size,
    beam_size: Annotated[int, typer.Option(help="Beams per window (1: greedy).")] = _PASS.beam_size,
    best_of: Annotated[
        int, typer.Option(help="Samples per window when falling back to sampling.")
    ] = _PASS.best_of,
    patience: Annotated[float, typer.Option(help="Beam search patience.")] = _PASS.patience,
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
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Transcribe AUDIO files together, writing each file's outputs as soon as it is done."""
    setup_logging(verbose, quiet)
    formats = parse_formats(output_format)
    try:
        use_device(device)
        options = build_options(
            task=task, language=language, beam_size=beam_size, best_of=best_of,
            patience=patience, without_timestamps=without_timestamps,
            temperature_fallback=temperature_fallback, batch_size=batch_size,
            loop_guard=loop_guard,
            condition_on_previous_text=condition_on_previous_text,
            initial_prompt=initial_prompt, hotwords=hotwords, workers=workers, vad=vad,
            vad_onset=vad_onset, vad_offset=vad_offset, chunk_size=chunk_size,
            align=None if no_align else align, segment_resolution=segment_resolution,
            align_model=align_model, interpolate_method=interpolate_method,
            return_char_alignments=return_char_alignments,
        )  # fmt: skip
        speakers = diarize_options(
            diarize, diarization_rttm, diarize_model, hf_token,
            (num_speakers, min_speakers, max_speakers), fill_nearest, speaker_embeddings,
        )  # fmt: skip
        options = replace(options, diarize=speakers)
        subtitles = SubtitleOptions(max_line_width, max_line_count, highlight_words)
        wm = load_model(model)
        if language is not None and wm.tokenizer.multilingual:
            wm.tokenizer.language_token(language)
        pipeline = Pipeline(wm, options)
        pipeline.vad(options.vad)  # its weights too, before any audio is read
        english = None if wm.tokenizer.multilingual and task == Task.TRANSCRIBE else "en"
        preload_aligner(pipeline, options, english or language)
        options, no_speakers = check_diarizer(pipeline, options)
    except (MlxwxError, ValueError) as err:
        raise fail(str(err)) from None
    writer = Writer(audio, output_dir, formats, quiet, subtitles)
    with progress_bar(quiet, len(audio)) as hook:
        pipeline.run(audio, writer, options, progress=hook)
    if writer.failed:
        raise fail(f"{writer.failed} of {len(audio)} files failed", code=1)
    if no_speakers:
        raise fail(f"{len(audio) - writer.failed} files written without speakers", code=1)
