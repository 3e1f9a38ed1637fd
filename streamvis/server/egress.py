"""Egress: push a stream's annotated video (and its narration audio) to a media server that fans it out, when
one machine's uplink cannot feed every viewer: any WHIP endpoint (another streamvis, MediaMTX, LiveKit, a CDN's
ingest) or a Janus VideoRoom over Janus's HTTP API (which also relays the per-frame detections).

An egress is one more consumer of the stream's shared H.264 output (encoded once, whoever watches). It keeps its
session while the peer connection lives, reconnects with backoff when it fails, and hangs up (WHIP `DELETE`,
Janus `destroy`) when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol
from urllib.parse import urljoin

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from streamvis.live.runner import LiveStream
from streamvis.server.audio import NarrationAudioTrack
from streamvis.server.janus import SCHEMES, JanusError, JanusRoom, JanusSession, ensure_room
from streamvis.server.peers import send_on_channel
from streamvis.server.video_out import VideoOutput

log = logging.getLogger(__name__)


class EgressHost(Protocol):
    """What an egress needs of the server's hub: its streams, ICE settings and the streams' video outputs."""

    streams: dict[str, LiveStream]
    rtc_config: RTCConfiguration

    def output_for(self, stream: LiveStream, codec: str) -> VideoOutput: ...

RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 30.0


class Egress:
    """One upstream of a stream to a media server that fans it out: the stream's shared H.264 video, its
    narration audio when the stream speaks, reconnecting with backoff while the server runs. Subclasses make the
    session (`_session`); `send` and `speak` reach the peer while one is up."""

    protocol = "?"

    def __init__(self, hub: EgressHost, stream_id: str, url: str, token: str | None = None) -> None:
        self.hub, self.stream_id, self.url, self.token = hub, stream_id, url, token
        self.sessions = 0  # sessions established, reconnects included
        self.audio: NarrationAudioTrack | None = None  # while a session is up and the stream speaks
        self.channel: Any = None  # a data channel for the per-frame JSON, where the protocol carries one
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def send(self, message: dict[str, Any] | str) -> None:
        send_on_channel(self.channel, message, f"{self.stream_id} egress")

    def speak(self, samples: Any) -> None:
        if self.audio is not None:
            self.audio.play(samples)

    async def _run(self) -> None:
        delay = RETRY_INITIAL_S
        while not self._closing.is_set():
            try:
                await self._session()
                delay = RETRY_INITIAL_S
            except (aiohttp.ClientError, OSError, ValueError, TimeoutError, JanusError) as exc:
                log.warning("%s: %s egress to %s failed (%s); retrying in %.0f s", self.stream_id, self.protocol,
                            self.url, exc or type(exc).__name__, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _peer(self, stream: LiveStream) -> tuple[RTCPeerConnection, asyncio.Event, list[MediaStreamTrack]]:
        """A sending peer connection: H.264 video from the shared output, narration audio when the stream speaks;
        the event is set when the connection fails or closes."""
        pc = RTCPeerConnection(self.hub.rtc_config)
        ended = asyncio.Event()

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                ended.set()

        video = self.hub.output_for(stream, "h264").new_track()
        transceiver = pc.addTransceiver(video, direction="sendonly")
        transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                         if c.mimeType.lower() == "video/h264"])
        tracks: list[MediaStreamTrack] = [video]
        narrator = stream.pipeline.config.narrator
        if narrator.enabled and narrator.speech:
            self.audio = NarrationAudioTrack()
            pc.addTransceiver(self.audio, direction="sendonly")
            tracks.append(self.audio)
        return pc, ended, tracks

    async def _until_closing_or(self, *ended: asyncio.Event) -> None:
        """Wait until the server stops or one of `ended` is set."""
        waiters = [asyncio.ensure_future(event.wait()) for event in (self._closing, *ended)]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def _end_peer(self, pc: RTCPeerConnection, tracks: list[MediaStreamTrack]) -> None:
        self.audio = self.channel = None
        for track in tracks:
            track.stop()
        await pc.close()

    async def _session(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        self._closing.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 10)


class WhipEgress(Egress):
    """Publishes stream `stream_id` of `hub` to the WHIP endpoint `url` (bearer `token` if given)."""

    protocol = "WHIP"

    def __init__(self, hub: EgressHost, stream_id: str, url: str, token: str | None = None) -> None:
        super().__init__(hub, stream_id, url, token)
        self.location: str | None = None

    async def _session(self) -> None:
        stream = self.hub.streams.get(self.stream_id)
        if stream is None:
            raise ValueError(f"no stream '{self.stream_id}' here")
        pc, ended, tracks = self._peer(stream)
        headers = {"Content-Type": "application/sdp", **({"Authorization": f"Bearer {self.token}"}
                                                          if self.token else {})}
        try:
            await pc.setLocalDescription(await pc.createOffer())
            async with aiohttp.ClientSession() as http:
                async with http.post(self.url, data=pc.localDescription.sdp, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=15)) as response:
                    if response.status != 201:
                        raise ValueError(f"HTTP {response.status}: {(await response.text())[:200]}")
                    answer = await response.text()
                    self.location = urljoin(self.url, response.headers.get("Location", ""))
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
                self.sessions += 1
                log.info("%s: publishing to %s (session %s)", self.stream_id, self.url, self.location)
                await self._until_closing_or(ended)
                await self._delete(http, headers)
            if not self._closing.is_set():
                raise ValueError("the connection to the WHIP server failed")
        finally:
            await self._end_peer(pc, tracks)

    async def _delete(self, http: Any, headers: dict[str, str]) -> None:
        if not self.location:
            return
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with http.delete(self.location, headers={k: v for k, v in headers.items() if k != "Content-Type"},
                                   timeout=aiohttp.ClientTimeout(total=5)):
                pass
        self.location = None


class JanusEgress(Egress):
    """Publishes stream `stream_id` into a Janus VideoRoom (`janus+http://host:8088/janus?room=N`), creating the
    room if needed (H.264, Opus, data): video, narration audio and a data channel with the per-frame JSON, which
    Janus relays to every subscriber. `token` is Janus's API token (token auth), if it asks for one."""

    protocol = "Janus"

    def __init__(self, hub: EgressHost, stream_id: str, url: str, token: str | None = None) -> None:
        super().__init__(hub, stream_id, url, token)
        self.room = JanusRoom.parse(url, stream_id)

    async def _session(self) -> None:
        stream = self.hub.streams.get(self.stream_id)
        if stream is None:
            raise ValueError(f"no stream '{self.stream_id}' here")
        pc, ended, tracks = self._peer(stream)
        self.channel = pc.createDataChannel("streamvis", ordered=True)
        try:
            async with aiohttp.ClientSession() as http:
                janus = JanusSession(http, self.room.api_url, self.token)
                try:
                    await janus.open()
                    if await ensure_room(janus, self.room, f"streamvis {self.stream_id}"):
                        log.info("%s: created Janus room %d", self.stream_id, self.room.room)
                    await pc.setLocalDescription(await pc.createOffer())
                    join: dict[str, Any] = {"request": "joinandconfigure", "room": self.room.room,
                                            "ptype": "publisher", "display": self.stream_id}
                    if self.room.pin:
                        join["pin"] = self.room.pin
                    reply = await janus.request(join, {"type": "offer", "sdp": pc.localDescription.sdp})
                    if "jsep" not in reply:
                        raise JanusError("Janus sent no answer to the publisher's offer")
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["jsep"]["sdp"], type="answer"))
                    self.sessions += 1
                    log.info("%s: publishing into Janus room %d at %s", self.stream_id, self.room.room,
                             self.room.api_url)
                    await self._until_closing_or(ended, janus.ended)
                finally:
                    await janus.close()
            if not self._closing.is_set():
                raise JanusError("the connection to Janus ended")
        finally:
            await self._end_peer(pc, tracks)


