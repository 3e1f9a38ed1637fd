"""A stand-in OpenAI-compatible chat-completions server for tests and benchmarks: a real HTTP server on 127.0.0.1
(aiohttp, in a thread of its own) that records every request and answers with scripted text, or slowly, or with
an error. It tests the protocol and our handling of it; it never shows that a model describes anything well.

    with ChatServer() as server:        # server.base_url == "http://127.0.0.1:PORT/v1"
        server.mode = "slow"            # ok | slow | fail (500) | refuse (401) | missing (404) | limit (429) | bad
        server.requests[-1].body        # what streamvis sent
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ERRORS = {"fail": (500, "internal error"), "refuse": (401, "invalid api key"), "missing": (404, "model not found"),
          "limit": (429, "rate limit exceeded")}


@dataclass(slots=True)
class Recorded:
    at: float  # time.monotonic() when it arrived
    headers: dict[str, str]
    body: dict[str, Any]
    mode: str  # how it was answered

    @property
    def user_text(self) -> str:
        content = self.body["messages"][-1]["content"]
        return " ".join(part["text"] for part in content if part.get("type") == "text")

    @property
    def image_url(self) -> str:
        content = self.body["messages"][-1]["content"]
        return next(part["image_url"]["url"] for part in content if part.get("type") == "image_url")


@dataclass
class ChatServer:
    answer: str = "A person walks towards a table on the left."
    slow_s: float = 3.0  # how long "slow" takes to answer
    mode: str = "ok"
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))  # kept: no other test can take the port between picking and serving
        self.port = int(self._socket.getsockname()[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="chat-server", daemon=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        mode = self.mode
        body = await request.json()
        self.requests.append(Recorded(time.monotonic(), dict(request.headers), body, mode))
        if mode == "slow":
            await asyncio.sleep(self.slow_s)
        if mode in ERRORS:
            status, message = ERRORS[mode]
            return web.json_response({"error": {"message": message, "code": status}}, status=status)
        if mode == "bad":
            return web.json_response({"unexpected": True})
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.answer},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112}})

    async def _start(self) -> None:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()

    def __enter__(self) -> ChatServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._socket.close()

    def summary(self) -> str:
        return json.dumps([{"mode": r.mode, "text": r.user_text} for r in self.requests])
