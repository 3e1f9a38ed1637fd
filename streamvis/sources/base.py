"""The `Source` interface every source implements, and what it reports when it ends."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

from streamvis.frame import Frame
from streamvis.slot import NewestSlot


@dataclass(slots=True)
class SourceReport:
    """What happened while reading a source; filled in as it runs."""

    frames: int = 0
    decode_errors: int = 0
    skipped_frames: int = 0  # frames left undecoded while only the frames others refer to were decoded
    past_rate_frames: int = 0  # frames decoded (others refer to them) but not passed on: past `max_fps`
    reconnects: int = 0
    expected_frames: int | None = None
    incomplete: str | None = None  # why the source ended before its end, when it did


class PacketTap(Protocol):
    """Takes a live source's packets as they are demuxed (video and audio; a video packet as soon as it is decoded): a
    recording that copies the camera's own stream. Called from the source's reading thread; must not block."""

    def connected(self, connection: int, container: Any) -> None:
        """Connection `connection` (0, 1, ...) opened: `container` is its PyAV input (streams, codecs)."""

    def packet(self, connection: int, packet: Any) -> None:
        """One demuxed packet of that connection (video or audio), in demux order, a video packet once it has been
        decoded: the packet is the tap's from then on (it may rewrite its times and stream on another thread)."""

    def disconnected(self, connection: int) -> None:
        """That connection ended; its container is closed after this returns."""

    def uncopyable(self, why: str) -> None:
        """The source gives no packets to copy (a file played as a camera, a WHIP publisher, a test pattern)."""


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
    #: whether `packet_tap` is honoured: the source demuxes a container whose packets can be copied
    copies_packets: bool = False
    #: given the packets as they are demuxed, when set before iterating (and `copies_packets`)
    packet_tap: PacketTap | None = None
    #: whether `references_only` and `max_fps` are honoured: the source decodes a compressed stream, some of whose
    #: frames no other frame refers to (B-frames, mostly), and times its frames by the stream's own timestamps
    skips_frames: bool = False
    #: set from any thread: decode only the frames other frames refer to, leaving the rest out (FFmpeg's
    #: skip_frame=nonref); what nothing needs every frame of saves decoding them
    references_only: bool = False
    #: set from any thread: pass on at most this many frames a second of stream time, on `streamvis.rate` slots;
    #: the frames past it are decoded where others refer to them, but not converted to pixels nor passed on
    max_fps: float | None = None
    #: set from any thread: under `max_fps`, pass on the next frame whatever its slot (the frame just passed
    #: found the detector busy, and its keyframe is still to come); the next one on a slot follows as planned
    pass_next_frame: bool = False

    @property
    def reference_fps(self) -> float | None:
        """Frames a second, lately, that other frames refer to (what `references_only` leaves); None: unknown."""
        return None

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
