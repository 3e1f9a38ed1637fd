"""Outputs: the annotated MP4 (with the input's audio) and the per-frame JSONL events file."""

from __future__ import annotations

from typing import Protocol

from streamvis.frame import Result
from streamvis.sinks.captions import CaptionsWriter
from streamvis.sinks.events import EventsWriter
from streamvis.sinks.video import Mp4Writer


class ResultSink(Protocol):
    def write(self, result: Result) -> None: ...

    def close(self) -> None: ...


class Sinks:
    """Several result sinks written in order (the offline writer thread calls `write` per frame)."""

    def __init__(self, sinks: list[ResultSink]) -> None:
        self.sinks = sinks

    def write(self, result: Result) -> None:
        for sink in self.sinks:
            sink.write(result)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


__all__ = ["CaptionsWriter", "EventsWriter", "Mp4Writer", "ResultSink", "Sinks"]
