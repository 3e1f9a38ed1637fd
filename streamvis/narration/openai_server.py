"""Narration and answers from a vision-language model served elsewhere, over the OpenAI chat-completions protocol
(`narrator.type: openai`): Ollama, vLLM, llama.cpp's server, LM Studio, Gemini's OpenAI-compatible endpoint.

One request per description: `POST {base_url}/chat/completions` with the instruction (or the question) and what
the detector sees, counted and placed, as text, and the frame as a JPEG data URL (its longer side at most
`image_max_px`). The caller is the narrator's worker (`LiveNarrator`: one request in flight per stream, never the
frame loop), and the request has a deadline (`timeout_s`).

When the server is slow, down or refuses, `describe` returns no caption (the narrator still says what the objects
do) and the backend backs off: no request until `retry_at`, the wait doubling from 1 s to `retry_max_s`; it
resumes by itself. Each kind of failure (refused key, unknown model, rate limit, unreachable, timeout, server
error) is logged once, with what to fix, until a request succeeds again. `health()` is the state `/streams` shows.
The key comes from the environment variable `api_key_env` names; it is never logged or written anywhere.

Plain `httpx` against the documented schema, not the `openai` package: one endpoint, a synchronous client with
pooled connections for the worker thread, separate connect and read timeouts, and status handling of our own
(the official client retries by itself, which would hide the state we report and multiply requests).
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np

from streamvis.config.roles import OpenAINarratorConfig
from streamvis.errors import ConfigError
from streamvis.narration.wording import clean_text

log = logging.getLogger(__name__)
FIRST_RETRY_S = 1.0
SYSTEM_PROMPT = ("You describe live camera frames for a blind or low-vision person. Answer in one or two short "
                 "sentences of plain speech, no lists or formatting. The detector's objects are given in words; "
                 "do not contradict them.")


def jpeg_data_url(image_bgr: np.ndarray, max_px: int, quality: int) -> str:
    """The frame as a `data:image/jpeg;base64,...` URL, its longer side at most `max_px`."""
    height, width = image_bgr.shape[:2]
    scale = min(1.0, max_px / max(height, width))
    if scale < 1:
        image_bgr = cv2.resize(image_bgr, (max(1, round(width * scale)), max(1, round(height * scale))),
                               interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("the frame could not be encoded as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def chat_request(config: OpenAINarratorConfig, image_bgr: np.ndarray, objects: str,
                 question: str | None) -> dict[str, Any]:
    """The chat-completions body: the instruction or the question, what is in view, and the image."""
    text = question or config.prompt
    if objects:
        text = f"{text}\nThe detector sees: {objects}"
    return {
        "model": config.model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": jpeg_data_url(image_bgr, config.image_max_px,
                                                                          config.jpeg_quality)}},
            ]},
        ],
        "max_tokens": config.max_tokens,
        "temperature": config.temperature,
        "stream": False,
    }


class ServerProblem(Exception):
    """A request that got no caption: `kind` groups the log line (one per kind), `message` says what to fix."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _problem_for(status: int, config: OpenAINarratorConfig, body: str) -> ServerProblem:
    where = f"{config.base_url} (model {config.model})"
    detail = " ".join(body.split())[:200]
    if status in (401, 403):
        key = f"the key in ${config.api_key_env}" if config.api_key_env else "no key (narrator.api_key_env unset)"
        return ServerProblem("refused", f"{where} refused the request ({status}) with {key}: set "
                                        "narrator.api_key_env to the variable holding a valid key")
    if status == 404:
        return ServerProblem("not found", f"{where} answered 404: check narrator.model (the server's model name, "
                                          "e.g. 'llava' for Ollama) and narrator.base_url (the OpenAI-compatible "
                                          f"root, e.g. http://host:11434/v1): {detail}")
    if status == 429:
        return ServerProblem("rate limited", f"{where} is rate limiting (429): narration backs off; raise "
                                             f"narrator.min_gap_s or the account's limits: {detail}")
    if status >= 500:
        return ServerProblem("server error", f"{where} failed ({status}): {detail}")
    return ServerProblem(f"http {status}", f"{where} answered {status}: {detail}")


