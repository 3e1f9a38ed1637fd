"""Logging set-up for the CLI: `level: message` lines on stderr (rich on a terminal)."""

from __future__ import annotations

import logging
import os
import sys


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
    if not debug:
        logging.getLogger("libav").setLevel(logging.CRITICAL)  # FFmpeg's own chatter; our errors say enough
