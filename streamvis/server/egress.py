"""WHIP egress: push a stream's annotated video to any WHIP endpoint (another streamvis, Janus, MediaMTX, a CDN),
so that a media server fans it out when one machine's uplink cannot feed every viewer.

The egress is one more consumer of the stream's shared H.264 output (encoded once, whoever watches). It posts an
offer (`a=setup:actpass`), keeps the session while the peer connection lives, reconnects with backoff when it
fails, and `DELETE`s the session when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol
from urllib.parse import urljoin

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from streamvis.live.runner import LiveStream
from streamvis.server.video_out import VideoOutput

log = logging.getLogger(__name__)


class EgressHost(Protocol):
    """What an egress needs of the server's hub: its streams, ICE settings and the streams' video outputs."""

    streams: dict[str, LiveStream]
    rtc_config: RTCConfiguration

    def output_for(self, stream: LiveStream, codec: str) -> VideoOutput: ...

RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 30.0


class WhipEgress:
    """Publishes stream `stream_id` of `hub` to the WHIP endpoint `url` (bearer `token` if given)."""

    def __init__(self, hub: EgressHost, stream_id: str, url: str, token: str | None = None) -> None:
        self.hub, self.stream_id, self.url, self.token = hub, stream_id, url, token
        self.location: str | None = None
        self.sessions = 0  # sessions established, reconnects included
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        delay = RETRY_INITIAL_S
        while not self._closing.is_set():
            try:
                await self._session()
                delay = RETRY_INITIAL_S
            except (aiohttp.ClientError, OSError, ValueError, TimeoutError) as exc:
                log.warning("%s: WHIP egress to %s failed (%s); retrying in %.0f s", self.stream_id, self.url,
                            exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _session(self) -> None:
        stream = self.hub.streams.get(self.stream_id)
        if stream is None:
            raise ValueError(f"no stream '{self.stream_id}' here")
        pc = RTCPeerConnection(self.hub.rtc_config)
        ended = asyncio.Event()

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                ended.set()

        track = self.hub.output_for(stream, "h264").new_track()
        transceiver = pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                         if c.mimeType.lower() == "video/h264"])
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
                closing = asyncio.ensure_future(self._closing.wait())
                failed = asyncio.ensure_future(ended.wait())
                await asyncio.wait({closing, failed}, return_when=asyncio.FIRST_COMPLETED)
                for waiter in (closing, failed):
                    waiter.cancel()
                await self._delete(http, headers)
            if not self._closing.is_set():
                raise ValueError("the connection to the WHIP server failed")
        finally:
            track.stop()
            await pc.close()

    async def _delete(self, http: Any, headers: dict[str, str]) -> None:
        if not self.location:
            return
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with http.delete(self.location, headers={k: v for k, v in headers.items() if k != "Content-Type"},
                                   timeout=aiohttp.ClientTimeout(total=5)):
                pass
        self.location = None

    async def close(self) -> None:
        self._closing.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 10)


def parse_publish(values: list[str], stream_ids: list[str]) -> dict[str, str]:
    """`--publish STREAM=URL` (or a bare URL when there is one stream) -> {stream id: WHIP URL}; a `ValueError`
    names a stream that does not exist or a bare URL that is ambiguous."""
    targets: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or "://" in name:
            if len(stream_ids) != 1:
                raise ValueError(f"--publish {value}: name the stream (STREAM=URL); streams: {', '.join(stream_ids)}")
            name, url = stream_ids[0], value
        if name not in stream_ids:
            raise ValueError(f"--publish {value}: no stream '{name}' (streams: {', '.join(stream_ids) or 'none'})")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--publish {value}: the WHIP endpoint must be an http(s) URL")
        targets[name] = url
    return targets
