"""Whisper's vocabulary: text <-> ids, special tokens, prompts and suppression lists.

Wraps a Hugging Face `tokenizers` file (`tokenizer.json`). Language tokens are read from the
vocabulary itself (the `<|xx|>` tokens between `<|startoftranscript|>` and `<|translate|>`), so
large-v3's extra language needs no table here.
"""

from __future__ import annotations

import functools
import re
from functools import cached_property
from pathlib import Path

import tokenizers

TASKS = ("transcribe", "translate")
_LANGUAGE_TOKEN = re.compile(r"<\|([a-z]{2,3}|haw)\|>")

# Symbols Whisper should not emit as whole tokens (the set openai-whisper suppresses by default):
# speaker/markup punctuation and music notes, alone or with a leading space.
_NON_SPEECH_SYMBOLS = [
    *'"#()*+/:;<=>@[\\]^_`{|}~「」『』',
    *"<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split(),
]
_MUSIC_NOTES = "♩♪♫♬♭♮♯"


@functools.cache
def _byte_chars() -> dict[int, str]:
    """GPT-2's byte -> printable character table, in which byte-level BPE vocabularies (Whisper's)
    spell their tokens."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class Tokenizer:
    """Whisper tokenizer over a `tokenizers.Tokenizer`."""

    def __init__(self, tokenizer: tokenizers.Tokenizer, multilingual: bool):
        self.tokenizer = tokenizer
        self.multilingual = multilingual

    @classmethod
    def from_file(cls, path: str | Path, multilingual: bool) -> Tokenizer:
        return cls(tokenizers.Tokenizer.from_file(str(path)), multilingual)

    def special(self, text: str) -> int:
        token = self.tokenizer.token_to_id(text)
        if token is None:
            raise ValueError(f"vocabulary has no special token {text}")
        return token

    @cached_property
    def eot(self) -> int:
        return self.special("<|endoftext|>")

    @cached_property
    def sot(self) -> int:
        return self.special("<|startoftranscript|>")

    @cached_property
    def translate(self) -> int:
        return self.special("<|translate|>")

    @cached_property
    def transcribe(self) -> int:
        return self.special("<|transcribe|>")

    @cached_property
    def sot_lm(self) -> int:
        return self.special("<|startoflm|>")

    @cached_property
    def sot_prev(self) -> int:
        return self.special("<|startofprev|>")

    @cached_property
    def no_timestamps(self) -> int:
        return self.special("<|notimestamps|>")

    @cached_property
    def no_speech(self) -> int:
        for name in ("<|nospeech|>", "<|nocaptions|>"):
            token = self.tokenizer.token_to_id(name)
            if token is not None:
                return token
        raise ValueError("vocabulary has no no-speech token")

    @property
    def timestamp_begin(self) -> int:
        """Id of `<|0.00|>`; timestamp i (0.02 s steps) is `timestamp_begin + i`."""
        return self.no_timestamps + 1

    @cached_property
    def languages(self) -> dict[str, int]:
        """Language code -> token id, in vocabulary order (empty for English-only models)."""
        if not self.multilingual:
            return {}
        found = {}
        for token in range(self.sot + 1, self.translate):
            match = _LANGUAGE_TOKEN.fullmatch(self.tokenizer.id_to_token(token) or "")
            if match:
                found[match.group(1)] = token
        return found

    def language_token(self, code: str) -> int:
        if code not in self.languages:
            raise ValueError(
                f"unknown language {code!r}; this model knows {sorted(self.languages)}"
            )
        return self.languages[code]

    def sot_sequence(self, language: str | None, task: str, timestamps: bool) -> list[int]:
        """The prompt that opens every window: sot [language task] [notimestamps]."""
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        tokens = [self.sot]
        if self.multilingual:
            tokens += [self.language_token(language or "en"), getattr(self, task)]
        if not timestamps:
            tokens.append(self.no_timestamps)
        return tokens

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, tokens: list[int]) -> str:
        """Text of the ordinary tokens in `tokens` (special and timestamp tokens dropped)."""
        return self.tokenizer.decode([t for t in tokens if t < self.eot])

    @cached_property
    def token_bytes(self) -> list[bytes]:
        """The UTF-8 bytes of every ordinary token (the vocabulary's byte-level BPE strings
        mapped back to bytes, as the `ByteLevel` decoder does)."""
        to_byte = {c: b for b, c in _byte_chars().items()}
        return [
            bytes(to_byte[c] for c in self.tokenizer.id_to_token(t) or "") for t in range(self.eot)
        ]

    def units(self, tokens: list[int]) -> list[tuple[str, tuple[int, ...]]]:
        """`tokens` split into (text, tokens) units, in order, text decoded once: each special or
        timestamp token alone (text ""), ordinary tokens in the shortest runs that decode to
        whole characters (a character may span tokens). Joined, the texts are `decode(tokens)`."""
        out: list[tuple[str, tuple[int, ...]]] = []
        run: list[int] = []
        data = b""
        for t in tokens:
            if t >= self.eot:
                if run:
                    out.append((data.decode("utf-8", errors="replace"), tuple(run)))
                    run, data = [], b""
                out.append(("", (t,)))
                continue
            run.append(t)
            data += self.token_bytes[t]
            try:
                out.append((data.decode("utf-8"), tuple(run)))
            except UnicodeDecodeError:
                continue
            run, data = [], b""
        if run:
            out.append((data.decode("utf-8", errors="replace"), tuple(run)))
        return out

    @cached_property
    def non_speech_tokens(self) -> tuple[int, ...]:
        """Ids of symbol tokens that are not speech, as openai-whisper computes them."""
        found = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in _NON_SPEECH_SYMBOLS + list(_MUSIC_NOTES):
            for ids in (self.encode(symbol), self.encode(" " + symbol)):
                if len(ids) == 1 or symbol in _MUSIC_NOTES:
                    found.add(ids[0])
        return tuple(sorted(found))

    @cached_property
    def numeral_tokens(self) -> tuple[int, ...]:
        """Ids of text tokens holding a digit or one of "%$£" (WhisperX's
        `--suppress_numerals`: numbers come out spelled, as an aligner can time them)."""
        found = []
        for token in range(self.eot):
            if any(c in "0123456789%$£" for c in self.decode([token])):
                found.append(token)
        return tuple(found)

    def suppress_tokens(self, base: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """Tokens never sampled: `base` (a checkpoint's list, else non-speech symbols) and the
        prompt-only special tokens."""
        tokens = set(self.non_speech_tokens if base is None else base)
        tokens |= {self.transcribe, self.translate, self.sot, self.sot_prev, self.sot_lm}
        tokens.add(self.no_speech)
        return tuple(sorted(tokens))
