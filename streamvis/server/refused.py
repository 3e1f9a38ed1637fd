"""The one error a request handler raises to refuse a request, and the one middleware that answers it.

Anywhere a request is handled (routes, the hub, the WHIP/WHEP helpers), a refusal is `raise Refused(status,
message)`; `refusals` turns it into `{"error": message}` with that HTTP status. Prompts answer on the data channel
too, so `StreamHub.prompt` reads the same status into its reply.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


class Refused(Exception):
    """A request refused, with the HTTP status that says why (400 malformed, 403 not allowed, 404 no such thing,
    409 conflict, 415 wrong content type, 429 too many, 501 not offered, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@web.middleware
async def refusals(request: web.Request, handler: Any) -> web.StreamResponse:
    """`Refused` from a handler (or a middleware inside this one) becomes its JSON answer."""
    try:
        response: web.StreamResponse = await handler(request)
    except Refused as refused:
        return web.json_response({"error": refused.message}, status=refused.status)
    return response
