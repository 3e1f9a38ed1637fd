"""Where results go: one protocol (`Sink`: `write(result)` per frame, in order, then `close()`) for every
output, offline and live. Files: the annotated MP4 (`VideoWriter`), the JSONL events (`EventsWriter`), WebVTT
captions (`CaptionsWriter`), the audio-description track (`AudioDescriptionTrack`), recordings of live streams
(`record`). Live: the server's fan-out to viewers (`streamvis.server.hub.ViewerFanout`)."""

from __future__ import annotations

from typing import Protocol

from streamvis.frame import Result
from streamvis.sinks.captions import CaptionsWriter
from streamvis.sinks.events import EventsWriter
from streamvis.sinks.narration_audio import AudioDescriptionTrack
from streamvis.sinks.video import VideoWriter

RECENT_SEGMENTS = 100  # the segment paths a recorder lists (`segments`): the newest; it runs for months


class Sink(Protocol):
    def write(self, result: Result) -> None:
        """One frame's result; called in frame order from one thread at a time."""

    def close(self) -> None:
        """No more results: finish the output (it stays usable however the run ended)."""


class Sinks:
    """Several sinks as one: written and closed in the order given."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks

    def write(self, result: Result) -> None:
        for sink in self.sinks:
            sink.write(result)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


__all__ = ["AudioDescriptionTrack", "CaptionsWriter", "EventsWriter", "Sink", "Sinks", "VideoWriter"]
