"""`streamvis serve`: an aiohttp server with one live pipeline per source and any number of WebRTC viewers.

Endpoints: `GET /` (the viewer), `GET /streams`, `POST /offer` (JSON SDP, as in aiortc's examples),
`POST /whep/{stream}` + `DELETE /whep/{stream}/{session}` (WHEP playback), `POST /whip/{stream}` +
`DELETE /whip/{stream}/{session}` (WHIP ingest: a published camera becomes a stream), `GET /metrics` (Prometheus),
`GET /healthz`. With a token set, every request must carry it (`Authorization: Bearer`, or `?token=` for
the page itself) or gets 401 and nothing else. The event loop runs no model code and no codec: sources,
pipelines and detectors run in threads (see `streamvis.live`), encoders in aiortc's own threads.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer

from streamvis.frame import Result, SceneDescription
from streamvis.live.runner import LiveStream
from streamvis.live.stats import prometheus_text
from streamvis.serialize import result_to_json
from streamvis.server.encoder import PacketTrack, SharedEncoder
from streamvis.server.ingest import Publisher
from streamvis.server.peers import ResultTrack, Viewer
from streamvis.sources.base import Source

StreamFactory = Callable[[str, Callable[[], Source]], LiveStream]

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"  # package data: the viewer page
MAX_BODY_BYTES = 64 * 1024  # an SDP offer is a few kB
TOKEN_COOKIE = "streamvis_token"  # set when the page is opened with ?token=, so its scripts load too


@dataclass
class ServerSettings:
    token: str | None = None
    codec: str = "h264"
    ice_servers: list[str] = field(default_factory=list)  # stun:host:port, turn:user:pass@host:port
    web_dir: Path = WEB_DIR


def _ice_server(url: str) -> RTCIceServer:
    """`turn:user:pass@host:port` -> RTCIceServer(urls, username, credential); `stun:host:port` as is."""
    scheme, _, rest = url.partition(":")
    if "@" in rest:
        creds, _, host = rest.rpartition("@")
        user, _, password = creds.partition(":")
        return RTCIceServer(urls=f"{scheme}:{host}", username=user, credential=password)
    return RTCIceServer(urls=url)


class StreamHub:
    """The streams, their viewers, and the fan-out from pipeline threads to the event loop."""

    def __init__(self, streams: dict[str, LiveStream], settings: ServerSettings,
                 make_stream: StreamFactory | None = None) -> None:
        self.streams = streams
        self.settings = settings
        self.make_stream = make_stream
        self.viewers: dict[str, Viewer] = {}
        self.publishers: dict[str, Publisher] = {}
        self.encoders: dict[str, SharedEncoder] = {}  # H.264: one encoder per stream, shared by its viewers
        self.rtc_config = RTCConfiguration([_ice_server(u) for u in settings.ice_servers])
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        for stream in self.streams.values():
            self._attach(stream)

    def _attach(self, stream: LiveStream) -> None:
        stream.subscribe(functools.partial(self._from_thread, stream))
        stream.on_status(functools.partial(self._status_from_thread, stream))
        stream.on_narration(functools.partial(self._narration_from_thread, stream))
        stream.start()

    async def add_publisher(self, name: str, sdp: str) -> Publisher:
        """A WHIP publisher becomes stream `name` (replacing an earlier publisher's stream of that name)."""
        if self.make_stream is None:
            raise web.HTTPNotImplemented(text="this server takes no WHIP publishers")
        old = self.streams.get(name)
        if old is not None and not any(p.stream_id == name for p in self.publishers.values()) \
                and old.status == "live":
            raise web.HTTPConflict(text=json.dumps({"error": f"stream '{name}' is a configured source"}),
                                   content_type="application/json")
        for previous in [p for p in self.publishers.values() if p.stream_id == name]:
            await previous.close()
        publisher = Publisher(name, self.rtc_config)
        try:
            answer = await publisher.answer(sdp)
        except Exception:
            await publisher.close()
            raise
        self.publishers[publisher.id] = publisher
        stream = self.make_stream(name, lambda: publisher.source)
        if old is not None:
            await asyncio.get_running_loop().run_in_executor(None, old.stop)
        self.streams[name] = stream
        self._attach(stream)
        publisher.answer_sdp = answer
        asyncio.get_running_loop().create_task(self._reap_publisher(publisher))
        return publisher

    async def _reap_publisher(self, publisher: Publisher) -> None:
        await publisher.closed.wait()
        self.publishers.pop(publisher.id, None)

    def _narration_from_thread(self, stream: LiveStream, description: SceneDescription) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._narration, stream, description)

    def _narration(self, stream: LiveStream, description: SceneDescription) -> None:
        message = narration_message(stream.stream_id, description)
        listeners = [v for v in self.viewers.values() if v.stream is stream]
        for viewer in listeners:
            viewer.send(message)
        if any(v.audio is not None for v in listeners) and self.loop is not None:
            self.loop.create_task(self._speak(stream, description.text))

    async def _speak(self, stream: LiveStream, text: str) -> None:
        """Synthesise once (espeak-ng, in a thread) and queue the speech on every listening viewer's track."""
        from streamvis.narration.speech import SpeechError, resample, synthesize
        from streamvis.server.audio import RATE

        narrator = stream.pipeline.config.narrator
        try:
            samples, rate = await asyncio.to_thread(synthesize, text, narrator.voice, narrator.speech_rate_wpm)
        except SpeechError as exc:
            log.warning("stream %s: %s", stream.stream_id, exc)
            return
        speech = resample(samples, rate, RATE)
        for viewer in list(self.viewers.values()):
            if viewer.stream is stream:
                viewer.speak(speech)

    def _status_from_thread(self, stream: LiveStream, status: str) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._status, stream, status)

    def _from_thread(self, stream: LiveStream, result: Result) -> None:
        encoder = self.encoders.get(stream.stream_id)
        if encoder is not None and encoder.stream is stream and encoder.active:
            encoder.push(result)
        if self.loop is not None and any(v.stream is stream for v in list(self.viewers.values())):
            message = json.dumps({"type": "frame", "stream": stream.stream_id, **result_to_json(result),
                                  "stats": stream.stats.snapshot() if result.frame.index % 15 == 0 else None})
            self.loop.call_soon_threadsafe(self._fan_out, stream, result, message)

    def _fan_out(self, stream: LiveStream, result: Result, message: str) -> None:
        for viewer in list(self.viewers.values()):
            if viewer.stream is stream:
                if isinstance(viewer.track, ResultTrack):
                    viewer.track.push(result)
                viewer.send(message)

    def _status(self, stream: LiveStream, status: str) -> None:
        for viewer in list(self.viewers.values()):
            if viewer.stream is stream:
                viewer.send({"type": "status", "stream": stream.stream_id, "status": status})

    async def add_viewer(self, stream: LiveStream, sdp: str, sdp_type: str) -> Viewer:
        track = None
        if self.settings.codec == "h264":
            encoder = self.encoders.get(stream.stream_id)
            if encoder is None or encoder.stream is not stream:
                if encoder is not None:
                    encoder.close()
                encoder = self.encoders[stream.stream_id] = SharedEncoder(stream, asyncio.get_running_loop())
            track = PacketTrack(encoder)
        viewer = Viewer(stream, self.rtc_config, track)
        self.viewers[viewer.id] = viewer
        stream.stats.viewers += 1
        asyncio.get_running_loop().create_task(self._reap(viewer))
        try:
            narrator = stream.pipeline.config.narrator
            await viewer.answer(sdp, sdp_type, self.settings.codec, narrator.enabled and narrator.speech)
        except Exception:
            await viewer.close()
            raise
        return viewer

    async def _reap(self, viewer: Viewer) -> None:
        await viewer.closed.wait()
        if self.viewers.pop(viewer.id, None) is not None:
            viewer.stream.stats.viewers -= 1

    async def close(self) -> None:
        await asyncio.gather(*(v.close() for v in list(self.viewers.values())), return_exceptions=True)
        await asyncio.gather(*(p.close() for p in list(self.publishers.values())), return_exceptions=True)
        for encoder in self.encoders.values():
            encoder.close()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, s.stop) for s in self.streams.values()))


