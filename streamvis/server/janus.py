"""Janus (a real SFU) over its HTTP API: sessions, plugin handles and the long-poll for events.

streamvis publishes a stream once into a Janus VideoRoom (`streamvis.server.egress.JanusEgress`); Janus forwards
the video, the narration audio and the data channel's per-frame detections to every subscriber
(`clients/python/streamvis_client.py --janus`, janus.js pages). The API is documented at
https://janus.conf.meetecho.com/docs/rest.html; every request carries a transaction id, a plugin request is
answered at once (`success`) or acknowledged (`ack`) and answered later as an event on the long-poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp

log = logging.getLogger(__name__)

SCHEMES = ("janus+http", "janus+https")
REQUEST_TIMEOUT_S = 15.0
POLL_EVENTS = 10  # events fetched per long-poll request (Janus answers a keepalive after 30 s without any)


class JanusError(RuntimeError):
    """A Janus request failed: the API's or the plugin's error code and reason."""


@dataclass(frozen=True)
class JanusRoom:
    """Where a stream goes: the API endpoint and the VideoRoom room (a number), with its optional PIN."""

    api_url: str  # http(s)://host:port/janus
    room: int
    pin: str | None = None

    @classmethod
    def parse(cls, url: str, stream_id: str) -> JanusRoom:
        """`janus+http://host:8088/janus?room=1234&pin=x` -> JanusRoom. Without `room`, the room number is derived
        from the stream id (stable across restarts, so viewers can bookmark it). A `ValueError` names the fault."""
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ValueError(f"{url}: a Janus target starts with janus+http:// or janus+https://")
        if not parts.netloc:
            raise ValueError(f"{url}: no host")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        room_text = query.get("room")
        if room_text is None:
            room = default_room(stream_id)
        elif room_text.isdigit() and 0 < int(room_text) < 2**53:
            room = int(room_text)
        else:
            raise ValueError(f"{url}: room must be a positive number, got '{room_text}'")
        api = urlunsplit((parts.scheme.removeprefix("janus+"), parts.netloc, parts.path or "/janus", "", ""))
        return cls(api, room, query.get("pin"))


def default_room(stream_id: str) -> int:
    """A VideoRoom number for a stream with none given: stable, and clear of Janus's demo rooms (1234, 5678)."""
    return 100_000 + zlib.crc32(stream_id.encode()) % 900_000


def _transaction() -> str:
    return uuid.uuid4().hex[:12]


class JanusSession:
    """One Janus session with one plugin handle. `request` sends a plugin message and returns the plugin's reply
    (with the JSEP, if any) whether Janus answers at once or later on the long-poll; other events (`webrtcup`,
    `hangup`, a subscriber's `updated` ...) go to `events`."""

    def __init__(self, http: aiohttp.ClientSession, api_url: str, token: str | None = None,
                 api_secret: str | None = None) -> None:
        self.http = http
        self.api_url = api_url.rstrip("/")
        self.auth = {k: v for k, v in (("token", token), ("apisecret", api_secret)) if v}
        self.session_id: int | None = None
        self.handle_id: int | None = None
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ended = asyncio.Event()  # the session is gone (destroyed, timed out, Janus unreachable)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": body.get("transaction") or _transaction(), **self.auth}
        async with self.http.post(f"{self.api_url}{path}", json=body,
                                  timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as response:
            if response.status != 200:
                raise JanusError(f"Janus HTTP {response.status} on {body['janus']}: {(await response.text())[:200]}")
            reply: dict[str, Any] = await response.json(content_type=None)
        if reply.get("janus") == "error":
            error = reply.get("error", {})
            raise JanusError(f"Janus error {error.get('code')} on {body['janus']}: {error.get('reason')}")
        return reply

    async def open(self, plugin: str = "janus.plugin.videoroom") -> None:
        """Create the session, start its long-poll, attach `plugin`."""
        self.session_id = (await self._post("", {"janus": "create"}))["data"]["id"]
        self._poller = asyncio.get_running_loop().create_task(self._poll())
        reply = await self._post(f"/{self.session_id}", {"janus": "attach", "plugin": plugin})
        self.handle_id = reply["data"]["id"]

    async def request(self, body: dict[str, Any], jsep: dict[str, str] | None = None) -> dict[str, Any]:
        """Send a plugin message; the plugin's data (plus `jsep` when Janus sent one). A plugin error raises."""
        transaction = _transaction()
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = waiter
        message: dict[str, Any] = {"janus": "message", "transaction": transaction, "body": body}
        if jsep is not None:
            message["jsep"] = jsep
        try:
            reply = await self._post(f"/{self.session_id}/{self.handle_id}", message)
            if reply.get("janus") == "ack":
                reply = await asyncio.wait_for(waiter, REQUEST_TIMEOUT_S)
        finally:
            self._pending.pop(transaction, None)
        data: dict[str, Any] = reply.get("plugindata", {}).get("data", {})
        if "error" in data or "error_code" in data:
            raise JanusError(f"Janus {body.get('request')} failed ({data.get('error_code')}): {data.get('error')}")
        if "jsep" in reply:
            data = {**data, "jsep": reply["jsep"]}
        return data

    async def _poll(self) -> None:
        """The long-poll: answers to acknowledged requests by transaction, everything else to `events`. It also
        keeps the session alive (Janus drops sessions idle for 60 s)."""
        try:
            while True:
                async with self.http.get(f"{self.api_url}/{self.session_id}",
                                         params={"maxev": str(POLL_EVENTS), **self.auth},
                                         timeout=aiohttp.ClientTimeout(total=60)) as response:
                    if response.status != 200:
                        raise JanusError(f"Janus HTTP {response.status} on the event poll")
                    payload = await response.json(content_type=None)
                for event in payload if isinstance(payload, list) else [payload]:
                    self._dispatch(event)
        except (aiohttp.ClientError, OSError, TimeoutError, JanusError) as exc:
            if self.session_id is not None:
                log.warning("Janus session %s ended: %s", self.session_id, exc or type(exc).__name__)
        finally:
            self.ended.set()
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(JanusError("the Janus session ended"))

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("janus")
        if kind == "keepalive":
            return
        if kind == "error" and event.get("error", {}).get("code") == 458:  # no such session (timed out)
            raise JanusError("Janus no longer knows this session")
        waiter = self._pending.get(event.get("transaction", ""))
        if waiter is not None and not waiter.done() and kind == "event":
            waiter.set_result(event)
            return
        self.events.put_nowait(event)

    async def close(self) -> None:
        """Destroy the session (its handles and peer connections go with it); quiet when Janus is gone."""
        session_id, self.session_id = self.session_id, None
        if session_id is not None:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, JanusError):
                await self._post(f"/{session_id}", {"janus": "destroy"})
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller


async def ensure_room(janus: JanusSession, room: JanusRoom, description: str) -> bool:
    """Create `room` as a VideoRoom for H.264 video, Opus audio and data unless it exists; True if created."""
    if (await janus.request({"request": "exists", "room": room.room})).get("exists"):
        return False
    settings: dict[str, Any] = {"request": "create", "room": room.room, "description": description,
                                "publishers": 1, "videocodec": "h264", "audiocodec": "opus", "bitrate": 0,
                                "fir_freq": 2, "notify_joining": False}
    if room.pin:
        settings["pin"] = room.pin
    try:
        await janus.request(settings)
    except JanusError as exc:
        if "already exists" not in str(exc):  # created meanwhile by another publisher: fine
            raise
        return False
    return True
