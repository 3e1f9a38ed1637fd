"""A Python viewer for `streamvis serve`: connects with aiortc over WHEP (or /offer), receives the annotated video,
and prints (or collects) the data channel's per-frame detections.

    python clients/python/streamvis_client.py http://127.0.0.1:8080 --stream people --frames 100
    python clients/python/streamvis_client.py https://host:8443 --token SECRET --save frames/ --every 30
    python clients/python/streamvis_client.py http://127.0.0.1:8080 --via offer --json
    python clients/python/streamvis_client.py 'janus+http://sfu:8088/janus?room=1234' --stream people
    python clients/python/streamvis_client.py http://127.0.0.1:8080 --prompt '{"type": "text", "text": "dog"}'

Needs aiortc, aiohttp and streamvis itself: its aiortc compatibility module (`streamvis.server.aiortc_compat`: RSA
peers, and the loopback ICE rule the server follows, so that a client of a server on 127.0.0.1 works where loopback
is the only interface) and, through Janus, its Janus API client. `watch()` is the same code as a library call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from streamvis.server import aiortc_compat


def _prepare_aiortc(url: str | None) -> None:
    """aiortc as the server runs it; ICE candidates on 127.0.0.1 alone for a server on loopback (`url`), else the
    machine's addresses (127.0.0.1 where it has no other). An SFU (None) offers its own addresses: the latter."""
    aiortc_compat.apply()
    aiortc_compat.use_loopback_ice(only=url is not None and aiortc_compat.is_loopback(urlsplit(url).hostname or ""))


@dataclass
class WatchReport:
    frames: int = 0
    messages: int = 0
    seconds: float = 0.0
    first_frame_s: float | None = None
    frame_messages: list[dict[str, Any]] = field(default_factory=list)
    narration_messages: list[dict[str, Any]] = field(default_factory=list)
    audio_samples: int = 0
    audio_peak_rms: float = 0.0  # loudest 20 ms of the narration audio track, 0..1 of full scale
    status_messages: list[dict[str, Any]] = field(default_factory=list)
    resolution_wh: tuple[int, int] | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


async def _negotiate(session: aiohttp.ClientSession, base: str, stream: str, via: str, sdp: str,
                     headers: dict[str, str]) -> tuple[str, str | None]:
    if via == "whep":
        async with session.post(urljoin(base, f"/whep/{stream}"), data=sdp,
                                headers={**headers, "Content-Type": "application/sdp"}) as resp:
            text = await resp.text()
            if resp.status != 201:
                raise RuntimeError(f"WHEP {resp.status}: {text.strip()}")
            return text, resp.headers.get("Location")
    async with session.post(urljoin(base, "/offer"), json={"sdp": sdp, "type": "offer", "stream": stream},
                            headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"/offer {resp.status}: {(await resp.text()).strip()}")
        return (await resp.json())["sdp"], None


class _Receiver:
    """What a viewer does with a peer connection, whoever offered: counts video frames, measures the narration
    audio, collects the data channel's messages; `done` is set after `frames` frames."""

    def __init__(self, frames: int, on_frame: Callable[[Any, int], None] | None,
                 on_message: Callable[[dict[str, Any]], None] | None, keep_messages: bool) -> None:
        self.report = WatchReport()
        self.frames, self.on_frame, self.on_message, self.keep_messages = frames, on_frame, on_message, keep_messages
        self.done = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self._first_frame_at: float | None = None

    def attach(self, pc: RTCPeerConnection) -> None:
        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "video":
                self.tasks.append(asyncio.ensure_future(self._consume(track)))
            elif track.kind == "audio":
                self.tasks.append(asyncio.ensure_future(self._listen(track)))

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:  # a channel the other side opened (Janus does)
            self.bind(channel)

    def bind(self, channel: Any) -> None:
        @channel.on("message")
        def on_channel_message(raw: str | bytes) -> None:
            message = json.loads(raw)
            report = self.report
            report.messages += 1
            if self.keep_messages:
                kind = message.get("type")
                target = {"frame": report.frame_messages, "narration": report.narration_messages}.get(
                    kind, report.status_messages)
                target.append(message)
            if self.on_message:
                self.on_message(message)

    async def _consume(self, track: Any) -> None:
        report = self.report
        start = time.monotonic()
        while report.frames < self.frames:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            if report.first_frame_s is None:
                report.first_frame_s = time.monotonic() - start
                start = self._first_frame_at = time.monotonic()
            report.frames += 1
            report.resolution_wh = (frame.width, frame.height)
            if self.on_frame:
                self.on_frame(frame, report.frames)
        report.seconds = time.monotonic() - start
        self.done.set()

    async def _listen(self, track: Any) -> None:
        import numpy as np

        while not self.done.is_set():
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            samples = frame.to_ndarray().astype(np.float64) / 32768.0
            self.report.audio_samples += samples.shape[-1]
            self.report.audio_peak_rms = max(self.report.audio_peak_rms, float(np.sqrt(np.mean(samples**2))))

    async def wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), timeout_s)
        if not self.done.is_set() and self._first_frame_at is not None:  # timed out: frames per second so far
            self.report.seconds = time.monotonic() - self._first_frame_at
        for task in self.tasks:
            task.cancel()


