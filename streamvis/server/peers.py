"""WebRTC viewers: one peer connection each, with the video track its stream's output made for it
(`streamvis.server.video_out`), the narration audio track when asked for, and a data channel the viewer opens
for one JSON message per frame (serialised once per frame, shared by all viewers)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender

from streamvis.live.runner import LiveStream
from streamvis.server.dtls import answer_as_dtls_server

log = logging.getLogger(__name__)

MAX_CHANNEL_BUFFER = 1 << 20  # bytes queued on a data channel before messages are skipped for that viewer


def send_on_channel(channel: Any, message: dict[str, Any] | str, peer: str) -> None:
    """Send a message (JSON text) on a data channel that is open and not `MAX_CHANNEL_BUFFER` behind; a peer that
    cannot keep up misses messages rather than holding them in memory."""
    if channel is None or channel.readyState != "open" or channel.bufferedAmount > MAX_CHANNEL_BUFFER:
        return
    try:
        channel.send(message if isinstance(message, str) else json.dumps(message))
    except Exception:  # a peer that vanished mid-send: its own close handler cleans up
        log.debug("%s: send failed", peer, exc_info=True)


class Viewer:
    """One peer: its connection, its track, its data channel (once the peer opens one).

    The channel carries, to the viewer: `hello`, one `frame` message per frame, `clock` (the RTP origin of its
    video, so it can pair frames on screen with their messages), `pong`, `prompt_result`, `narration`, `status`;
    from the viewer: `ping` (for its clock offset) and `prompt` (handled by `on_request`)."""

    def __init__(self, stream: LiveStream, rtc_config: RTCConfiguration, track: MediaStreamTrack,
                 can_prompt: bool = True, layers: str = "burned") -> None:
        self.id = uuid.uuid4().hex
        self.stream = stream
        self.pc = RTCPeerConnection(rtc_config)
        self.track = track
        self.can_prompt = can_prompt
        self.layers = layers  # burned: annotated video; client: clean video, the viewer draws the layers
        self.channel: Any = None
        self.audio: Any = None  # a NarrationAudioTrack when the stream narrates and the viewer takes audio
        self.closed = asyncio.Event()
        self.on_request: Any = None  # (viewer, message dict) -> None, for requests other than pings
        self.rtp_origin: int | None = None

        @self.pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            self.channel = channel
            self.send({"type": "hello", "stream": stream.stream_id, "status": stream.status,
                       "layers": self.layers, "can_prompt": self.can_prompt, "rtp_origin": self.rtp_origin})
            channel.on("message", self._received)

    def _received(self, raw: Any) -> None:
        """A message from the viewer: answered here when it is a ping, else handed to `on_request`."""
        try:
            message = json.loads(raw) if isinstance(raw, str) else None
        except json.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            self.send({"type": "error", "error": "expected a JSON object with a \"type\""})
            return
        if message.get("type") == "ping":
            self.send({"type": "pong", "t": message.get("t"), "server_ms": time.monotonic() * 1e3})
        elif self.on_request is not None:
            self.on_request(self, message)

    def _origin_known(self, origin: int) -> None:
        self.rtp_origin = origin
        self.send({"type": "clock", "rtp_origin": origin})

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            if self.pc.connectionState in ("failed", "closed"):
                await self.close()

    def speak(self, samples: Any) -> None:
        """Narration as audio (48 kHz int16 mono), for viewers that took the audio track."""
        if self.audio is not None:
            self.audio.play(samples)

    def send(self, message: dict[str, Any] | str) -> None:
        send_on_channel(self.channel, message, f"viewer {self.id}")

    async def answer(self, offer_sdp: str, offer_type: str, codec: str,
                     narration_audio: bool = False) -> RTCSessionDescription:
        transceiver = self.pc.addTransceiver(self.track, direction="sendonly")
        if hasattr(self.track, "on_rtp_origin"):  # our video tracks learn their RTP origin from their sender
            self.track.sender = transceiver.sender  # type: ignore[attr-defined]
            self.track.on_rtp_origin = self._origin_known
        if narration_audio and "m=audio" in offer_sdp:
            from streamvis.server.audio import NarrationAudioTrack

            self.audio = NarrationAudioTrack()
            self.pc.addTransceiver(self.audio, direction="sendonly")
        preferred = [c for c in RTCRtpSender.getCapabilities("video").codecs
                     if c.mimeType.lower() == f"video/{codec}"]
        if preferred:
            transceiver.setCodecPreferences(preferred)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type=offer_type))
        answer_as_dtls_server(self.pc, offer_sdp)
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
