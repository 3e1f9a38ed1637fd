"""WHIP ingest: a browser camera, OBS, ffmpeg or aiortc publishes a WebRTC video track that becomes a live source.

The publisher's track is received by aiortc (decoded in aiortc's own thread); its frames go into a small
newest-wins queue, and are converted to BGR in the stream's reader thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from streamvis.frame import Frame
from streamvis.server.dtls import answer_as_dtls_server
from streamvis.slot import NewestSlot
from streamvis.sources.base import Source
from streamvis.sources.pixels import to_bgr
from streamvis.sources.timestamps import FrameClock

log = logging.getLogger(__name__)


class TrackSource(Source):
    """A live source fed with `av.VideoFrame`s by `push` (from the event loop); the newest frame wins (drops are
    counted as `whip` drops by the stream that reads it)."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"whip:{stream_id}", stream_id, live=True)
        self.slot: NewestSlot[Any] = NewestSlot("whip")

    def push(self, frame: Any) -> None:
        self.slot.put(frame)

    def end(self) -> None:
        self.slot.close()

    def close(self) -> None:
        super().close()
        self.slot.close()

    def frames(self) -> Iterator[Frame]:
        index, first_pts = 0, None
        clock = FrameClock(self.source_id, None)
        while not self.closed:
            item = self.slot.take(timeout=0.5)
            if item is None:
                if self.slot.closed:
                    return
                continue
            start = time.perf_counter()
            image = to_bgr(item)
            pts = float(item.pts * item.time_base) if item.pts is not None and item.time_base else time.monotonic()
            if first_pts is None:
                first_pts = pts
                clock.start([(0.0, None)])
            self.report.frames += 1
            yield Frame(image, index, clock.stamp(pts - first_pts, None), self.source_id,
                        (time.perf_counter() - start) * 1e3)
            index += 1


class Publisher:
    """One WHIP session: the peer connection that receives the publisher's video into a `TrackSource`."""

    def __init__(self, stream_id: str, rtc_config: RTCConfiguration) -> None:
        self.id = uuid.uuid4().hex
        self.stream_id = stream_id
        self.source = TrackSource(stream_id)
        self.pc = RTCPeerConnection(rtc_config)
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = asyncio.Event()
        self.answer_sdp = ""

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "video":
                self._tasks.append(asyncio.ensure_future(self._pump(track)))
            else:  # audio (a camera's microphone, another server's narration): read and let go, never queued up
                self._tasks.append(asyncio.ensure_future(self._drain(track)))

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            if self.pc.connectionState in ("failed", "closed"):
                await self.close()

    async def _pump(self, track: Any) -> None:
        try:
            while True:
                self.source.push(await track.recv())
        except MediaStreamError:
            pass
        finally:
            self.source.end()

    @staticmethod
    async def _drain(track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for transceiver in self.pc.getTransceivers():
            transceiver.direction = "recvonly"
        answer_as_dtls_server(self.pc, offer_sdp)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.source.end()
        await self.pc.close()
