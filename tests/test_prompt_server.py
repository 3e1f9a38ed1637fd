"""Prompts through `streamvis serve` (a tiny SAM 2.1 on YOLOX boxes, the shared person video): `POST /prompt` and the
Python client's `prompt()`, prompts and pings over a viewer's data channel, the clean-video option, and the rules:
a view token watches but cannot prompt, prompts are rate-limited, bad ones get a 400 that names the problem."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from streamvis_client import prompt, watch
from support import MODELS, PERSON_VIDEO, TinyModels, need
from test_serve import STREAM, Server

from streamvis.server.aiortc_compat import use_loopback_ice

HEADERS = {"Authorization": "Bearer ctl"}
VIEW = {"Authorization": "Bearer look"}


@pytest.fixture(scope="module")
def server(tiny_models: TinyModels) -> Iterator[Server]:
    need(PERSON_VIDEO)
    need(MODELS / "yolox-nano")
    use_loopback_ice(only=True)
    srv = Server("--source", str(PERSON_VIDEO), "--models-dir", str(MODELS), "--loop", "--token", "ctl",
                 "--view-token", "look", "--set", "segmenter.type=sam2", "--set", f"segmenter.model={tiny_models.sam2}",
                 "--set", "detector.every_n_frames=10", "--set", "segmenter.max_objects=8",
                 env=tiny_models.offline_env)
    try:
        srv.wait_ready(HEADERS, timeout=120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # live, and a frame through the pipeline: there is something to point at
            if json.loads(srv.get("/streams", HEADERS)[1])["streams"][0]["resolution_wh"]:
                break
            time.sleep(0.3)
        yield srv
    finally:
        srv.stop()


def _post(server: Server, body: dict, headers: dict[str, str] = HEADERS) -> tuple[int, dict]:
    status, text = server.get("/prompt", {**headers, "Content-Type": "application/json"},
                              json.dumps(body).encode(), "POST")
    return status, json.loads(text)


def test_a_box_over_http_becomes_an_object_on_the_stream(server: Server) -> None:
    result = asyncio.run(prompt(server.url, STREAM, {"type": "box", "xyxy": [300, 100, 460, 400], "id": "b1"},
                                token="ctl"))
    assert result["ok"] and result["id"] == "b1" and len(result["object_ids"]) == 1, result
    (object_id,) = result["object_ids"]
    assert isinstance(result["frame_index"], int)
    later = asyncio.run(watch(server.url, STREAM, frames=15, timeout_s=60, token="ctl"))
    tracked = {d["track_id"] for m in later.frame_messages for d in m["detections"]}
    assert object_id in tracked  # carried by SAM 2 on the frames after
    removed = asyncio.run(prompt(server.url, STREAM, {"type": "remove", "object_id": object_id}, token="ctl"))
    assert removed["ok"] and removed["removed"] == [object_id]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"type": "point", "x": 5000, "y": 10}, 400, r"outside the 768x432 frame"),
    ({"type": "box", "xyxy": [1, 2, 3]}, 400, r"xyxy must be \[x1, y1, x2, y2\]"),
    ({"type": "remove", "object_id": 9999}, 400, r"no object 9999"),
    ({"type": "text", "text": "dog"}, 400, r"words need Florence-2"),
    ({"type": "wave"}, 400, r"type must be one of"),
])
def test_bad_prompts_get_a_400_that_names_the_problem(server: Server, body, status, message) -> None:
    got_status, reply = _post(server, {"stream": STREAM, **body})
    assert got_status == status and reply["ok"] is False
    assert re.search(message, reply["error"]), reply


def test_a_view_token_may_watch_but_not_prompt_or_publish(server: Server) -> None:
    status, reply = _post(server, {"stream": STREAM, "type": "point", "x": 10, "y": 10}, VIEW)
    assert status == 403 and "may watch but not prompt" in reply["error"]
    assert server.get("/whip/x", {**VIEW, "Content-Type": "application/sdp"}, b"v=0\nm=video", "POST")[0] == 403
    assert server.get("/streams", VIEW)[0] == 200
    assert server.get("/streams", {"Authorization": "Bearer nope"})[0] == 401
    watched = asyncio.run(watch(server.url, STREAM, frames=5, timeout_s=60, token="look"))
    assert watched.frames == 5 and watched.status_messages[0]["can_prompt"] is False


def test_prompts_are_rate_limited(server: Server) -> None:
    statuses = [_post(server, {"stream": STREAM, "type": "lasso"})[0] for _ in range(14)]  # refused at once
    assert 429 in statuses and statuses[0] == 400  # a burst of 10, then 5 a second
    assert server.get("/healthz", HEADERS)[0] == 200


async def _channel_session(server: Server, layers: str) -> dict:
    """A viewer that pings, then clicks over its data channel; returns what came back."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    channel = pc.createDataChannel("events")
    got: dict = {"frames": [], "pong": None, "result": None, "hello": None, "clock": None}
    done = asyncio.Event()

    @channel.on("open")
    def on_open() -> None:
        channel.send(json.dumps({"type": "ping", "t": 12.5}))

    @channel.on("message")
    def on_message(raw: str) -> None:
        message = json.loads(raw)
        kind = message["type"]
        if kind == "frame":
            got["frames"].append(message)
            if len(got["frames"]) == 5:
                shown = got["frames"][-1]
                channel.send(json.dumps({"type": "prompt", "prompt": {
                    "type": "point", "frame_index": shown["frame_index"], "x": 380, "y": 200, "label": 1,
                    "id": "c1"}}))
        elif kind in ("pong", "hello", "clock"):
            got[kind] = message
        elif kind == "prompt_result":
            got["result"] = message
            done.set()

    await pc.setLocalDescription(await pc.createOffer())
    import aiohttp

    async with aiohttp.ClientSession() as http, http.post(
            server.url + "/offer", headers=HEADERS,
            json={"sdp": pc.localDescription.sdp, "type": "offer", "stream": STREAM, "layers": layers}) as resp:
        answer = await resp.json()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    got["answer"] = answer

    drains: list[asyncio.Task] = []

    @pc.on("track")
    def on_track(track) -> None:
        async def drain() -> None:
            while True:
                await track.recv()

        drains.append(asyncio.ensure_future(drain()))

    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        for task in drains:
            task.cancel()
        await pc.close()
    return got


