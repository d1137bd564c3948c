"""Errors the CLI reports as one line (no traceback)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class MlxwxError(Exception):
    """Base for user-facing failures: the message is one line that says what to do."""


class ModelError(MlxwxError, RuntimeError):
    """A model could not be found, fetched or read."""


class LoadOnce:
    """Values loaded once per key (thread-safe); a load's MlxwxError is remembered and raised
    again, as a fresh copy each time: re-raising one instance would chain every raise into its
    traceback and keep each frame it passed through alive, with their locals (every input's
    audio in a long run)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded: dict[object, object] = {}  # what was loaded, or the MlxwxError raised

    def get(self, key: object, load: Callable[[], T]) -> T:
        """`load()`'s value for `key`, loaded on first use; raises the error of a failed load."""
        with self.lock:
            if key not in self.loaded:
                try:
                    self.loaded[key] = load()
                except MlxwxError as err:
                    self.loaded[key] = err.with_traceback(None)
            found = self.loaded[key]
        if isinstance(found, MlxwxError):
            raise copy.copy(found)
        return found  # type: ignore[return-value]
