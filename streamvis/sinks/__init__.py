"""Outputs: the annotated MP4 (with the input's audio) and the per-frame JSONL events file."""

from __future__ import annotations

from streamvis.sinks.events import EventsWriter
from streamvis.sinks.video import Mp4Writer

__all__ = ["EventsWriter", "Mp4Writer"]
