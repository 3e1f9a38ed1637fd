"""The server's hub owns every task it starts (a failure is logged, a finished task let go) and refuses requests
one way: a `Refused` with its HTTP status, answered as JSON by one middleware, also from deep inside the hub."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streamvis.live.budget import BudgetPlan
from streamvis.server.hub import ServerSettings, StreamHub
from streamvis.server.routes import build_app


def test_a_failing_task_is_logged_and_let_go(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="streamvis")

    async def run() -> StreamHub:
        hub = StreamHub({}, ServerSettings())

        async def lost() -> None:
            raise RuntimeError("the peer vanished")

        async def fine() -> None:
            await asyncio.sleep(0)

        hub.spawn(lost(), "viewer abc: reaper")
        hub.spawn(fine(), "viewer def: prompt")
        assert len(hub._tasks) == 2  # kept while they run (a bare create_task may be collected mid-flight)
        await asyncio.sleep(0.05)
        return hub

    hub = asyncio.run(run())
    assert not hub._tasks
    assert "viewer abc: reaper failed: the peer vanished" in caplog.text
    assert "viewer def" not in caplog.text


@pytest.mark.parametrize(("method", "path", "body", "status", "error"), [
    ("POST", "/whip/cam", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", 501, "this server takes no WHIP publishers"),
    ("POST", "/whep/nowhere", "v=0\r\nm=video 9\r\n", 404, "no stream 'nowhere'"),
    ("POST", "/prompt", "[1, 2]", 400, "expected a JSON body"),
    ("DELETE", "/whep/x/y", "", 404, "no such WHEP session"),
])
def test_refusals_are_json_with_their_status(method: str, path: str, body: str, status: int, error: str) -> None:
    async def run() -> tuple[int, dict[str, str]]:
        app = build_app({}, ServerSettings())
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            content_type = "application/sdp" if path.startswith("/wh") else "application/json"
            response = await client.request(method, path, data=body, headers={"Content-Type": content_type})
            return response.status, await response.json()

    got_status, answer = asyncio.run(run())
    assert got_status == status and error in answer["error"], answer


class _Output:
    """A stand-in video output: what the fanout pushes to it, and whether a viewer takes it."""

    codec = "h264"

    def __init__(self, clean: bool, active: bool) -> None:
        self.clean, self.active, self.pushed = clean, active, []

    def push(self, result) -> None:
        self.pushed.append(result)


def test_only_a_watched_annotated_output_asks_for_frames_to_be_drawn() -> None:
    import numpy as np

    from streamvis.frame import Frame, Result
    from streamvis.serialize import empty_detections
    from streamvis.server.hub import ViewerFanout

    fanout = ViewerFanout(StreamHub({}, ServerSettings()), stream=SimpleNamespace(plan=BudgetPlan()))  # type: ignore[arg-type]
    burned, clean = _Output(clean=False, active=False), _Output(clean=True, active=True)
    fanout.outputs = (burned, clean)  # type: ignore[assignment]
    assert not fanout.wants_annotated()  # the one viewer draws the layers itself
    burned.active = True
    assert fanout.wants_annotated()
    image = np.zeros((8, 8, 3), np.uint8)
    undrawn = Result(Frame(image, 0, 0.0, "t"), empty_detections(), False, annotated=None)
    fanout.write(undrawn)  # the frame before the annotated output's first viewer: not drawn yet
    assert burned.pushed == [] and clean.pushed == [undrawn]


def test_a_latency_budget_sends_viewers_fewer_and_smaller_frames() -> None:
    """The budget's last steps: every 2nd frame to viewers, the annotated video at half size (even sizes); the clean
    video (layers drawn in the browser, in the frame's pixels) keeps its size."""
    import numpy as np

    from streamvis.frame import Frame, Result
    from streamvis.serialize import empty_detections
    from streamvis.server.hub import ViewerFanout

    plan = BudgetPlan(wait_for_detector=False, output_scale=0.5, output_every=2)
    fanout = ViewerFanout(StreamHub({}, ServerSettings()), stream=SimpleNamespace(plan=plan))  # type: ignore[arg-type]
    burned, clean = _Output(clean=False, active=True), _Output(clean=True, active=True)
    fanout.outputs = (burned, clean)  # type: ignore[assignment]
    image = np.zeros((90, 158, 3), np.uint8)
    for index in range(4):
        fanout.write(Result(Frame(image, index, index / 30, "t"), empty_detections(), False, annotated=image))
    assert [r.frame.index for r in burned.pushed] == [0, 2] == [r.frame.index for r in clean.pushed]
    assert burned.pushed[0].annotated.shape == (44, 80, 3)  # 45 x 79, to even sizes
    assert clean.pushed[0].annotated.shape == (90, 158, 3)