@pytest.mark.parametrize("layers", ["burned", "client"])
def test_prompts_and_pings_over_the_data_channel(server: Server, layers: str) -> None:
    got = asyncio.run(_channel_session(server, layers))
    assert got["answer"]["layers"] == layers and got["answer"]["can_prompt"] is True
    assert got["hello"]["layers"] == layers
    pong = got["pong"]
    assert pong["t"] == 12.5 and pong["server_ms"] > 0
    result = got["result"]
    assert result["ok"] and result["id"] == "c1" and len(result["object_ids"]) == 1, result
    assert result["frame_index"] == got["frames"][4]["frame_index"]  # applied on the frame the viewer named
    frame = got["frames"][-1]
    assert isinstance(frame["rtp_pts"], int) and 0 <= frame["rtp_pts"] < 2**32 and frame["decoded_at_ms"] > 0
    assert got["clock"] is not None or got["hello"]["rtp_origin"] is not None  # the viewer learns its RTP origin


def test_layers_option_is_checked(server: Server) -> None:
    status, text = server.get("/offer", {**HEADERS, "Content-Type": "application/json"},
                              json.dumps({"sdp": "v=0\nm=video", "type": "offer", "stream": STREAM,
                                          "layers": "hologram"}).encode(), "POST")
    assert status == 400 and "layers must be one of burned, client" in text


def test_the_documented_prompt_example_works(server: Server) -> None:
    from support import ROOT

    line = next(x for x in (ROOT / "docs" / "guides" / "interactive.md").read_text().splitlines()
                if "curl -s localhost:8080/prompt" in x)
    body = json.loads(line.split("-d '", 1)[1].rsplit("'", 1)[0])
    body["stream"] = STREAM  # the example's stream is "cam"
    body.pop("frame_index")  # and its frame one of that camera's
    status, reply = _post(server, body)
    assert status == 200 and reply["ok"] and reply["object_ids"], reply
    removed = _post(server, {"stream": STREAM, "type": "remove", "object_id": reply["object_ids"][0]})
    assert removed[1]["ok"]