def make_egress(hub: EgressHost, stream_id: str, url: str, token: str | None) -> Egress:
    """The egress for a `--publish` target: Janus VideoRoom for `janus+http(s)://`, WHIP otherwise."""
    if url.startswith(SCHEMES):
        return JanusEgress(hub, stream_id, url, token)
    return WhipEgress(hub, stream_id, url, token)


def parse_publish(values: list[str], stream_ids: list[str]) -> dict[str, str]:
    """`--publish STREAM=URL` (or a bare URL when there is one stream) -> {stream id: target URL}; a `ValueError`
    names a stream that does not exist, a bare URL that is ambiguous, or a target that is neither WHIP nor Janus."""
    targets: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or "://" in name:
            if len(stream_ids) != 1:
                raise ValueError(f"--publish {value}: name the stream (STREAM=URL); streams: {', '.join(stream_ids)}")
            name, url = stream_ids[0], value
        if name not in stream_ids:
            raise ValueError(f"--publish {value}: no stream '{name}' (streams: {', '.join(stream_ids) or 'none'})")
        if url.startswith(SCHEMES):
            JanusRoom.parse(url, name)  # a bad room number is a setup error, not a retry loop
        elif not url.startswith(("http://", "https://")):
            raise ValueError(f"--publish {value}: the target must be a WHIP endpoint (http(s)://...) or a Janus "
                             "VideoRoom (janus+http(s)://host:8088/janus?room=N)")
        targets[name] = url
    return targets
