"""The board of parts that worker processes take, and per-window sampling noise."""

from __future__ import annotations

import threading
import time

import mlx.core as mx
import numpy as np
import pytest

from mlxwx.asr import noise, pool
from mlxwx.asr.decoding import DecodingOptions, decode_features, encode
from mlxwx.asr.engine import SpeechFile, TranscribeOptions, Transcript
from mlxwx.audio import window_mel
from mlxwx.types import AudioChunk, SpanSamples, Window


def speech(file: int, *spans: tuple[int, int]) -> SpeechFile:
    chunks = tuple(AudioChunk(file, mx.zeros(b - a), (SpanSamples(a, b),)) for a, b in spans)
    return SpeechFile(file, chunks)


def back(part: SpeechFile, language: str | None) -> Transcript:
    """What a process returns for a part: one window per chunk."""
    windows = tuple(Window(part.file, c.pieces, language, ()) for c in part.chunks)
    return Transcript(part.file, language, windows)


def test_parts_are_chunks_and_an_input_comes_back_whole():
    board = pool.Board(TranscribeOptions(), detect=False, waiting=10)
    board.add(speech(0, (0, 100), (200, 300)))
    board.add(speech(1))  # no speech: one empty part
    board.close()
    taken = [board.take() for _ in range(3)]
    assert board.take(wait=False) is None  # parts in flight may yet come back
    assert [len(p.chunks) for _, p in taken] == [1, 1, 0]
    assert all(isinstance(c.audio, np.ndarray) for _, p in taken for c in p.chunks)  # for a pipe
    assert [p.source for _, p in taken] == [0, 0, 1]
    assert board.done(back(taken[1][1], "en")) is None
    whole = board.done(back(taken[0][1], "en"))
    assert whole is not None and whole.file == 0 and whole.language == "en"
    assert sorted(w.spans[0].start for w in whole.windows) == [0, 200] and {
        w.file for w in whole.windows
    } == {0}
    empty = board.done(back(taken[2][1], "en"))
    assert empty is not None and empty.file == 1 and empty.windows == ()
    with pytest.raises(StopIteration):  # every part is done
        board.take()


def test_parts_on_the_host_are_views_of_their_inputs_audio_where_they_can_be():
    """A chunk of one piece waits on the board as a view of its input's samples (no copy); a
    chunk of several pieces as a copy of its own samples. Both hold the chunk's samples."""
    samples = np.arange(1000, dtype=np.float32)
    audio = mx.array(samples)
    one = AudioChunk(0, audio[100:400], (SpanSamples(100, 400),))
    two = AudioChunk(
        0,
        mx.concatenate([audio[500:600], audio[700:900]]),
        (SpanSamples(500, 600), SpanSamples(700, 900)),
    )
    for given in (None, samples):
        got = pool.to_host(SpeechFile(0, (one, two)), given).chunks
        assert np.shares_memory(got[0].audio, samples) == (given is not None)
        assert not np.shares_memory(got[1].audio, samples)
        for chunk, want in zip(got, (one, two), strict=True):
            np.testing.assert_array_equal(chunk.audio, np.array(want.audio))


def test_with_condition_on_previous_text_an_input_is_one_part():
    board = pool.Board(TranscribeOptions(condition_on_previous_text=True), False, 10)
    board.add(speech(0, (0, 100), (200, 300)))
    board.close()
    (_, part), later = board.take(), board.take(wait=False)
    assert len(part.chunks) == 2 and later is None


def test_an_inputs_other_parts_wait_for_the_language_of_its_first():
    board = pool.Board(TranscribeOptions(), detect=True, waiting=10)
    board.add(speech(0, (0, 100), (200, 300), (400, 500)))
    board.add(speech(1, (0, 100)))
    board.close()
    (_, first), (_, other) = board.take(), board.take()
    assert first.source == 0 and first.language is None and other.source == 1
    assert board.take(wait=False) is None  # the others wait for the first part's language
    assert board.done(back(first, "fr")) is None
    rest = [board.take(), board.take()]  # released ahead of anything else, with the language
    assert [(p.source, p.language) for _, p in rest] == [(0, "fr"), (0, "fr")]
    assert board.take(wait=False) is None


def test_processes_with_busy_lanes_take_only_their_share_of_the_parts_left():
    """11 parts of one input, two processes with 8 lanes each: the first to ask fills 6 lanes,
    not 8, and leaves 5 for the other; an idle process always takes a part. (A clock that
    stands still: the others' batches count whole, see the next test.)"""
    board = pool.Board(TranscribeOptions(), False, waiting=16, takers=2, clock=lambda: 0.0)
    board.add(speech(0, *((i * 100, i * 100 + 50) for i in range(11))))
    board.close()

    def fill(taker: int) -> list:
        got = [board.take(wait=True, taker=taker)]  # no busy lane yet
        while len(got) < 8 and (part := board.take(wait=False, taker=taker)) is not None:
            got.append(part)
        return got

    first, second = fill(0), fill(1)
    assert (len(first), len(second)) == (6, 5)
    for _, part in first[:4]:
        board.done(back(part, "en"))
    board.give_back(second[:3])  # 3 waiting, 2 + 2 in flight: a share is 4 of the 7
    got = [board.take(wait=False, taker=0), board.take(wait=False, taker=0)]
    assert None not in got and board.take(wait=False, taker=0) is None  # one still waits
    assert board.take(wait=True, taker=0) is not None  # an idle process takes it


