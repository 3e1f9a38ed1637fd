"""Quiet third-party tools: the exporter's and quantizer's own chatter is hidden unless debugging."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_tools() -> Iterator[None]:
    """Silence the exporter's and quantizer's own chatter (torchvision-missing notes, deprecation and
    "consider pre-processing" warnings) unless debugging; their errors still raise."""
    if logging.getLogger("streamvis").isEnabledFor(logging.DEBUG):
        yield
        return
    loggers = [logging.getLogger(name) for name in ("", "torch.onnx", "torch.export", "onnx_ir", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
