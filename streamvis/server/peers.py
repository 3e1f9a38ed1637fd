"""WebRTC viewers: one peer connection each, fed from their stream's latest result (newest wins).

The pipeline runs once per stream; each viewer gets the annotated video track and, on a data channel the
viewer opens, one JSON message per frame (serialised once per frame, shared by all viewers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from fractions import Fraction
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender

from streamvis.frame import Result
from streamvis.live.runner import LiveStream

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000
MAX_CHANNEL_BUFFER = 1 << 20  # bytes queued on a data channel before messages are skipped for that viewer


class ResultTrack(VideoStreamTrack):
    """A video track that yields the newest annotated frame; frames a slow peer missed are skipped."""

    def __init__(self, stream: LiveStream) -> None:
        super().__init__()
        self.stream = stream
        self._latest: asyncio.Queue[Result] = asyncio.Queue(maxsize=1)  # overflow: replace (newest wins)
        self._start = time.monotonic()
        self.frames_sent = 0

    def push(self, result: Result) -> None:
        if self._latest.full():
            self._latest.get_nowait()
        self._latest.put_nowait(result)

    async def recv(self) -> av.VideoFrame:
        result = await self._latest.get()
        assert result.annotated is not None
        frame = av.VideoFrame.from_ndarray(result.annotated, format="bgr24")
        frame.pts = int((time.monotonic() - self._start) * VIDEO_CLOCK)
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        decoded_at = self.stream.decoded_at[result.frame.index % 256]
        self.stream.stats.stage("server_latency", (time.monotonic() - decoded_at) * 1e3)
        self.frames_sent += 1
        return frame


class Viewer:
    """One peer: its connection, its track, its data channel (once the peer opens one)."""

    def __init__(self, stream: LiveStream, rtc_config: RTCConfiguration) -> None:
        self.id = uuid.uuid4().hex
        self.stream = stream
        self.pc = RTCPeerConnection(rtc_config)
        self.track = ResultTrack(stream)
        self.channel: Any = None
        self.closed = asyncio.Event()

        @self.pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            self.channel = channel
            self.send({"type": "hello", "stream": stream.stream_id, "status": stream.status})

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            if self.pc.connectionState in ("failed", "closed"):
                await self.close()

    def send(self, message: dict[str, Any] | str) -> None:
        channel = self.channel
        if channel is None or channel.readyState != "open" or channel.bufferedAmount > MAX_CHANNEL_BUFFER:
            return
        try:
            channel.send(message if isinstance(message, str) else json.dumps(message))
        except Exception:  # a peer that vanished mid-send: its own close handler cleans up
            log.debug("viewer %s: send failed", self.id, exc_info=True)

    async def answer(self, offer_sdp: str, offer_type: str, codec: str) -> RTCSessionDescription:
        transceiver = self.pc.addTransceiver(self.track, direction="sendonly")
        preferred = [c for c in RTCRtpSender.getCapabilities("video").codecs
                     if c.mimeType.lower() == f"video/{codec}"]
        if preferred:
            transceiver.setCodecPreferences(preferred)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type=offer_type))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        await self.pc.close()
