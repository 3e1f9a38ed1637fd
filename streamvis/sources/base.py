"""The `Source` interface every source implements, and what it reports when it ends."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from streamvis.frame import Frame
from streamvis.slot import NewestSlot


@dataclass(slots=True)
class SourceReport:
    """What happened while reading a source; filled in as it runs."""

    frames: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    expected_frames: int | None = None
    incomplete: str | None = None  # why the source ended before its end, when it did


class Source(ABC):
    """An iterable of `Frame`s. `close()` (from any thread) makes iteration stop soon."""

    def __init__(self, uri: str, source_id: str, live: bool) -> None:
        self.uri = uri
        self.source_id = source_id
        self.live = live
        self.report = SourceReport()
        self._stop = threading.Event()

    #: nominal frame rate, when known (used when frames carry no timestamps and for the encoder)
    fps: float | None = None
    #: a file the audio track can be copied from, when the source has one
    audio_path: str | None = None
    #: the container's time base, when frame pts come from one (lets outputs keep exact timing)
    time_base: Fraction | None = None
    #: where pushed frames wait to be decoded (a WHIP publisher's), when the source has such a slot
    slot: NewestSlot[Any] | None = None

    #: frames a finite source is thought to hold when the container does not count them (from its duration)
    estimated_frames: int | None = None

    @property
    def expected_frames(self) -> int | None:
        """The frames to expect, for progress: the container's count, else the estimate from the duration."""
        return self.report.expected_frames or self.estimated_frames

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames until the source ends or `close()` is called."""

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def close(self) -> None:
        self._stop.set()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()
