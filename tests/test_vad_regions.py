"""The shared probabilities -> regions -> chunks path (mlxwx.vad.regions).

Hand-built probability sequences check each rule; silero-vad's own `get_speech_timestamps` (and
its probabilities -> timestamps half) is the reference the silero setting must equal sample for
sample, on random sequences and on real audio.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlxwx.audio import load_audio
from mlxwx.vad import (
    SAMPLE_RATE,
    Chunk,
    SpanSeconds,
    SpeechProbs,
    VadOptions,
    binarize,
    chunk_audio,
    merge_chunks,
)

from .speech import import_silero

DATA = Path(__file__).parent / "data"
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
HOP = 512 / SAMPLE_RATE  # 32 ms, silero's frame


def regions(scores: list[float], o: VadOptions, hop: float = HOP) -> list[tuple[int, int]]:
    """Regions of hand-built scores, in frames (start, end) — times / hop, exactly."""
    p = SpeechProbs(mx.array(np.asarray(scores, np.float32)), hop)
    found = binarize(p, o, len(scores) * hop)
    return [(round(r.start / hop), round(r.end / hop)) for r in found]


def test_hysteresis_onset_offset() -> None:
    o = VadOptions(onset=0.5, offset=0.4, max_speech=math.inf)
    s = [0.1, 0.6, 0.45, 0.45, 0.3, 0.45, 0.55, 0.2, 0.1]
    # speech from the first frame >= onset to the first frame < offset; 0.45 alone never starts
    assert regions(s, o) == [(1, 4), (6, 7)]
    assert VadOptions(onset=0.5).threshold_off == pytest.approx(0.35)
    assert VadOptions(onset=0.1).threshold_off == 0.01
    assert regions(s, VadOptions(onset=0.5, offset=0.5, max_speech=math.inf)) == [(1, 2), (6, 7)]


def test_open_region_ends_at_duration() -> None:
    p = SpeechProbs(mx.array([0.0, 0.9, 0.9]), HOP)
    (r,) = binarize(p, VadOptions(), 0.08)
    assert (r.start, r.end) == (HOP, 0.08)


def test_min_silence_bridges_short_dips() -> None:
    s = [0.9] * 10 + [0.1] * 3 + [0.9] * 10 + [0.1] * 6 + [0.9] * 5 + [0.0] * 8
    o = VadOptions(min_silence=4 * HOP, max_speech=math.inf)
    # the 3-frame dip is bridged; the 6-frame one ends the region at its first silent frame
    assert regions(s, o) == [(0, 23), (29, 34)]
    assert regions(s, VadOptions(max_speech=math.inf)) == [(0, 10), (13, 23), (29, 34)]


def test_min_speech_drops_short_regions() -> None:
    s = [0.0, 0.9, 0.9, 0.0, 0.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.0]
    o = VadOptions(min_speech=3 * HOP, max_speech=math.inf)
    assert regions(s, o) == [(5, 10)]
    assert regions(s, VadOptions(max_speech=math.inf)) == [(1, 3), (5, 10)]


def test_padding_splits_close_gaps_and_clips() -> None:
    s = [0.9] * 4 + [0.0] * 2 + [0.9] * 4 + [0.0] * 20 + [0.9] * 4
    p = SpeechProbs(mx.array(np.asarray(s, np.float32)), HOP)
    pad = 3 * HOP
    found = binarize(p, VadOptions(pad=pad, max_speech=math.inf), len(s) * HOP)
    got = [(round(r.start * SAMPLE_RATE), round(r.end * SAMPLE_RATE)) for r in found]
    f = 512  # samples per frame
    # first start clipped at 0; a gap under 2 * pad shared half and half; last end at duration
    assert got == [(0, 5 * f), (5 * f, 13 * f), (27 * f, 34 * f)]


def test_min_score_cut_in_second_half() -> None:
    n = 1000  # 32 s of speech at 32 ms
    s = np.full(n + 20, 0.9, np.float32)
    s[n:] = 0.0
    s[200] = 0.55  # lower, but in the first half of the running region
    s[700] = 0.6  # the lowest of the second half
    o = VadOptions(max_speech=25.0)
    found = binarize(SpeechProbs(mx.array(s), HOP), o, len(s) * HOP)
    assert [round(r.start / HOP) for r in found] == [0, 700]
    assert round(found[0].end / HOP) == 700 and round(found[1].end / HOP) == n
    assert all(r.duration <= 25.0 for r in found)


def test_silence_cut_at_longest_silence() -> None:
    s = [0.9] * 300 + [0.1] * 9 + [0.9] * 100 + [0.1] * 5 + [0.9] * 400 + [0.0] * 30
    o = VadOptions(min_silence=0.5, max_speech=20.0, cut="silence")
    # both silences are bridged (< 0.5 s); at 20 s the region is cut at the longer, earlier one
    # (frames 300-308): the first part ends where it starts, the next starts where speech is back
    assert regions(s, o) == [(0, 300), (309, 814)]
    hard = [0.9] * 800 + [0.0] * 5
    cut = regions(hard, o)
    assert cut[0][0] == 0 and all((e - b) * HOP <= 20.0 for b, e in cut)
    assert len(cut) == 2 and cut[1][0] == cut[0][1] + 1  # hard cut: the next frame restarts


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="onset"):
        VadOptions(onset=1.5)
    with pytest.raises(ValueError, match="min_silence"):
        VadOptions(min_silence=-1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        VadOptions(chunk_size=0.0)
    with pytest.raises(ValueError, match="merge"):
        VadOptions(merge="glue")  # type: ignore[arg-type]


def _some_regions() -> list[SpanSeconds]:
    rng = np.random.default_rng(1)
    t, out = 0.3, []
    for _ in range(40):
        d = float(rng.choice([0.4, 2.0, 7.5, 12.0, 29.0]))
        out.append(SpanSeconds(round(t * 16000) / 16000, round((t + d) * 16000) / 16000))
        t += d + float(rng.uniform(0.05, 4.0))
    return out


@pytest.mark.parametrize("merge", ["span", "concat"])
def test_merge_chunks_sizes_and_order(merge: str) -> None:
    rs = _some_regions()
    o = VadOptions(chunk_size=30.0, merge=merge)  # type: ignore[arg-type]
    chunks = merge_chunks(rs, o)
    assert [r for c in chunks for r in c.regions] == rs  # every region once, in order
    for c in chunks:
        assert c.duration <= 30.0 + 1e-9
        if merge == "span":
            assert c.pieces == (SpanSeconds(c.regions[0].start, c.regions[-1].end),)
        else:
            assert c.pieces == c.regions
    for a, b in itertools.pairwise(chunks):  # greedy: the next region did not fit
        first = b.regions[0]
        grown = first.end - a.start if merge == "span" else a.duration + first.duration
        assert grown > 30.0
    assert merge_chunks([], o) == []


def test_merge_cuts_regions_longer_than_chunk() -> None:
    o = VadOptions(chunk_size=30.0, merge="concat")
    chunks = merge_chunks([SpanSeconds(1.0, 71.0)], o)
    assert [c.duration for c in chunks] == pytest.approx([70 / 3] * 3, abs=1e-3)
    assert chunks[0].start == 1.0 and chunks[-1].end == 71.0


def test_concat_time_map_round_trip() -> None:
    audio = mx.arange(0, 400 * SAMPLE_RATE, dtype=mx.int32)  # sample i holds i
    rs = _some_regions()[:6]
    for c in merge_chunks(rs, VadOptions(merge="concat", chunk_size=30.0)):
        samples = np.array(chunk_audio(audio, c))
        assert len(samples) == round(c.duration * SAMPLE_RATE)
        for i in np.linspace(0, len(samples) - 1, 50).astype(int):
            assert round(c.to_original(i / SAMPLE_RATE) * SAMPLE_RATE) == samples[i]
        # a seam: the start of piece k+1, or with end=True the end of piece k
        if len(c.pieces) > 1:
            seam = c.pieces[0].duration
            assert c.to_original(seam) == pytest.approx(c.pieces[1].start)
            assert c.to_original(seam, end=True) == pytest.approx(c.pieces[0].end)


def test_span_chunk_audio_includes_gaps() -> None:
    audio = mx.arange(0, 40 * SAMPLE_RATE, dtype=mx.int32)
    c = Chunk((SpanSeconds(2.0, 9.5),), (SpanSeconds(2.0, 3.0), SpanSeconds(8.0, 9.5)))
    samples = np.array(chunk_audio(audio, c))
    assert samples[0] == 32000 and samples[-1] == 9.5 * SAMPLE_RATE - 1
    assert c.to_original(1.25) == 3.25 and c.duration == 7.5


# --- identity with silero-vad ---------------------------------------------------------------


def _silero_kwargs(o: VadOptions) -> dict[str, float | None]:
    return {
        "threshold": o.onset,
        "neg_threshold": o.offset,
        "min_speech_duration_ms": round(o.min_speech * 1000),
        "min_silence_duration_ms": round(o.min_silence * 1000),
        "speech_pad_ms": round(o.pad * 1000),
        "max_speech_duration_s": o.max_speech,
    }


def _ours(probs: list[float], o: VadOptions, samples: int) -> list[dict[str, int]]:
    p = SpeechProbs(mx.array(np.asarray(probs, np.float32)), HOP)
    found = binarize(p, o, samples / SAMPLE_RATE)
    return [{"start": round(r.start * 16000), "end": round(r.end * 16000)} for r in found]


def test_random_sequences_match_silero() -> None:
    silero = import_silero()
    rng = np.random.default_rng(0)
    for _ in range(400):
        n = int(rng.integers(1, 600))
        steps = np.sort(rng.integers(0, n, int(rng.integers(1, 25))))
        p = np.zeros(n)
        for s in steps:
            p[s:] = rng.random()
        p = np.clip(p + rng.normal(0, rng.choice([0.0, 0.05, 0.2]), n), 0, 1).astype(np.float32)
        samples = n * 512 - int(rng.integers(0, 512))
        onset = float(rng.choice([0.5, 0.3, 0.7]))
        o = VadOptions.silero(
            onset=onset,
            offset=None if rng.random() < 0.5 else round(onset - 0.2 * rng.random(), 3),
            min_speech=float(rng.choice([0, 0.1, 0.25, 1.0])),
            min_silence=float(rng.choice([0, 0.1, 0.3, 2.0])),
            pad=float(rng.choice([0, 0.03, 0.4])),
            max_speech=float(rng.choice([math.inf, 1.0, 2.5, 5.0])),
        )
        ref = silero.get_speech_timestamps_from_probs(
            p.tolist(), audio_length_samples=samples, **_silero_kwargs(o)
        )
        assert _ours(p.tolist(), o, samples) == ref, o


def _real_audio() -> dict[str, np.ndarray]:
    clips = {
        "jfk": DATA / "jfk.flac",
        "sample": DATA / "sample.wav",
        "synthconv": DATA / "synthconv.wav",
        "librivox": LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0870.wav",
    }
    out = {k: np.array(load_audio(v)) for k, v in clips.items() if v.exists()}
    rng = np.random.default_rng(3)
    speech = np.concatenate([out["jfk"], out["sample"]])
    out["noise"] = rng.normal(0, 0.1, 20 * SAMPLE_RATE).astype(np.float32)
    out["silence"] = np.zeros(7 * SAMPLE_RATE + 123, np.float32)
    # speech and noise, longer than silero's 30 s cut
    out["mixed"] = np.concatenate([speech, out["noise"][:80000] * 0.2, speech]).astype(np.float32)
    return out


SETTINGS = {
    "silero-defaults": VadOptions.silero(),
    "whisperx-silero": VadOptions.silero(onset=0.5, max_speech=30.0),
    "faster-whisper": VadOptions.silero(min_speech=0.0, min_silence=0.16, pad=0.4, max_speech=30.0),
    "short-max": VadOptions.silero(onset=0.4, offset=0.2, max_speech=4.0, min_silence=0.3),
}


def test_real_audio_matches_get_speech_timestamps() -> None:
    """Our path on the probabilities silero's own loop computes == get_speech_timestamps."""
    silero = import_silero()
    pytest.importorskip("onnxruntime", reason="onnxruntime missing: pip install -e '.[dev]'")
    import torch

    model = silero.load_silero_vad(onnx=True)
    seen: list[float] = []

    def recording(x: torch.Tensor, sr: int) -> torch.Tensor:
        out = model(x, sr)
        seen.append(out.item())
        return out

    recording.reset_states = model.reset_states  # type: ignore[attr-defined]
    checked = 0
    for name, audio in _real_audio().items():
        seen.clear()
        ref = silero.get_speech_timestamps(torch.from_numpy(audio), recording)
        probs = list(seen)  # one model pass per file; every setting reuses its probabilities
        for setting, o in SETTINGS.items():
            want = silero.get_speech_timestamps_from_probs(
                probs, audio_length_samples=len(audio), **_silero_kwargs(o)
            )
            if setting == "silero-defaults":
                assert want == ref
            assert _ours(probs, o, len(audio)) == want, (name, setting)
            checked += len(want)
    assert checked > 20