async def watch(base_url: str, stream: str, frames: int = 100, timeout_s: float = 60.0, via: str = "whep",
                token: str | None = None, on_frame: Callable[[Any, int], None] | None = None,
                on_message: Callable[[dict[str, Any]], None] | None = None, keep_messages: bool = True,
                insecure: bool = False, audio: bool = False) -> WatchReport:
    """Receive `frames` video frames (or until `timeout_s`), then hang up (DELETE for WHEP).

    With `audio`, also take the narration audio track and measure its level. A `janus+http(s)://` URL watches
    the stream through a Janus VideoRoom instead (`watch_janus`).
    """
    if base_url.startswith(("janus+http://", "janus+https://")):
        return await watch_janus(base_url, stream, frames, timeout_s, token, on_frame, on_message, keep_messages)
    _prepare_aiortc(base_url)
    receiver = _Receiver(frames, on_frame, on_message, keep_messages)
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    receiver.attach(pc)
    receiver.bind(pc.createDataChannel("events"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ssl_arg: Any = ssl.create_default_context() if not insecure else False
    location = None
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_arg)) as session:
        try:
            await pc.setLocalDescription(await pc.createOffer())
            answer, location = await _negotiate(session, base_url, stream, via, pc.localDescription.sdp, headers)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            await receiver.wait(timeout_s)
        finally:
            if location:
                async with session.delete(urljoin(base_url, location), headers=headers):
                    pass
            await pc.close()
    return receiver.report


async def watch_janus(room_url: str, stream: str | None, frames: int = 100, timeout_s: float = 60.0,
                      token: str | None = None, on_frame: Callable[[Any, int], None] | None = None,
                      on_message: Callable[[dict[str, Any]], None] | None = None,
                      keep_messages: bool = True) -> WatchReport:
    """Watch a stream that `streamvis serve --publish STREAM=janus+http://...` pushes into a Janus VideoRoom:
    subscribe to the room's publisher named `stream` (the only one when None), take what Janus offers (video,
    narration audio, the data channel with the per-frame detections), then leave. Needs streamvis installed (its
    Janus API client)."""
    from streamvis.server.janus import JanusRoom, JanusSession

    _prepare_aiortc(None)
    room = JanusRoom.parse(room_url, stream or "")
    receiver = _Receiver(frames, on_frame, on_message, keep_messages)
    pc = RTCPeerConnection()
    receiver.attach(pc)
    async with aiohttp.ClientSession() as http:
        janus = JanusSession(http, room.api_url, token)
        try:
            await janus.open()
            pin = {"pin": room.pin} if room.pin else {}
            listed = await janus.request({"request": "listparticipants", "room": room.room, **pin})
            feeds = [p for p in listed.get("participants", []) if p.get("publisher")
                     and (stream is None or p.get("display") == stream)]
            if not feeds:
                raise RuntimeError(f"Janus room {room.room} has no publisher"
                                   + (f" named '{stream}'" if stream else ""))
            offer = await janus.request({"request": "join", "ptype": "subscriber", "room": room.room,
                                         "streams": [{"feed": feeds[0]["id"]}], **pin})
            if "jsep" not in offer:
                raise RuntimeError("Janus sent no offer to the subscriber")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["jsep"]["sdp"], type="offer"))
            receiver.bind(pc.createDataChannel("JanusDataChannel"))
            await pc.setLocalDescription(await pc.createAnswer())
            await janus.request({"request": "start", "room": room.room},
                                {"type": "answer", "sdp": pc.localDescription.sdp})
            await receiver.wait(timeout_s)
        finally:
            await janus.close()
            await pc.close()
    return receiver.report


