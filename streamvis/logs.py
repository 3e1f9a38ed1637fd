"""Logging set-up for the CLI: `level: message` lines on stderr; library warnings logged once per kind."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any, TextIO

_warned: set[tuple[type[Warning], str, int]] = set()


def _warn_once(message: Warning | str, category: type[Warning], filename: str, lineno: int,
               file: TextIO | None = None, line: str | None = None) -> None:
    """`warnings.showwarning` for the CLI: a library's warning is logged once per kind (category and place),
    as one line, whatever numbers its text carries; the rest of that kind are not shown."""
    key = (category, filename, lineno)
    if key in _warned:
        return
    _warned.add(key)
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    where = os.path.basename(os.path.dirname(filename)) or os.path.basename(filename)
    logging.getLogger("streamvis.warnings").warning("%s [%s from %s; shown once]", text, category.__name__, where)


class _Plain(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(debug: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Plain())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("streamvis").setLevel(level)
    if quiet or not sys.stderr.isatty():
        # transformers/huggingface_hub bars ("Loading weights") only on a terminal, as with our own progress
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    show: Any = _warn_once
    warnings.showwarning = show
    for name in ("huggingface_hub", "transformers"):  # their own handlers would print each line twice
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
        library.setLevel(logging.DEBUG if debug else logging.ERROR)  # retries and notes: our errors say enough
    if not debug:
        logging.getLogger("libav").setLevel(logging.CRITICAL)  # FFmpeg's own chatter; our errors say enough
