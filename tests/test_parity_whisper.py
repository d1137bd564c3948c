"""Greedy tokens of mlxwx vs faster-whisper (CTranslate2) on the same weights and waveforms.

The windows are fed in faster-whisper's layout: the log-mel of the clip (plus 160 zero samples)
padded to 3000 frames with zeros in the log-mel domain. mlxwx's own front end pads 30 s of zero
audio, as openai-whisper does (so padding is clamped silence, not 0.0); that input difference
alone changes tiny.en's punctuation on jfk, so it is held equal here to test model and decoder.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlxwx.asr.decoding import DecodingOptions, decode
from mlxwx.asr.model import load_model
from mlxwx.audio import N_FRAMES, load_audio, log_mel_spectrogram, window_mel

faster_whisper = pytest.importorskip("faster_whisper")
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def clips(jfk: Path) -> list[Path]:
    found = sorted(LIBRIVOX.glob("*.wav"))
    assert found, "Debian's pocketsphinx-testdata is not installed (.ci/run installs it)"
    return [jfk, *found]


def faster_whisper_window(audio: mx.array, n_mels: int) -> mx.array:
    """(1, 3000, n_mels): faster-whisper's features of a clip shorter than 30 s."""
    mel = log_mel_spectrogram(audio, n_mels=n_mels, padding=160)
    n = min(N_FRAMES, mel.shape[0] - 1)
    return mx.concatenate([mel[:n], mx.zeros((N_FRAMES - n, n_mels))])[None]


def reference_tokens(ct2_dir: Path, audio: np.ndarray, language: str | None) -> list[int]:
    fw = faster_whisper.WhisperModel(str(ct2_dir), device="cpu", compute_type="float32")
    segments, _ = fw.transcribe(
        audio,
        language=language,
        beam_size=1,
        temperature=0.0,
        without_timestamps=True,
        condition_on_previous_text=False,
        vad_filter=False,
    )
    return [t for s in segments for t in s.tokens]


@pytest.mark.parametrize("name", ["tiny.en", pytest.param("base", marks=pytest.mark.slow)])
def test_greedy_tokens_match_faster_whisper(name, request, jfk_path):
    folder = request.getfixturevalue("tiny_en_dir" if name == "tiny.en" else "base_dir")
    ct2 = request.getfixturevalue("tiny_en_ct2_dir" if name == "tiny.en" else "base_ct2_dir")
    wm = load_model(str(folder), dtype=mx.float32)
    language = "en" if wm.tokenizer.multilingual else None
    options = DecodingOptions(language=language, without_timestamps=True, beam_size=1)
    for clip in clips(jfk_path):
        audio = load_audio(clip)
        ours = decode(wm, faster_whisper_window(audio, wm.dims.n_mels), options)[0].tokens
        theirs = reference_tokens(ct2, np.array(audio), language)
        assert ours == theirs, (
            f"{name} {clip.name}:\n{wm.tokenizer.decode(ours)}\n{wm.tokenizer.decode(theirs)}"
        )


def test_batched_rows_match_single_rows(tiny_en_dir, jfk_path):
    """Rows of a batch decode exactly as they do alone (per-row state, no cross-talk)."""
    wm = load_model(str(tiny_en_dir), dtype=mx.float32)
    audio = load_audio(jfk_path)
    mels = [
        window_mel(audio, 0, 10**9, 80),
        window_mel(audio, 0, 16000 * 4, 80),
        window_mel(mx.zeros(16000 * 3), 0, 10**9, 80),
    ]
    options = DecodingOptions(beam_size=1)
    alone = [decode(wm, m[None], options)[0].tokens for m in mels]
    together = [r.tokens for r in decode(wm, mx.stack(mels), options)]
    assert together == alone
