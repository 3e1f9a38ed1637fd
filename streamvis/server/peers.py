"""WebRTC viewers: one peer connection each, fed from their stream (newest wins).

The pipeline runs once per stream; each viewer gets the annotated video track and, on a data channel the
viewer opens, one JSON message per frame (serialised once per frame, shared by all viewers). With H.264 the
video is encoded once per stream (`streamvis.server.encoder`); with VP8 aiortc encodes per viewer
(`ResultTrack`).
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


def _instrument_encoders() -> None:
    """Measure each frame from decode to encoded packets (what `server_latency` reports).

    aiortc encodes inside its RTP sender, out of our reach, so its H.264 and VP8 encoders are wrapped once:
    the frame carries (stream stats, decode time) in `opaque`, and the time is recorded when `encode` returns.
    """
    from aiortc.codecs.h264 import H264Encoder
    from aiortc.codecs.vpx import Vp8Encoder

    for encoder_cls in (H264Encoder, Vp8Encoder):
        original = encoder_cls.encode
        if getattr(original, "_streamvis", False):
            continue

        def encode(self: Any, frame: av.VideoFrame, force_keyframe: bool = False,
                   _original: Any = original) -> tuple[list[bytes], int]:
            out = _original(self, frame, force_keyframe)
            tag = getattr(frame, "opaque", None)
            if isinstance(tag, tuple) and len(tag) == 2:
                stats, decoded_at = tag
                stats.stage("server_latency", (time.monotonic() - decoded_at) * 1e3)
            return out

        encode._streamvis = True  # type: ignore[attr-defined]
        encoder_cls.encode = encode  # type: ignore[method-assign,assignment]


_instrument_encoders()


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
        self.stream.stats.stage("to_encoder", (time.monotonic() - decoded_at) * 1e3)
        frame.opaque = (self.stream.stats, decoded_at)
        self.frames_sent += 1
        return frame


class Viewer:
    """One peer: its connection, its track, its data channel (once the peer opens one)."""

    def __init__(self, stream: LiveStream, rtc_config: RTCConfiguration, track: Any = None) -> None:
        self.id = uuid.uuid4().hex
        self.stream = stream
        self.pc = RTCPeerConnection(rtc_config)
        self.track = track if track is not None else ResultTrack(stream)
        self.channel: Any = None
        self.audio: Any = None  # a NarrationAudioTrack when the stream narrates and the viewer takes audio
        self.closed = asyncio.Event()

        @self.pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            self.channel = channel
            self.send({"type": "hello", "stream": stream.stream_id, "status": stream.status})

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            if self.pc.connectionState in ("failed", "closed"):
                await self.close()

    def speak(self, samples: Any) -> None:
        """Narration as audio (48 kHz int16 mono), for viewers that took the audio track."""
        if self.audio is not None:
            self.audio.play(samples)

    def send(self, message: dict[str, Any] | str) -> None:
        channel = self.channel
        if channel is None or channel.readyState != "open" or channel.bufferedAmount > MAX_CHANNEL_BUFFER:
            return
        try:
            channel.send(message if isinstance(message, str) else json.dumps(message))
        except Exception:  # a peer that vanished mid-send: its own close handler cleans up
            log.debug("viewer %s: send failed", self.id, exc_info=True)

    async def answer(self, offer_sdp: str, offer_type: str, codec: str,
                     narration_audio: bool = False) -> RTCSessionDescription:
        transceiver = self.pc.addTransceiver(self.track, direction="sendonly")
        if narration_audio and "m=audio" in offer_sdp:
            from streamvis.server.audio import NarrationAudioTrack

            self.audio = NarrationAudioTrack()
            self.pc.addTransceiver(self.audio, direction="sendonly")
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
        self.track.stop()
        if self.audio is not None:
            self.audio.stop()
        await self.pc.close()