class OpenAINarrator:
    """A narrator backend on an OpenAI-compatible server (see the module text). Thread-safe: the narrator's and
    the questions' workers of every stream share one."""

    captions = True

    def __init__(self, config: OpenAINarratorConfig, environ: Mapping[str, str] = os.environ) -> None:
        import httpx

        self.config = config
        host = urlsplit(config.base_url).netloc
        self.name = f"{config.model} at {host}"
        self.provider = f"openai-compatible server {host}"
        self._key: str | None = None
        if config.api_key_env:
            self._key = environ.get(config.api_key_env) or None
            if self._key is None:
                raise ConfigError(f"narrator.api_key_env: the environment variable {config.api_key_env} is not set "
                                  "(it should hold the server's API key)")
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._client = httpx.Client(base_url=config.base_url.rstrip("/"), headers=headers,
                                    timeout=httpx.Timeout(config.timeout_s, connect=min(5.0, config.timeout_s)))
        self._httpx = httpx
        self.last_ms = 0.0
        self.last_request_bytes = 0
        self._lock = threading.Lock()
        self._state = "ready"
        self._detail = ""
        self._failures = 0
        self._retry_at = 0.0
        self._retry_s = min(FIRST_RETRY_S, config.retry_max_s)
        self._logged: set[str] = set()  # kinds of failure logged since the last success
        self.requests = 0

    def health(self) -> dict[str, object]:
        """The state `/streams` shows: ready, ok, failing (with what to fix) or backing off."""
        with self._lock:
            waiting = max(0.0, self._retry_at - time.monotonic())
            return {"backend": "openai", "server": self.config.base_url, "model": self.config.model,
                    "state": self._state, "detail": self._detail, "consecutive_failures": self._failures,
                    "retry_in_s": round(waiting, 1), "last_ms": round(self.last_ms, 1)}

    def describe(self, image_bgr: np.ndarray, objects: str, question: str | None = None) -> str:
        """The server's caption or answer; "" while the server is failing (the narrator then speaks the objects'
        words alone)."""
        with self._lock:
            if time.monotonic() < self._retry_at:
                return ""
        start = time.perf_counter()
        body = chat_request(self.config, image_bgr, objects, question)
        try:
            text = self._post(body)
        except ServerProblem as problem:
            self._failed(problem)
            return ""
        finally:
            self.last_ms = (time.perf_counter() - start) * 1e3
        self._succeeded()
        return text

    def _post(self, body: dict[str, Any]) -> str:
        import json

        payload = json.dumps(body).encode()
        self.last_request_bytes = len(payload)
        self.requests += 1
        try:
            response = self._client.post("/chat/completions", content=payload,
                                         headers={"Content-Type": "application/json"})
        except self._httpx.TimeoutException:
            raise ServerProblem("timeout", f"{self.config.base_url} did not answer within narrator.timeout_s "
                                           f"({self.config.timeout_s:g} s)") from None
        except self._httpx.HTTPError as exc:
            raise ServerProblem("unreachable", f"{self.config.base_url} cannot be reached "
                                               f"({type(exc).__name__}): is the server running?") from None
        if response.status_code != 200:
            raise _problem_for(response.status_code, self.config, self._redacted(response.text))
        try:
            answer = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ServerProblem("bad answer", f"{self.config.base_url} answered 200 without "
                                              "choices[0].message.content: is it an OpenAI-compatible "
                                              "chat-completions endpoint?") from None
        if isinstance(answer, list):  # some servers answer with content parts
            answer = " ".join(str(part.get("text", "")) for part in answer if isinstance(part, dict))
        return clean_text(str(answer or ""))

    def _redacted(self, text: str) -> str:
        return text.replace(self._key, "[key]") if self._key else text

    def _failed(self, problem: ServerProblem) -> None:
        with self._lock:
            self._failures += 1
            self._state = f"failing: {problem.kind}"
            self._detail = str(problem)
            self._retry_at = time.monotonic() + self._retry_s
            retry_s = self._retry_s
            self._retry_s = min(self.config.retry_max_s, 2 * self._retry_s)
            first = problem.kind not in self._logged
            self._logged.add(problem.kind)
        if first:
            log.warning("narrator: %s (retrying in %g s, then less often; the objects are still narrated)",
                        problem, retry_s)

    def _succeeded(self) -> None:
        with self._lock:
            recovered = self._failures > 0
            self._failures = 0
            self._state = "ok"
            self._detail = ""
            self._retry_s = min(FIRST_RETRY_S, self.config.retry_max_s)
            self._logged.clear()
        if recovered:
            log.info("narrator: %s answers again", self.config.base_url)

    def close(self) -> None:
        self._client.close()
