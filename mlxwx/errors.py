"""Errors the CLI reports as one line (no traceback)."""


class MlxwxError(Exception):
    """Base for user-facing failures: the message is one line that says what to do."""


class ModelError(MlxwxError, RuntimeError):
    """A model could not be found, fetched or read."""