@pytest.mark.parametrize("other_began, taken", [(0.0, 4), (9.0, 8)])
def test_a_process_that_frees_up_leaves_half_to_one_about_to_finish(other_began, taken):
    """24 parts, two processes with 8 lanes. Process 1 takes 8 at 0 s and has them done at 10 s
    (1.25 s a part); process 0 took 8 at `other_began`. With 8 parts waiting, process 1 takes
    half when process 0 is due to finish (began at 0 s), all 8 when it has far to go (9 s)."""
    now = [0.0]
    board = pool.Board(TranscribeOptions(), False, waiting=24, takers=2, clock=lambda: now[0])
    board.add(speech(0, *((i * 100, i * 100 + 50) for i in range(24))))
    board.close()

    def fill(taker: int) -> list:
        got = [board.take(wait=True, taker=taker)]
        while len(got) < 8 and (part := board.take(wait=False, taker=taker)) is not None:
            got.append(part)
        return got

    first = fill(1)
    now[0] = other_began
    assert (len(first), len(fill(0))) == (8, 8)
    now[0] = 10.0
    for _, part in first:
        board.done(back(part, "en"))
    assert len(fill(1)) == taken


def test_a_process_with_nothing_left_to_take_is_reported_idle():
    """Taker 1 waits on a closed board whose parts are all in flight with taker 0: the board
    reports it idle once (its cores may go to taker 0), and not any more once it takes a part
    that a failed process gave back."""
    seen: list[frozenset[int]] = []
    board = pool.Board(TranscribeOptions(), False, waiting=4, takers=2, idle=seen.append)
    board.add(speech(0, (0, 100), (200, 300)))
    board.close()
    a, b = board.take(taker=0), board.take(taker=0)
    got = []
    waiting = threading.Thread(target=lambda: got.append(board.take(taker=1)))
    waiting.start()
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    board.give_back([b])
    waiting.join(5)
    assert seen == [frozenset({1})] and got == [b] and board.idle == frozenset()
    board.done(back(a[1], "en"))
    assert board.done(back(b[1], "en")) is not None


def test_parts_of_a_failed_process_are_taken_first():
    board = pool.Board(TranscribeOptions(), detect=False, waiting=10)
    for i in range(3):
        board.add(speech(i, (0, 100)))
    a, b = board.take(), board.take()
    board.give_back([a, b])
    assert [board.take(), board.take()] == [a, b]


def test_a_long_input_without_vad_is_cut_in_parts_at_quiet_moments():
    samples = 5 * pool.UNIT_SAMPLES // 2
    audio = mx.array(np.random.default_rng(0).normal(0, 0.1, samples).astype(np.float32))
    parts = pool.cut(AudioChunk(0, audio, (SpanSamples(0, samples),)))
    assert len(parts) == 2 and all(p.length >= pool.UNIT_SAMPLES * 0.9 for p in parts)
    assert parts[0].pieces[0].end == parts[1].pieces[0].start and parts[1].pieces[0].end == samples


def test_noise_samples_the_softmax():
    logits = mx.log(mx.array([[0.1, 0.2, 0.7]]))
    counts = np.zeros(3)
    for k in range(4000):
        counts[int(noise.sample(logits, 1.0, mx.array([noise.mix(k)], mx.uint32), 0)[0])] += 1
    assert np.allclose(counts / 4000, [0.1, 0.2, 0.7], atol=0.03)


def test_a_rows_noise_is_its_own_whatever_the_batch():
    keys = mx.array([noise.mix(1), noise.mix(2), noise.mix(3)], mx.uint32)
    together = np.array(noise.gumbel(keys, 5, 1000))
    alone = np.array(noise.gumbel(keys[1:2], 5, 1000))
    assert np.array_equal(together[1], alone[0])
    assert not np.array_equal(together[0], together[1])
    assert not np.array_equal(alone, np.array(noise.gumbel(keys[1:2], 6, 1000)))


@pytest.mark.slow
def test_a_window_samples_the_same_alone_or_in_a_batch(wm, clips):
    """decode_features at temperature 1 with per-window seeds: a window's samples do not
    depend on the windows decoded beside it."""
    mels = [window_mel(c, 0, c.shape[0], wm.dims.n_mels) for c in clips[:3]]
    features = encode(wm, mx.stack(mels))
    options = DecodingOptions(temperature=1.0, best_of=2)
    batch = decode_features(wm, features, options, seeds=[11, 12, 13])
    alone = decode_features(wm, features[1:2], options, seeds=[12])
    assert batch[1].tokens == alone[0].tokens
    other = decode_features(wm, features[1:2], options, seeds=[99])
    assert other[0].tokens != alone[0].tokens
