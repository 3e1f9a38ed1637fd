"""`streamvis serve`'s HTTP routes: the viewer page, stream listing, WebRTC playback (`/offer`, WHEP), WHIP
ingest, questions, metrics and health, behind an optional bearer token.

Endpoints: `GET /` (the viewer), `GET /streams`, `POST /offer` (JSON SDP, as in aiortc's examples),
`POST /whep/{stream}` + `PATCH`/`DELETE /whep/{stream}/{session}` (WHEP playback), `POST /whip/{stream}` +
`PATCH`/`DELETE /whip/{stream}/{session}` (WHIP ingest: a published camera becomes a stream; the protocol details
are in `streamvis.server.wish`), `POST /ask`, `POST /prompt` (clicks, boxes, words; `streamvis.prompts`),
`GET /metrics` (Prometheus), `GET /healthz`. With a token set, every request but a CORS preflight must carry it
(`Authorization: Bearer`, or `?token=` for the page itself) or gets 401 and nothing else; a view token
(`--view-token`) may watch and ask but not prompt or publish (403). Handlers only parse, check and answer (a
refusal is a `Refused` with its HTTP status, answered by one middleware, `refused.refusals`): the hub
(`streamvis.server.hub`) holds the state, and no model code or codec runs on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from streamvis.errors import ConfigError, OutputError
from streamvis.live.runner import LiveStream
from streamvis.live.stats import prometheus_text
from streamvis.search.index import parse_time
from streamvis.server.heap import HeapTrimmer
from streamvis.server.hub import HUB, LAYERS, SETTINGS, ServerSettings, StreamFactory, StreamHub, narration_message
from streamvis.server.ingest import Publisher
from streamvis.server.peers import Viewer
from streamvis.server.refused import Refused, refusals
from streamvis.server.wish import cors, created, trickle

if TYPE_CHECKING:
    from streamvis.search.live import LiveIndex

WEB_DIR = Path(__file__).resolve().parent.parent / "web"  # package data: the viewer page
MAX_BODY_BYTES = 64 * 1024  # an SDP offer is a few kB
MAX_CLIP_S = 600.0  # the longest moment `GET /search/clip` cuts
TOKEN_COOKIE = "streamvis_token"  # set when the page is opened with ?token=, so its scripts load too
HEAP = web.AppKey("heap", HeapTrimmer)  # `serve`'s C heap trims, counted in /metrics
ROLE = web.RequestKey("role", str)  # what the request's token lets it do: "control" or "view"


async def _json_object(request: web.Request, shape: str) -> dict[str, Any]:
    """The request's JSON object body, or a 400 that says what was expected."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise Refused(400, f"expected a JSON body {shape}")
    return body


def _stream_or_404(hub: StreamHub, name: str) -> LiveStream:
    stream = hub.streams.get(name)
    if stream is None:
        raise Refused(404, f"no stream '{name}' (streams: {', '.join(hub.streams)})")
    return stream


def _check_sdp(sdp: object) -> str:
    if not isinstance(sdp, str) or not sdp.startswith("v=0") or "m=video" not in sdp:
        raise Refused(400, "expected an SDP offer with a video section")
    return sdp


def _role(given: str, settings: ServerSettings) -> str | None:
    """`control` (the server's token, or no token set: watch, prompt, publish), `view` (the view token: watch and
    ask), or None (neither: 401)."""
    if not settings.token and not settings.view_token:
        return "control"
    if settings.token and hmac.compare_digest(given.encode(), settings.token.encode()):
        return "control"
    if settings.view_token and hmac.compare_digest(given.encode(), settings.view_token.encode()):
        return "view"
    return None


@web.middleware
async def _auth(request: web.Request, handler: Any) -> web.StreamResponse:
    given = request.query.get("token") or request.cookies.get(TOKEN_COOKIE, "")
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        given = header[7:]
    role = _role(given, request.app[SETTINGS])
    if role is None:
        return web.Response(status=401, text="401: a valid token is required\n",
                            headers={"WWW-Authenticate": 'Bearer realm="streamvis"'})
    request[ROLE] = role
    return await handler(request)


def _control_only(request: web.Request, what: str) -> None:
    """403 unless the request carries the server's token (a view token may watch, not change streams)."""
    if request.get(ROLE) != "control":
        raise Refused(403, f"{what} needs the server's token (this one may only watch)")


def _layers(value: object) -> str:
    layers = "burned" if value is None else value
    if layers not in LAYERS:
        raise Refused(400, f"layers must be one of {', '.join(LAYERS)}, got {value!r}")
    return str(layers)


async def index(request: web.Request) -> web.StreamResponse:
    response = web.FileResponse(WEB_DIR / "index.html")
    token = request.query.get("token")
    if token and (request.app[SETTINGS].token or request.app[SETTINGS].view_token):  # checked already
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", secure=request.secure)
    return response


