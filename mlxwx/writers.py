"""The write stage: results as json (WhisperX schema), txt, srt, vtt, tsv and aud.

Every file is written atomically: a reader, or a run killed at any moment, sees either the whole
file or none of it, never a part, and no temporary file is left behind on Linux (see
`write_atomic`). The json is written last, so an input whose .json exists has all its outputs.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .types import Result, Segment, Word

FORMATS = ("json", "txt", "srt", "vtt", "tsv", "aud")
# What `-f all` writes: WhisperX's `get_writer("all")` leaves its optional aud writer out
ALL_FORMATS = ("json", "txt", "srt", "vtt", "tsv")

_T = TypeVar("_T")
_FLAT = str.maketrans({"\n": " ", "\r": " "})


def timestamp(seconds: float, decimal: str = ".", always_hours: bool = False) -> str:
    """HH:MM:SS.mmm (hours omitted when zero unless `always_hours`)."""
    if not math.isfinite(seconds):
        raise ValueError(f"cannot write a time of {seconds} s")
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    head = f"{hours:02d}:" if always_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def flat(text: str) -> str:
    """`text` on one line: line breaks become spaces."""
    return text.translate(_FLAT)


def label(segment: Segment) -> str:
    """A segment's text on one line, after its speaker's label when it has one."""
    text = flat(segment.text).strip().replace("-->", "->")
    return f"[{segment.speaker}]: {text}" if segment.speaker else text


def to_json(result: Result) -> str:
    """WhisperX's schema, as strict JSON: a number that is not finite becomes null."""
    return json.dumps(_finite(result.to_dict()), ensure_ascii=False, indent=2) + "\n"


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities in its lists and dicts replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_txt(result: Result) -> str:
    return "".join(f"{label(s)}\n" for s in result.segments)