async def prompt(base_url: str, stream: str, request: dict[str, Any], token: str | None = None,
                 insecure: bool = False, timeout_s: float = 60.0) -> dict[str, Any]:
    """Prompt a stream's segmenter (`POST /prompt`): a click `{"type": "point", "x", "y", "label",
    "frame_index"}`, a box `{"type": "box", "xyxy": [...]}`, words `{"type": "text", "text": "red car"}` or
    `{"type": "remove", "object_id": N}`. Returns the prompt's result (`ok`, `object_ids`, `frame_index`, or
    `error`); coordinates are pixels of the frame (`resolution_wh` of its frame message)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ssl_arg: Any = ssl.create_default_context() if not insecure else False
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_arg), timeout=timeout) as session, \
            session.post(urljoin(base_url, "/prompt"), json={**request, "stream": stream}, headers=headers) as resp:
        body = await resp.json(content_type=None)
        return body if isinstance(body, dict) else {"ok": False, "error": f"unexpected reply {body!r}"}


def main() -> None:
    parser = argparse.ArgumentParser(description="Watch a streamvis stream over WebRTC.")
    parser.add_argument("url", help="server base URL, e.g. http://127.0.0.1:8080, or a Janus room the server "
                        "publishes into: 'janus+http://sfu:8088/janus?room=1234'")
    parser.add_argument("--stream", default=None, help="stream id (default: the first in /streams)")
    parser.add_argument("--frames", type=int, default=100, help="stop after this many frames")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--via", choices=["whep", "offer"], default="whep")
    parser.add_argument("--token", default=None)
    parser.add_argument("--insecure", action="store_true", help="accept a self-signed certificate")
    parser.add_argument("--save", type=Path, default=None, help="save frames as PNG into this folder")
    parser.add_argument("--every", type=int, default=30, help="with --save: every Nth frame")
    parser.add_argument("--json", action="store_true", help="print data-channel messages as JSON lines")
    parser.add_argument("--prompt", default=None, metavar="JSON",
                        help='prompt instead of watching, e.g. \'{"type": "box", "xyxy": [10, 20, 200, 300]}\' '
                             "or '{\"type\": \"text\", \"text\": \"red car\"}'")
    args = parser.parse_args()

    async def run() -> WatchReport:
        stream = args.stream
        janus = args.url.startswith(("janus+http://", "janus+https://"))
        if stream is None and not janus:
            headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
            connector = aiohttp.TCPConnector(ssl=False if args.insecure else ssl.create_default_context())
            async with aiohttp.ClientSession(connector=connector) as session, \
                    session.get(urljoin(args.url, "/streams"), headers=headers) as resp:
                resp.raise_for_status()
                stream = (await resp.json())["streams"][0]["id"]
        if args.prompt is not None:
            assert stream is not None
            result = await prompt(args.url, stream, json.loads(args.prompt), args.token, args.insecure, args.timeout)
            print(json.dumps(result), flush=True)
            if not result.get("ok"):
                raise RuntimeError(str(result.get("error")))
            return WatchReport()
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)

        def on_frame(frame: Any, n: int) -> None:
            if args.save and n % args.every == 0:
                frame.to_image().save(args.save / f"{stream or 'janus'}-{n:06d}.png")

        def on_message(message: dict[str, Any]) -> None:
            if args.json:
                print(json.dumps(message), flush=True)
            elif message.get("type") == "frame":
                names = [d.get("class_name") for d in message.get("detections", [])]
                print(f"frame {message['frame_index']:6d} pts {message['pts']:8.3f}s  {', '.join(names)}",
                      flush=True)
            else:
                print(f"{message.get('type')}: {message}", flush=True)

        if janus:
            return await watch_janus(args.url, stream, args.frames, args.timeout, args.token, on_frame, on_message,
                                     keep_messages=False)
        assert stream is not None
        return await watch(args.url, stream, args.frames, args.timeout, args.via, args.token, on_frame,
                           on_message, keep_messages=False, insecure=args.insecure)

    try:
        report = asyncio.run(run())
    except (aiohttp.ClientError, RuntimeError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"{report.frames} frames in {report.seconds:.1f} s ({report.fps:.1f} fps), {report.messages} messages",
          file=sys.stderr)


if __name__ == "__main__":
    main()
