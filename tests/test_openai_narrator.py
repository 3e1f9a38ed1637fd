"""`narrator.type: openai` against a real HTTP server started here that speaks the chat-completions protocol
(`streamvis.testing.chat_server`: it records requests and answers with scripted text, slowly, or with errors). It
shows the protocol and the handling of a slow, failing or refusing server; it does not show that any model
describes well."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from streamvis.config import OpenAINarratorConfig, PipelineConfig
from streamvis.errors import ConfigError
from streamvis.narration.openai_server import OpenAINarrator
from streamvis.testing.chat_server import ChatServer

FRAME = np.full((432, 768, 3), 90, np.uint8)
OBJECTS = "Two people: one on the left, near; one ahead, far."


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer() as running:
        yield running


def _narrator(server: ChatServer, **settings: object) -> OpenAINarrator:
    return OpenAINarrator(OpenAINarratorConfig.model_validate({"model": "llava", "base_url": server.base_url,
                                                               **settings}), environ={"VLM_KEY": "sk-secret-123"})


def test_a_caption_request_carries_the_scene_and_the_image_as_configured(server: ChatServer) -> None:
    narrator = _narrator(server, api_key_env="VLM_KEY", image_max_px=384, jpeg_quality=70, max_tokens=50)
    assert narrator.describe(FRAME, OBJECTS) == server.answer
    sent = server.requests[-1]
    assert sent.headers["Authorization"] == "Bearer sk-secret-123"
    assert sent.body["model"] == "llava" and sent.body["max_tokens"] == 50 and sent.body["stream"] is False
    assert sent.body["messages"][0]["role"] == "system"
    assert "for a blind person" in sent.user_text and f"The detector sees: {OBJECTS}" in sent.user_text
    header, data = sent.image_url.split(",", 1)
    assert header == "data:image/jpeg;base64"
    image = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (216, 384, 3)  # the longer side at image_max_px, the aspect kept
    assert narrator.health()["state"] == "ok" and narrator.last_request_bytes > len(data)


def test_a_question_is_asked_with_what_is_in_view(server: ChatServer) -> None:
    _narrator(server).describe(FRAME, OBJECTS, "Is the door open?")
    assert server.requests[-1].user_text == f"Is the door open?\nThe detector sees: {OBJECTS}"
    assert "Authorization" not in server.requests[-1].headers  # no api_key_env: no key sent


def test_a_slow_server_is_cut_at_the_deadline_and_then_left_alone_for_a_while(server: ChatServer) -> None:
    narrator = _narrator(server, timeout_s=0.5)
    server.mode, server.slow_s = "slow", 3.0
    start = time.monotonic()
    assert narrator.describe(FRAME, OBJECTS) == ""
    assert time.monotonic() - start < 2.5  # the deadline, not the server's 3 s
    health = narrator.health()
    assert health["state"] == "failing: timeout" and "narrator.timeout_s" in str(health["detail"])
    sent = len(server.requests)
    assert narrator.describe(FRAME, OBJECTS) == "" and len(server.requests) == sent  # backing off: no request
    assert 0 < float(str(health["retry_in_s"])) <= 1.0


def test_each_kind_of_failure_is_logged_once_and_recovery_once(server: ChatServer,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="streamvis")
    narrator = _narrator(server, retry_max_s=0.2)
    server.mode = "fail"
    for _ in range(4):
        assert narrator.describe(FRAME, OBJECTS) == ""
        time.sleep(0.25)  # past the (capped) backoff: every call is a request
    assert len(server.requests) == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "failed (500)" in warnings[0].getMessage()
    assert narrator.health()["consecutive_failures"] == 4
    server.mode = "ok"
    assert narrator.describe(FRAME, OBJECTS) == server.answer
    assert narrator.health()["state"] == "ok" and "answers again" in caplog.text


@pytest.mark.parametrize(("mode", "says"), [
    ("refuse", "refused the request (401) with the key in $VLM_KEY: set narrator.api_key_env"),
    ("missing", "answered 404: check narrator.model"),
    ("limit", "is rate limiting (429)"),
    ("bad", "without choices[0].message.content"),
])
def test_a_refusing_server_gets_one_line_naming_what_to_fix_and_never_the_key(
        server: ChatServer, caplog: pytest.LogCaptureFixture, mode: str, says: str) -> None:
    caplog.set_level(logging.DEBUG)
    server.mode = mode
    narrator = _narrator(server, api_key_env="VLM_KEY")
    assert narrator.describe(FRAME, OBJECTS) == ""
    assert says in caplog.text and says in str(narrator.health()["detail"])
    assert "sk-secret-123" not in caplog.text and "sk-secret-123" not in json.dumps(narrator.health())


def test_an_unreachable_server_says_so() -> None:
    with ChatServer() as gone:
        url = gone.base_url
    narrator = OpenAINarrator(OpenAINarratorConfig(model="llava", base_url=url))
    assert narrator.describe(FRAME, OBJECTS) == ""
    assert "cannot be reached" in str(narrator.health()["detail"])


@pytest.mark.parametrize(("settings", "error"), [
    ({"model": "llava", "api_key_env": "sk-abc123def"}, "not a key: keys stay out of pipeline files"),
    ({"model": "llava", "base_url": "127.0.0.1:11434/v1"}, "expected an http:// or https:// URL"),
    ({"base_url": "http://127.0.0.1:11434/v1"}, "model"),
])
def test_bad_settings_are_refused_naming_the_field(settings: dict[str, str], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        PipelineConfig.model_validate({"narrator": {"type": "openai", **settings}})


def test_a_key_variable_that_is_not_set_stops_loading_with_its_name() -> None:
    config = OpenAINarratorConfig(model="llava", api_key_env="NOT_SET_ANYWHERE")
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE is not set"):
        OpenAINarrator(config, environ={})


def test_live_narration_and_answers_come_from_the_server_and_survive_its_failure(
        server: ChatServer, person_video: Path, models_dir: Path) -> None:
    """`serve -p narrate` with the narrator on the stand-in server: captions and answers are the server's words;
    while it fails, /streams says so and the objects are still narrated; then its captions come back."""
    import asyncio

    from test_serve import Server

    from streamvis.server.aiortc_compat import use_loopback_ice

    use_loopback_ice(only=True)
    server.answer = "A man walks to the table."
    srv = Server("--source", str(person_video), "--models-dir", str(models_dir), "--loop", "-p", "narrate",
                 "--set", "narrator.type=openai", "--set", "narrator.model=llava",
                 "--set", f"narrator.base_url={server.base_url}", "--set", "narrator.retry_max_s=1",
                 "--set", "narrator.period_s=3", "--set", "narrator.min_gap_s=1")
    try:
        srv.wait_ready()
        deadline = time.monotonic() + 30
        while json.loads(srv.get("/streams")[1])["streams"][0]["stats"]["frames_out"] < 1:  # a frame to ask about
            assert time.monotonic() < deadline, "no frame came out"
            time.sleep(0.2)
        status, text = srv.get("/ask", data=json.dumps({"question": "What is ahead?"}).encode(), method="POST",
                               content_type="application/json")
        assert status == 200 and json.loads(text)["text"] == "A man walks to the table."
        assert server.requests[-1].user_text.startswith("What is ahead?")
        server.mode = "fail"
        from streamvis_client import watch

        report = asyncio.run(watch(srv.url, "intel_one-by-one-person-detection", frames=10**6, timeout_s=12))
        _, body = srv.get("/streams")
        health = json.loads(body)["streams"][0]["narrator"]
        assert health["state"] == "failing: server error" and health["consecutive_failures"] >= 1
        spoken = [m["text"] for m in report.narration_messages]
        assert spoken and all("A man walks" not in t for t in spoken), spoken  # the objects' words alone
        server.mode = "ok"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            _, body = srv.get("/streams")
            if json.loads(body)["streams"][0]["narrator"]["state"] == "ok":
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the narrator did not come back when the server did")
    finally:
        log = srv.stop()
    assert log.count("failed (500)") == 1  # one line for the whole outage, not one per request