async def list_streams(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return web.json_response({"streams": [
        {"id": name, "status": s.status, "resolution_wh": s.resolution_wh, "pipeline": s.pipeline.config.name,
         "stats": s.stats.snapshot(), **({"narrator": health} if (health := s.narrator_health()) else {})}
        for name, s in hub.streams.items()],
        "search": request.app[SETTINGS].search is not None,  # `GET /search` answers: the viewer shows its box
        "ice_servers": [{"urls": i.urls, **({"username": i.username, "credential": i.credential}
                                            if i.username else {})} for i in hub.rtc_config.iceServers or []]})


async def offer(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    body = await _json_object(request, '{"sdp": ..., "type": "offer", "stream": ...}')
    if body.get("type") != "offer":
        raise Refused(400, 'expected {"sdp": ..., "type": "offer", "stream": ...}')
    name = body.get("stream") or next(iter(hub.streams))
    stream = _stream_or_404(hub, str(name))
    layers = _layers(body.get("layers"))
    viewer = await hub.add_viewer(stream, _check_sdp(body.get("sdp")), "offer",
                                  can_prompt=request[ROLE] == "control", layers=layers)
    return web.json_response({"sdp": viewer.pc.localDescription.sdp, "type": "answer", "session": viewer.id,
                              "layers": layers, "can_prompt": viewer.can_prompt})


async def whep_post(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    stream = _stream_or_404(hub, request.match_info["stream"])
    if request.content_type != "application/sdp":
        raise Refused(415, "WHEP expects Content-Type: application/sdp")
    sdp = _check_sdp(await request.text())
    viewer = await hub.add_viewer(stream, sdp, "offer", can_prompt=request[ROLE] == "control",
                                  layers=_layers(request.query.get("layers")))
    location = f"/whep/{stream.stream_id}/{viewer.id}"
    return created(viewer.pc.localDescription.sdp, location, viewer.id, hub.rtc_config.iceServers or [])


def _whep_session(request: web.Request) -> Viewer:
    """The viewer `/whep/{stream}/{session}` names; 404 otherwise."""
    viewer = request.app[HUB].viewers.get(request.match_info["session"])
    if viewer is None or viewer.stream.stream_id != request.match_info["stream"]:
        raise Refused(404, "no such WHEP session")
    return viewer


def _whip_session(request: web.Request) -> Publisher:
    """The publisher `/whip/{stream}/{session}` names; 404 otherwise."""
    publisher = request.app[HUB].publishers.get(request.match_info["session"])
    if publisher is None or publisher.stream_id != request.match_info["stream"]:
        raise Refused(404, "no such WHIP session")
    return publisher


async def whep_delete(request: web.Request) -> web.Response:
    await _whep_session(request).close()
    return web.Response(status=200)


async def whip_post(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    _control_only(request, "publishing")
    name = request.match_info["stream"]
    if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 64:
        raise Refused(400, "stream names are letters, digits, '-' and '_' (at most 64)")
    if request.content_type != "application/sdp":
        raise Refused(415, "WHIP expects Content-Type: application/sdp")
    sdp = _check_sdp(await request.text())
    publisher = await hub.add_publisher(name, sdp)
    return created(publisher.answer_sdp, f"/whip/{name}/{publisher.id}", publisher.id,
                   hub.rtc_config.iceServers or [])


async def whep_patch(request: web.Request) -> web.Response:
    viewer = _whep_session(request)
    return await trickle(request, viewer.pc, viewer.id)


async def whip_patch(request: web.Request) -> web.Response:
    publisher = _whip_session(request)
    return await trickle(request, publisher.pc, publisher.id)


async def whip_delete(request: web.Request) -> web.Response:
    await _whip_session(request).close()
    return web.Response(status=200)


async def ask(request: web.Request) -> web.Response:
    """`{"stream": ..., "question": ...}` -> the answer about the newest frame, also sent as a narration event."""
    hub = request.app[HUB]
    body = await _json_object(request, '{"question": ..., "stream": ...}')
    question = body.get("question")
    if not isinstance(question, str) or not question.strip() or len(question) > 500:
        raise Refused(400, "expected a question: a non-empty string of at most 500 characters")
    stream = _stream_or_404(hub, str(body.get("stream") or next(iter(hub.streams), "")))
    try:
        future = stream.ask(question.strip())
    except RuntimeError as exc:
        raise Refused(409, str(exc)) from exc
    description = await asyncio.wrap_future(future)
    if description is None:
        raise Refused(502, "the narrator gave no answer")
    return web.json_response(narration_message(stream.stream_id, description))


async def prompt(request: web.Request) -> web.Response:
    """`{"stream": ..., "type": "point" | "box" | "text" | "remove", ...}` (see `streamvis.prompts`) -> the
    prompt's result once the stream's pipeline has applied it."""
    hub = request.app[HUB]
    body = await _json_object(request, '{"stream": ..., "type": "point" | "box" | "text" | "remove", ...}')
    stream = _stream_or_404(hub, str(body.get("stream") or next(iter(hub.streams), "")))
    client = f"http:{request.remote or '?'}"
    reply = await hub.prompt(stream, body, client, request[ROLE] == "control")
    status = int(reply.pop("status", 200))
    return web.json_response(reply, status=status)


def _time_arg(request: web.Request, name: str) -> float | None:
    """A time in the query: Unix seconds or an ISO 8601 date and time."""
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        return parse_time(value, name)
    except ConfigError as exc:
        raise Refused(400, str(exc)) from None


def _index(request: web.Request) -> LiveIndex:
    moments = request.app[SETTINGS].search
    if moments is None:
        raise Refused(404, "this server keeps no index: serve with --index FILE and --set embedder.type=clip")
    return moments


async def search(request: web.Request) -> web.Response:
    """`GET /search?q=a red car&top=10&stream=&class=&since=&until=` -> the moments indexed so far (`serve
    --index`) that match the words, best first."""
    moments = _index(request)
    query = request.query.get("q", "").strip()
    if not query or len(query) > 500:
        raise Refused(400, "q: expected words to search for (at most 500 characters)")
    try:
        top = int(request.query.get("top", "10"))
    except ValueError:
        raise Refused(400, f"top: expected a whole number, got '{request.query.get('top', '')[:40]}'") from None
    if not 1 <= top <= 1000:
        raise Refused(400, f"top: expected 1 to 1000, got {top}")
    found = await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(moments.search, query, top, request.query.get("stream") or None,
                                request.query.get("class") or None, _time_arg(request, "since"),
                                _time_arg(request, "until")))
    return web.json_response({"query": query, "recorded": moments.recorded(),
                              "moments": [f.to_json("wall") for f in found]})


async def search_thumbnail(request: web.Request) -> web.FileResponse:
    """`GET /search/thumbnail/<path>`: a moment's thumbnail, as `GET /search` names it."""
    path = _index(request).thumbnail(request.match_info["path"])
    if path is None:
        raise Refused(404, "no such thumbnail in this server's index")
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg", "Cache-Control": "max-age=3600"})


async def search_clip(request: web.Request) -> web.Response:
    """`GET /search/clip?stream=gate&from=UNIX_S&to=UNIX_S` -> the moment as MP4, its packets copied from the
    stream's recording (`serve --record`); at most `MAX_CLIP_S`."""
    moments = _index(request)
    stream = request.query.get("stream", "")
    start_s, end_s = _time_arg(request, "from"), _time_arg(request, "to")
    if not stream or start_s is None or end_s is None:
        raise Refused(400, "expected stream, from and to (Unix seconds or ISO 8601 times)")
    if not 0 < end_s - start_s <= MAX_CLIP_S:
        raise Refused(400, f"to must come after from, by at most {MAX_CLIP_S:g} s")
    try:
        body = await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(moments.clip, stream, start_s, end_s))
    except OutputError as exc:
        raise Refused(404, str(exc)) from None
    return web.Response(body=body, content_type="video/mp4")


async def metrics(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    trimmer = request.app[HEAP]
    return web.Response(text=prometheus_text([s.stats for s in hub.streams.values()]) + trimmer.prometheus_text(),
                        content_type="text/plain", charset="utf-8")


async def healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return web.json_response({"ok": True, "streams": {n: s.status for n, s in hub.streams.items()}})


async def favicon(request: web.Request) -> web.FileResponse:
    """Browsers ask for /favicon.ico whatever the page links: the viewer's icon (SVG)."""
    return web.FileResponse(WEB_DIR / "favicon.svg", headers={"Content-Type": "image/svg+xml"})


def build_app(streams: dict[str, LiveStream], settings: ServerSettings,
              make_stream: StreamFactory | None = None) -> web.Application:
    """The server; `make_stream(name, open_source)` builds a pipeline for each WHIP publisher."""
    app = web.Application(middlewares=[cors, refusals, _auth], client_max_size=MAX_BODY_BYTES)
    hub = StreamHub(streams, settings, make_stream)
    trimmer = HeapTrimmer(settings.heap_trim_s)
    app[HUB], app[SETTINGS], app[HEAP] = hub, settings, trimmer

    async def on_startup(app: web.Application) -> None:
        hub.start(asyncio.get_running_loop())
        trimmer.start()

    async def on_shutdown(app: web.Application) -> None:
        await trimmer.stop()
        await hub.close()  # the streams stop first: their index writers flush the tracks still open
        if settings.search is not None:
            settings.search.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/", index)
    app.router.add_get("/streams", list_streams)
    app.router.add_post("/offer", offer)
    app.router.add_post("/whep/{stream}", whep_post)
    app.router.add_delete("/whep/{stream}/{session}", whep_delete)
    app.router.add_patch("/whep/{stream}/{session}", whep_patch)
    app.router.add_post("/whip/{stream}", whip_post)
    app.router.add_delete("/whip/{stream}/{session}", whip_delete)
    app.router.add_patch("/whip/{stream}/{session}", whip_patch)
    app.router.add_post("/ask", ask)
    app.router.add_post("/prompt", prompt)
    app.router.add_get("/search", search)
    app.router.add_get("/search/thumbnail/{path:.+}", search_thumbnail)
    app.router.add_get("/search/clip", search_clip)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_static("/web/", WEB_DIR)
    return app
