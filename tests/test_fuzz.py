"""Property-based tests (hypothesis) of the audio loader and every writer: whatever the input,
only our own errors come out, and what is returned or written is well formed."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlxwx.audio import SAMPLE_RATE, AudioError, read_audio
from mlxwx.types import Result, Segment, Word
from mlxwx.writers import FORMATS, SubtitleOptions, cues, write_result
from tests.test_audio import CONTAINERS, JFK, encode_container

# No example database, and the patches hypothesis writes for failures go to the temp folder:
# nothing is written into the checkout.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "mlxwx-hypothesis")
)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".mp4", ".webm")
# The first bytes of each container, so that random bytes get past the format probe.
MAGIC = (
    b"",
    b"RIFF\x24\x00\x00\x00WAVEfmt ",
    # whole WAV headers: the random bytes are the samples (float32, then 16-bit PCM)
    b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x03\x00\x01\x00\x80>\x00\x00\x00\xfa\x00\x00"
    b"\x04\x00\x20\x00data\xff\xff\xff\xff",
    b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x02\x00\x44\xac\x00\x00\x10\xb1\x02\x00"
    b"\x04\x00\x10\x00data\xff\xff\xff\xff",
    b"fLaC\x00\x00\x00\x22",
    b"ID3\x03\x00\x00\x00\x00\x00\x00",
    b"\xff\xfb\x90\x64",
    b"OggS\x00\x02",
    b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00",
    b"\x1a\x45\xdf\xa3",
)


def assert_valid_samples(samples: np.ndarray) -> None:
    assert isinstance(samples, np.ndarray) and samples.dtype == np.float32
    assert samples.ndim == 1 and samples.size > 0
    assert np.isfinite(samples).all()


def read_or_audio_error(source: Path | bytes) -> np.ndarray | None:
    """`read_audio(source)` checked for shape and type; None where it raised AudioError."""
    try:
        samples = read_audio(source)
    except AudioError as err:
        assert "\n" not in str(err)
        return None
    assert_valid_samples(samples)
    return samples


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# --- the audio loader --------------------------------------------------------------------------


@FUZZ
@given(
    magic=st.sampled_from(MAGIC),
    body=st.binary(max_size=4096),
    extension=st.sampled_from(EXTENSIONS),
)
def test_random_bytes_give_audio_error_or_samples(folder, magic, body, extension):
    path = folder / f"random{extension}"
    path.write_bytes(magic + body)
    read_or_audio_error(path)
    read_or_audio_error(magic + body)  # the same bytes handed over in memory


@FUZZ
@given(values=st.lists(st.floats(width=32), min_size=1, max_size=2000))
def test_float_wav_samples_come_back_finite(values):
    """16 kHz float32 WAV (MAGIC[2]) is not resampled: its samples come back, NaN and
    infinities as 0 (and huge values as they are)."""
    samples = np.array(values, np.float32)
    expected = np.where(np.isfinite(samples), samples, np.float32(0))
    np.testing.assert_array_equal(read_audio(MAGIC[2] + samples.tobytes()), expected)


@functools.cache
def encoded(container: str) -> tuple[bytes, np.ndarray]:
    """3 s of speech in `container`: the file's bytes and its samples decoded whole (a cache,
    not a fixture: hypothesis prints a failing example's arguments)."""
    speech = read_audio(JFK)[: 3 * SAMPLE_RATE]
    with tempfile.TemporaryDirectory() as folder:
        path = encode_container(Path(folder), speech, container)
        return path.read_bytes(), read_audio(path)


# The last codec frame before a cut may be decoded from part of its bytes (an MP3 frame is 576
# samples at 16 kHz, a Vorbis block up to 1024 new samples)
LAST_FRAME = 2048


@FUZZ
@given(container=st.sampled_from(sorted(CONTAINERS)), fraction=st.floats(0.0, 1.0))
def test_cut_files_give_audio_error_or_a_prefix(folder, container, fraction):
    data, whole = encoded(container)
    path = folder / f"cut.{container}"
    path.write_bytes(data[: int(len(data) * fraction)])
    samples = read_or_audio_error(path)
    if samples is None:
        return
    assert samples.size <= whole.size + 64
    n = max(0, min(samples.size, whole.size) - LAST_FRAME)
    np.testing.assert_allclose(samples[:n], whole[:n], atol=1e-3)


@FUZZ
@given(
    container=st.sampled_from(sorted(CONTAINERS)),
    at=st.floats(0.0, 1.0),
    garbage=st.binary(min_size=1, max_size=512),
)
def test_damaged_files_give_audio_error_or_samples(folder, container, at, garbage):
    data, _ = encoded(container)
    start = int(len(data) * at)
    path = folder / f"damaged.{container}"
    path.write_bytes(data[:start] + garbage + data[start + len(garbage) :])
    read_or_audio_error(path)