@dataclass(frozen=True)
class SubtitleOptions:
    """How srt and vtt cues are built (openai-whisper's and WhisperX's options).

    Attributes:
        max_line_width: characters in a line before it wraps; with `max_line_count` cues are
            built from word times across segments. None: one cue per segment.
        max_line_count: lines in a cue before a new cue starts (needs `max_line_width`).
        highlight_words: a cue per word, the word spoken underlined (<u>...</u>).
    """

    max_line_width: int | None = None
    max_line_count: int | None = None
    highlight_words: bool = False

    def __post_init__(self) -> None:
        for name in ("max_line_width", "max_line_count"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {value}")


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def _lines(result: Result, options: SubtitleOptions) -> Iterator[list[tuple[Word, str]]]:
    """Words grouped into cues, each word with the text it adds ("\n" where a line wraps):
    a new line when the next word would pass `max_line_width`, a new cue after
    `max_line_count` lines or a pause of over 3 s; each segment its own cue unless both limits
    are set (as openai-whisper's `SubtitlesWriter`); a new cue whenever the speaker changes."""
    width, count = options.max_line_width, options.max_line_count
    keep_segments = width is None or count is None
    cue: list[tuple[Word, str]] = []
    length, lines, last = 0, 1, 0.0
    for segment in result.segments:
        for i, word in enumerate(segment.words):
            assert word.start is not None
            pause = not keep_segments and word.start - last > 3.0
            room = width is None or length + 1 + len(word.word) <= width
            segment_break = bool(cue) and (
                (i == 0 and keep_segments) or word.speaker != cue[-1][0].speaker
            )
            text = " " + flat(word.word)
            if not (length > 0 and room and not pause and not segment_break):
                text = flat(word.word)
                if segment_break or (cue and count is not None and (pause or lines >= count)):
                    yield cue
                    cue, lines = [], 1
                elif length > 0:
                    lines += 1
                    text = "\n" + flat(word.word)
                length = 0
            cue.append((word, text))
            length += len(text.lstrip("\n"))
            last = word.start
    if cue:
        yield cue


def cues(result: Result, options: SubtitleOptions | None = None) -> list[Cue]:
    """The subtitle cues of `result`: one per segment, or built from word times; cues without
    text are left out."""
    options = options or SubtitleOptions()
    worded = all(
        s.words and all(w.start is not None and w.end is not None for w in s.words)
        for s in result.segments
    )  # words left untimed (--interpolate-method ignore): one cue per segment
    if not worded or (options.max_line_width is None and not options.highlight_words):
        return _tidy([Cue(s.start, s.end, label(s)) for s in result.segments])
    out = []
    for group in _lines(result, options):
        start, end = group[0][0].start, group[-1][0].end
        assert start is not None and end is not None
        prefix = f"[{group[0][0].speaker}]: " if group[0][0].speaker else ""
        if not options.highlight_words:
            out.append(Cue(start, end, prefix + "".join(t for _, t in group)))
            continue
        out += _highlighted(group, prefix, start, end)
    return _tidy(out)


def _tidy(cues: list[Cue]) -> list[Cue]:
    """`cues` without blank lines (a blank line ends a cue) or "-->" (it starts one) in their
    text, and without the cues left with no text."""
    out = []
    for cue in cues:
        lines = [line for line in cue.text.replace("-->", "->").split("\n") if line.strip()]
        if lines:
            out.append(Cue(cue.start, cue.end, "\n".join(lines)))
    return out


def _highlighted(group: list[tuple[Word, str]], prefix: str, start: float, end: float) -> list[Cue]:
    """A cue per word of `group` with that word underlined, plain cues over the gaps."""
    out, at = [], start
    for k, (word, _) in enumerate(group):
        assert word.start is not None and word.end is not None
        if word.start > at:
            out.append(Cue(at, word.start, prefix + "".join(t for _, t in group)))
        texts = [
            t if j != k or not w.word else t.replace(flat(w.word), f"<u>{flat(w.word)}</u>", 1)
            for j, (w, t) in enumerate(group)
        ]
        out.append(Cue(word.start, word.end, prefix + "".join(texts)))
        at = word.end
    return [c for c in out if c.end > c.start or c.start == end]


def to_srt(result: Result, options: SubtitleOptions | None = None) -> str:
    items = (
        f"{i}\n{timestamp(c.start, ',', True)} --> {timestamp(c.end, ',', True)}\n{c.text}\n"
        for i, c in enumerate(cues(result, options), 1)
    )
    return "\n".join(items)


def to_vtt(result: Result, options: SubtitleOptions | None = None) -> str:
    items = "".join(
        f"{timestamp(c.start)} --> {timestamp(c.end)}\n{c.text}\n\n" for c in cues(result, options)
    )
    return f"WEBVTT\n\n{items}"


def to_tsv(result: Result) -> str:
    """start and end in ms, and the text (WhisperX's columns); a speaker column before the text
    when the result has speakers."""
    speakers = any(s.speaker is not None for s in result.segments)
    rows = (
        f"{round(1000 * s.start)}\t{round(1000 * s.end)}\t"
        + (f"{s.speaker or ''}\t" if speakers else "")
        + flat(s.text).strip().replace("\t", " ")
        + "\n"
        for s in result.segments
    )
    return ("start\tend\tspeaker\ttext\n" if speakers else "start\tend\ttext\n") + "".join(rows)


def to_aud(result: Result) -> str:
    """Audacity labels as WhisperX writes them: start and end in seconds (as in the json), and
    the text after `[[speaker]]` when the segment has one; tabs and line breaks become spaces."""
    rows = (
        f"{round(s.start, 3)}\t{round(s.end, 3)}\t"
        + (f"[[{s.speaker}]]" if s.speaker is not None else "")
        + flat(s.text).strip().replace("\t", " ")
        + "\n"
        for s in result.segments
    )
    return "".join(rows)


WRITERS: dict[str, Callable[[Result], str]] = {
    "json": to_json,
    "txt": to_txt,
    "srt": to_srt,
    "vtt": to_vtt,
    "tsv": to_tsv,
    "aud": to_aud,
}


SUBTITLES = {"srt": to_srt, "vtt": to_vtt}


def _beside(path: Path, create: Callable[[Path], _T]) -> _T:
    """`create(name)` for a new hidden name in `path`'s folder, retried while the name is
    taken. Files and folders made with the modes `open` and `mkdir` use (0o666 and 0o777) get
    the umask applied by the system, as any new file does; reading the umask would mean
    setting it, which races with files other threads create."""
    while True:
        try:
            return create(path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp"))
        except FileExistsError:
            continue


def _new_file(tmp: Path) -> tuple[int, Path]:
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp


def _new_folder(tmp: Path) -> Path:
    tmp.mkdir(0o777)
    return tmp


def _link_unnamed(path: Path, data: bytes) -> bool:
    """Write `data` to an unnamed file in `path`'s folder and link it in as `path` (Linux
    O_TMPFILE): until the link the file has no name, so a crash leaves nothing behind. False
    when the system or the file system cannot."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        fd = os.open(path.parent, flag | os.O_WRONLY, 0o666)  # the umask applies
    except OSError:
        return False
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.fdopen(os.dup(fd), "wb") as f:
            f.write(data)
        # linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/N names the unnamed file (a dir fd makes
        # os.link call linkat; plain link() would link the /proc symlink itself)
        unnamed = f"/proc/self/fd/{fd}"

        def link(name: Path) -> str:
            os.link(unnamed, name.name, dst_dir_fd=folder, follow_symlinks=True)
            return name.name

        try:
            link(path)
        except FileExistsError:  # replacing a file: rename a named link over it
            tmp = _beside(path, link)
            os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
    finally:
        os.close(fd)
        os.close(folder)
    return True


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, with the mode `open(path, "w")` gives (0o666 less the
    umask): through an unnamed file linked into place where the system has them (Linux), else
    a temporary file in the same folder renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    if _link_unnamed(path, data):
        return
    fd, tmp = _beside(path, _new_file)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@contextmanager
def atomic_folder(dst: Path) -> Iterator[Path]:
    """A temporary folder beside `dst` to fill, with the mode `mkdir` gives (0o777 less the
    umask); renamed to `dst` when the block ends, removed if it raises."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _beside(dst, _new_folder)
    try:
        yield tmp
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def render(
    result: Result, formats: Iterable[str], subtitles: SubtitleOptions | None = None
) -> dict[str, str]:
    """Each format's text of `result`, the json last; ValueError for an unknown format or a
    time that is not finite."""
    _check_times(result)
    texts = {}
    for fmt in sorted(formats, key=lambda f: f == "json"):
        if fmt not in WRITERS:
            raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}")
        texts[fmt] = SUBTITLES[fmt](result, subtitles) if fmt in SUBTITLES else WRITERS[fmt](result)
    return texts


def write_result(
    result: Result, stem: Path, formats: Iterable[str], subtitles: SubtitleOptions | None = None
) -> list[Path]:
    """The write stage: `result` next to `stem` (`stem.json`, `stem.srt`, ...), the json last;
    returns the paths. `subtitles`: how srt and vtt cues are built. Every text is made before
    the first file is written: a ValueError (an unknown format, a time that is not finite)
    leaves no file."""
    paths = []
    for fmt, text in render(result, formats, subtitles).items():
        path = stem.with_name(f"{stem.name}.{fmt}")
        write_atomic(path, text)
        paths.append(path)
    return paths


def _check_times(result: Result) -> None:
    """ValueError naming the first segment or word whose time is NaN or infinite."""
    for i, s in enumerate(result.segments):
        times = [s.start, s.end] + [t for w in s.words for t in (w.start, w.end) if t is not None]
        if not all(math.isfinite(t) for t in times):
            raise ValueError(f"segment {i} ({s.text.strip()[:40]!r}) has a time that is not finite")


# --- output names -------------------------------------------------------------------------

STDIN = "-"  # the input name of audio read from stdin


def output_stems(paths: list[Path], output_dir: Path) -> list[Path]:
    """Where each input's outputs go, without extension: `output_dir/name` from the input's
    name; inputs whose names collide keep their folders (relative to the folder all of them
    share), and, in one folder, their extension (`talk.flac`, `talk.wav`). stdin is `stdin`."""
    names = [_name(p) for p in paths]
    clashes = {n for n, k in Counter(names).items() if k > 1}
    if not clashes:
        return [output_dir / n for n in names]
    common = Path(os.path.commonpath([_parent(p) for p in paths]))
    stems = [
        output_dir / (Path(_parent(p)).relative_to(common) / n if n in clashes else n)
        for p, n in zip(paths, names, strict=True)
    ]
    counts = Counter(stems)
    pairs = zip(stems, paths, strict=True)
    return [s.with_name(_name(p, keep_extension=True)) if counts[s] > 1 else s for s, p in pairs]


def _name(path: Path, keep_extension: bool = False) -> str:
    if str(path) == STDIN:
        return "stdin"
    return path.name if keep_extension else path.stem


def _parent(path: Path) -> str:
    return os.path.dirname(os.path.abspath(path))


def complete(stem: Path, formats: Iterable[str]) -> bool:
    """Whether every output of `stem` exists (outputs are linked into place only when whole)."""
    return all(stem.with_name(f"{stem.name}.{fmt}").is_file() for fmt in formats)