def narration_message(stream_id: str, d: SceneDescription) -> dict[str, Any]:
    return {"type": "narration", "stream": stream_id, "text": d.text, "frame_index": d.frame_index,
            "pts": round(d.pts, 3), "reason": d.reason, "question": d.question, "model": d.model,
            "latency_ms": round(d.latency_ms, 1)}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _json_object(request: web.Request, shape: str) -> dict[str, Any]:
    """The request's JSON object body, or a 400 that says what was expected."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": f"expected a JSON body {shape}"}),
                                 content_type="application/json")
    return body


def _stream_or_404(hub: StreamHub, name: str) -> LiveStream:
    stream = hub.streams.get(name)
    if stream is None:
        raise web.HTTPNotFound(text=json.dumps({"error": f"no stream '{name}' (streams: {', '.join(hub.streams)})"}),
                               content_type="application/json")
    return stream


def _check_sdp(sdp: object) -> str:
    if not isinstance(sdp, str) or not sdp.startswith("v=0") or "m=video" not in sdp:
        raise web.HTTPBadRequest(text=json.dumps({"error": "expected an SDP offer with a video section"}),
                                 content_type="application/json")
    return sdp


@web.middleware
async def _auth(request: web.Request, handler: Any) -> web.StreamResponse:
    token = request.app["settings"].token
    if token:
        given = request.query.get("token") or request.cookies.get(TOKEN_COOKIE, "")
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = header[7:]
        if not hmac.compare_digest(given.encode(), token.encode()):
            return web.Response(status=401, text="401: a valid token is required\n",
                                headers={"WWW-Authenticate": 'Bearer realm="streamvis"'})
    return await handler(request)


async def index(request: web.Request) -> web.StreamResponse:
    response = web.FileResponse(request.app["settings"].web_dir / "index.html")
    token = request.query.get("token")
    if token and request.app["settings"].token:  # the middleware has checked it
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", secure=request.secure)
    return response


async def list_streams(request: web.Request) -> web.Response:
    hub: StreamHub = request.app["hub"]
    return web.json_response({"streams": [
        {"id": name, "status": s.status, "resolution_wh": s.resolution_wh, "pipeline": s.pipeline.config.name,
         "stats": s.stats.snapshot()} for name, s in hub.streams.items()],
        "ice_servers": [{"urls": i.urls, **({"username": i.username, "credential": i.credential}
                                            if i.username else {})} for i in hub.rtc_config.iceServers or []]})


async def offer(request: web.Request) -> web.Response:
    hub: StreamHub = request.app["hub"]
    body = await _json_object(request, '{"sdp": ..., "type": "offer", "stream": ...}')
    if body.get("type") != "offer":
        return _error(400, 'expected {"sdp": ..., "type": "offer", "stream": ...}')
    name = body.get("stream") or next(iter(hub.streams))
    stream = _stream_or_404(hub, str(name))
    try:
        viewer = await hub.add_viewer(stream, _check_sdp(body.get("sdp")), "offer")
    except ValueError as exc:
        return _error(400, f"unusable SDP offer: {exc}")
    return web.json_response({"sdp": viewer.pc.localDescription.sdp, "type": "answer", "session": viewer.id})


async def whep_post(request: web.Request) -> web.Response:
    hub: StreamHub = request.app["hub"]
    stream = _stream_or_404(hub, request.match_info["stream"])
    if request.content_type != "application/sdp":
        return _error(415, "WHEP expects Content-Type: application/sdp")
    sdp = _check_sdp(await request.text())
    try:
        viewer = await hub.add_viewer(stream, sdp, "offer")
    except ValueError as exc:
        return _error(400, f"unusable SDP offer: {exc}")
    location = f"/whep/{stream.stream_id}/{viewer.id}"
    return web.Response(status=201, text=viewer.pc.localDescription.sdp, content_type="application/sdp",
                        headers={"Location": location})


async def whep_delete(request: web.Request) -> web.Response:
    hub: StreamHub = request.app["hub"]
    viewer = hub.viewers.get(request.match_info["session"])
    if viewer is None or viewer.stream.stream_id != request.match_info["stream"]:
        return _error(404, "no such WHEP session")
    await viewer.close()
    return web.Response(status=200)


async def whip_post(request: web.Request) -> web.Response:
    hub: StreamHub = request.app["hub"]
    name = request.match_info["stream"]
    if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 64:
        return _error(400, "stream names are letters, digits, '-' and '_' (at most 64)")
    if request.content_type != "application/sdp":
        return _error(415, "WHIP expects Content-Type: application/sdp")
    sdp = _check_sdp(await request.text())
    try:
        publisher = await hub.add_publisher(name, sdp)
    except ValueError as exc:
        return _error(400, f"unusable SDP offer: {exc}")
    return web.Response(status=201, text=publisher.answer_sdp, content_type="application/sdp",
                        headers={"Location": f"/whip/{name}/{publisher.id}"})


async def whip_delete(request: web.Request) -> web.Response:
    hub: StreamHub = request.app["hub"]
    publisher = hub.publishers.get(request.match_info["session"])
    if publisher is None or publisher.stream_id != request.match_info["stream"]:
        return _error(404, "no such WHIP session")
    await publisher.close()
    return web.Response(status=200)


async def ask(request: web.Request) -> web.Response:
    """`{"stream": ..., "question": ...}` -> the answer about the newest frame, also sent as a narration event."""
    hub: StreamHub = request.app["hub"]
    body = await _json_object(request, '{"question": ..., "stream": ...}')
    question = body.get("question")
    if not isinstance(question, str) or not question.strip() or len(question) > 500:
        return _error(400, "expected a question: a non-empty string of at most 500 characters")
    stream = _stream_or_404(hub, str(body.get("stream") or next(iter(hub.streams), "")))
    try:
        future = stream.ask(question.strip())
    except RuntimeError as exc:
        return _error(409, str(exc))
    description = await asyncio.wrap_future(future)
    if description is None:
        return _error(502, "the narrator gave no answer")
    return web.json_response(narration_message(stream.stream_id, description))


async def metrics(request: web.Request) -> web.Response:
    hub: StreamHub = request.app["hub"]
    return web.Response(text=prometheus_text([s.stats for s in hub.streams.values()]),
                        content_type="text/plain", charset="utf-8")


async def healthz(request: web.Request) -> web.Response:
    hub: StreamHub = request.app["hub"]
    return web.json_response({"ok": True, "streams": {n: s.status for n, s in hub.streams.items()}})


def build_app(streams: dict[str, LiveStream], settings: ServerSettings,
              make_stream: StreamFactory | None = None) -> web.Application:
    """The server; `make_stream(name, open_source)` builds a pipeline for each WHIP publisher."""
    app = web.Application(middlewares=[_auth], client_max_size=MAX_BODY_BYTES)
    hub = StreamHub(streams, settings, make_stream)
    app["hub"], app["settings"] = hub, settings

    async def on_startup(app: web.Application) -> None:
        hub.start(asyncio.get_running_loop())

    async def on_shutdown(app: web.Application) -> None:
        await hub.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/", index)
    app.router.add_get("/streams", list_streams)
    app.router.add_post("/offer", offer)
    app.router.add_post("/whep/{stream}", whep_post)
    app.router.add_delete("/whep/{stream}/{session}", whep_delete)
    app.router.add_post("/whip/{stream}", whip_post)
    app.router.add_delete("/whip/{stream}/{session}", whip_delete)
    app.router.add_post("/ask", ask)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    if settings.web_dir.is_dir():
        app.router.add_static("/web/", settings.web_dir)
    return app