# --- the writers -------------------------------------------------------------------------------

TEXTS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "-->", "a\tb", "\n\n", "a\r\nb", " 日本語です", "<u>x</u>", "é"]),
)
TIMES = st.one_of(
    st.floats(0.0, 20_000.0),
    st.floats(-5.0, 5.0),
    st.sampled_from([0.0, 1.0, 3599.9995, math.nan, math.inf]),
)
MAYBE_TIMES = st.one_of(st.none(), TIMES)
SPEAKERS = st.sampled_from([None, "SPEAKER_00", "SPEAKER_01", "spk-é"])
SCORES = st.one_of(st.none(), st.floats(0.0, 1.0), st.just(math.nan))

WORDS = st.builds(Word, TEXTS, MAYBE_TIMES, MAYBE_TIMES, SCORES, SPEAKERS)
SEGMENTS = st.builds(
    Segment,
    start=TIMES,
    end=TIMES,
    text=TEXTS,
    avg_logprob=st.one_of(st.floats(-5.0, 0.0), st.just(-math.inf)),
    words=st.lists(WORDS, max_size=6).map(tuple),
    speaker=SPEAKERS,
)
RESULTS = st.builds(
    Result,
    segments=st.lists(SEGMENTS, max_size=5).map(tuple),
    language=st.sampled_from([None, "en", "fr"]),
    duration=st.floats(0.0, 20_000.0),
)
OPTIONS = st.builds(
    SubtitleOptions,
    max_line_width=st.one_of(st.none(), st.integers(1, 40)),
    max_line_count=st.one_of(st.none(), st.integers(1, 4)),
    highlight_words=st.booleans(),
)

SRT_TIME = r"\d{2,}:\d{2}:\d{2},\d{3}"
VTT_TIME = r"(\d{2,}:)?\d{2}:\d{2}\.\d{3}"


def finite_times(result: Result) -> bool:
    times = [t for s in result.segments for t in (s.start, s.end)]
    times += [
        t for s in result.segments for w in s.words for t in (w.start, w.end) if t is not None
    ]
    return all(math.isfinite(t) for t in times)


def check_json(text: str, result: Result) -> None:
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the json"))
    assert len(data["segments"]) == len(result.segments)
    assert [s["text"] for s in data["segments"]] == [s.text for s in result.segments]


def check_cues(text: str, n: int, time: str, first: int) -> None:
    """Cues separated by one blank line, each a header (`first` lines, the last of them the
    times) and text lines that are not blank."""
    blocks = text.split("\n\n")
    assert blocks[-1] == "", "the file ends with a blank line"
    assert len(blocks) - 1 == n
    for i, block in enumerate(blocks[:-1], 1):
        lines = block.split("\n")
        if first == 2:
            assert lines.pop(0) == str(i)
        assert re.fullmatch(f"{time} --> {time}", lines[0]), lines[0]
        assert all(line.strip() and "-->" not in line for line in lines[1:]), block


def check_srt(text: str, n: int) -> None:
    check_cues(text + "\n" if n else text, n, SRT_TIME, 2)  # items are joined by a newline


def check_vtt(text: str, n: int) -> None:
    assert text.startswith("WEBVTT\n\n")
    check_cues(text[len("WEBVTT\n\n") :], n, VTT_TIME, 1)


def check_rows(text: str, result: Result, header: bool) -> list[list[str]]:
    """The tab-separated fields of each line (after the header), one line per segment."""
    assert "\r" not in text and (text == "" or text.endswith("\n"))
    lines = text.split("\n")[1 if header else 0 : -1]
    assert len(lines) == len(result.segments)
    return [line.split("\t") for line in lines]


@FUZZ
@given(result=RESULTS, options=OPTIONS)
def test_every_writer_writes_well_formed_files(folder, result, options):
    try:
        paths = write_result(result, folder / "out" / "talk", FORMATS, options)
    except ValueError:
        assert not finite_times(result)
        return
    assert finite_times(result)
    texts = {p.suffix[1:]: p.read_text(encoding="utf-8") for p in paths}
    assert sorted(texts) == sorted(FORMATS)
    check_json(texts["json"], result)
    n = len(cues(result, options))
    check_srt(texts["srt"], n)
    check_vtt(texts["vtt"], n)
    assert len(texts["txt"].split("\n")) - 1 == len(result.segments)
    speakers = any(s.speaker is not None for s in result.segments)
    header = "start\tend\tspeaker\ttext" if speakers else "start\tend\ttext"
    assert texts["tsv"].split("\n")[0] == header
    for row in check_rows(texts["tsv"], result, header=True):
        assert len(row) == header.count("\t") + 1 and [int(row[0]), int(row[1])]
    for row in check_rows(texts["aud"], result, header=False):
        assert len(row) == 3 and math.isfinite(float(row[0])) and math.isfinite(float(row[1]))
