"""The exception hierarchy: every error a user can cause is a `StreamvisError` with a one-line message."""

from __future__ import annotations


def reason(exc: BaseException) -> str:
    """The short reason an OS or FFmpeg error gives (`strerror`), else its text."""
    return getattr(exc, "strerror", None) or str(exc)


class StreamvisError(Exception):
    """Base class; its message is shown to the user as one line."""


class ConfigError(StreamvisError):
    """A pipeline file or `--set` override is invalid."""


class SourceError(StreamvisError):
    """A source cannot be opened or read."""


class SourceNotFoundError(SourceError):
    """A file, folder or device that does not exist."""


class DecodeError(SourceError):
    """Decoding failed part-way through a source."""


class ModelError(StreamvisError):
    """A model cannot be found, fetched, verified or loaded."""


class OutputError(StreamvisError):
    """An output file cannot be written."""
