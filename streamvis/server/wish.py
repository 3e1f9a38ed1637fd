"""WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep) over HTTP, as third-party clients expect them.

- `POST` answers 201 with the SDP answer, `Location` (the session resource), `ETag` (the session's ICE state)
  and one `Link: <url>; rel="ice-server"` per configured STUN/TURN server (TURN with its credentials).
- `PATCH` on the session resource takes a trickle-ICE SDP fragment (`application/trickle-ice-sdpfrag`, RFC 8840):
  candidates are added, 204. An `If-Match` that is not the session's ETag is 412; an ICE restart (new ufrag and
  pwd, `If-Match: *`) is not supported: 422, as RFC 9725 asks of a session that supports trickle ICE only.
- `DELETE` ends the session: 200.
- `OPTIONS` (CORS preflight, or a client asking) is 204 with `Accept-Post` / `Accept-Patch`, never behind the token;
  every response carries CORS headers so that browser players and publishers on other origins work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiortc import RTCIceServer, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

from streamvis.server.hub import SETTINGS
from streamvis.server.refused import Refused

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
EXPOSED_HEADERS = "Location, ETag, Link, Accept-Patch, Accept-Post"
ALLOWED_HEADERS = "Authorization, Content-Type, If-Match"
ALLOWED_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"


def etag(session_id: str) -> str:
    return f'"{session_id}"'


def ice_server_links(servers: list[RTCIceServer]) -> list[str]:
    """`Link` header values for the ICE servers (RFC 9725 section 4.4): TURN ones with their credentials."""
    links = []
    for server in servers:
        urls = [server.urls] if isinstance(server.urls, str) else list(server.urls)
        for url in urls:
            link = f'<{url}>; rel="ice-server"'
            if server.username:
                link += f'; username="{server.username}"; credential="{server.credential}"; credential-type="password"'
            links.append(link)
    return links


def created(answer_sdp: str, location: str, session_id: str, servers: list[RTCIceServer]) -> web.Response:
    """The 201 a WHIP/WHEP POST answers with."""
    response = web.Response(status=201, text=answer_sdp, content_type=SDP)
    response.headers["Location"] = location
    response.headers["ETag"] = etag(session_id)
    response.headers["Accept-Patch"] = SDPFRAG
    for link in ice_server_links(servers):
        response.headers.add("Link", link)
    return response


@dataclass(slots=True)
class SdpFragment:
    """What a trickle-ICE PATCH carries: ICE credentials and candidates per media id."""

    ufrag: str | None = None
    pwd: str | None = None
    candidates: list[tuple[str | None, str]] = field(default_factory=list)  # (mid, "candidate:...")
    end_of_candidates: bool = False


def parse_sdpfrag(text: str) -> SdpFragment:
    """Parse an `application/trickle-ice-sdpfrag` body; a `ValueError` names what is malformed."""
    fragment = SdpFragment()
    mid: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("a=ice-ufrag:"):
            fragment.ufrag = line.split(":", 1)[1]
        elif line.startswith("a=ice-pwd:"):
            fragment.pwd = line.split(":", 1)[1]
        elif line.startswith("a=mid:"):
            mid = line.split(":", 1)[1]
        elif line.startswith("a=candidate:"):
            fields = line[2:].split()
            if len(fields) < 8 or fields[6] != "typ":
                raise ValueError(f"malformed candidate line: {line[:80]}")
            fragment.candidates.append((mid, line[2:]))
        elif line == "a=end-of-candidates":
            fragment.end_of_candidates = True
    return fragment


def remote_ufrag(pc: RTCPeerConnection) -> str | None:
    description = pc.remoteDescription
    if description is None:
        return None
    for line in description.sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line.split(":", 1)[1].strip()
    return None


async def trickle(request: web.Request, pc: RTCPeerConnection, session_id: str) -> web.Response:
    """Handle a PATCH on a session: add the trickled candidates, or say why not (RFC 9725 section 4.3)."""
    if request.content_type != SDPFRAG:
        raise Refused(415, f"PATCH expects Content-Type: {SDPFRAG}")
    match = request.headers.get("If-Match")
    try:
        fragment = parse_sdpfrag(await request.text())
    except ValueError as exc:
        raise Refused(400, str(exc)) from exc
    restart = match == "*" or (fragment.ufrag is not None and fragment.ufrag != remote_ufrag(pc))
    if restart:
        raise Refused(422, "ICE restarts are not supported: start a new session (POST) instead")
    if match is not None and match != etag(session_id):
        raise Refused(412, f"If-Match {match} does not match this session's ETag {etag(session_id)}")
    for mid, line in fragment.candidates:
        candidate = candidate_from_sdp(line)
        candidate.sdpMid = mid if mid is not None else _first_mid(pc)
        await pc.addIceCandidate(candidate)
    if fragment.end_of_candidates:
        await pc.addIceCandidate(None)
    return web.Response(status=204, headers={"ETag": etag(session_id)})


def _first_mid(pc: RTCPeerConnection) -> str | None:
    return next((t.mid for t in pc.getTransceivers() if t.mid is not None), None)


def options_response(accept: str) -> web.Response:
    """204 for OPTIONS on an endpoint or a session (CORS preflight or a client's question)."""
    return web.Response(status=204, headers={"Accept-Post": SDP, "Accept-Patch": SDPFRAG, "Allow": accept})


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    return origin is not None and ("*" in allowed or origin in allowed)


@web.middleware
async def cors(request: web.Request, handler: Any) -> web.StreamResponse:
    """CORS for browser players and publishers served from other origins (`ServerSettings.cors_origins`);
    preflights are answered here, before the token check (browsers send them without credentials)."""
    allowed = request.app[SETTINGS].cors_origins
    if request.method == "OPTIONS":
        response: web.StreamResponse = options_response(ALLOWED_METHODS)
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, allowed):
        return response  # same-origin pages need nothing; other origins are refused by the browser
    response.headers["Access-Control-Allow-Origin"] = origin or "*"
    response.headers["Vary"] = "Origin"
    response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
    response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
    response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    response.headers["Access-Control-Max-Age"] = "600"
    return response
