"""Real RTSP cameras: GStreamer's rtsp-server on 127.0.0.1 (`rtsp_server.py`), killed, stalled and restarted.

A killed camera reads as a clean end of stream in PyAV; for a live source that is a drop: the source reconnects
with backoff, pts keep increasing, and viewers of `streamvis serve` keep watching the same stream.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from support import CAR_VIDEO, MODELS, RTSP_SERVER_SCRIPT, SYSTEM_PYTHON, free_port, need, need_rtsp_server, rtsp_camera

from streamvis.config import SourceConfig
from streamvis.errors import SourceError
from streamvis.frame import Frame
from streamvis.sources import open_source, parse_source_uri
from streamvis.sources.av_source import open_options

SERVER_SCRIPT = RTSP_SERVER_SCRIPT
FPS = 15
need_rtsp_server()


class Camera:
    """The RTSP server as a process on a fixed port, so that it can be killed, stopped and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port),
                                      "--fps", str(FPS)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ready"), line + self.proc.stdout.read()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def pause(self) -> None:  # a hung camera: the connection stays open, nothing more is sent
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.kill()


@pytest.fixture
def camera() -> Iterator[Camera]:
    cam = Camera()
    cam.start()
    try:
        yield cam
    finally:
        cam.stop()


class Reader:
    """Reads a source in a thread, keeping every frame with the monotonic time it arrived."""

    def __init__(self, uri: str, config: SourceConfig) -> None:
        self.source = open_source(uri, config)
        self.frames: list[tuple[float, Frame]] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for frame in self.source:
                self.frames.append((time.monotonic(), frame))
        except BaseException as exc:
            self.error = exc

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.frames) < count and time.monotonic() < deadline and self.error is None:
            time.sleep(0.05)
        assert self.error is None, self.error
        assert len(self.frames) >= count, f"{len(self.frames)} frames of {count} in {timeout_s} s"

    def close(self) -> list[Frame]:
        self.source.close()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()
        return [frame for _, frame in self.frames]


def _increasing(frames: list[Frame]) -> bool:
    return all(b.pts > a.pts for a, b in itertools.pairwise(frames))


FAST_RECONNECT = dict(reconnect_attempts=30, reconnect_initial_delay_s=0.2, reconnect_max_delay_s=1.0,
                      open_timeout_s=3.0, stall_timeout_s=2.0)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_real_rtsp_camera_over_tcp_and_udp(camera: Camera, transport: str) -> None:
    reader = Reader(camera.url, SourceConfig(rtsp_transport=transport))
    reader.wait_for(45, timeout_s=20)
    frames = reader.close()
    assert reader.source.live
    assert frames[0].resolution_wh == (320, 240)
    assert _increasing(frames)
    assert [f.index for f in frames] == list(range(len(frames)))
    steps = [b.pts - a.pts for a, b in itertools.pairwise(frames[5:])]
    assert sorted(steps)[len(steps) // 2] == pytest.approx(1 / FPS, abs=0.01)  # the camera's own timing


def test_a_camera_gives_its_first_frames_as_they_come_not_after_seconds_of_probing() -> None:
    # FFmpeg's own probe (up to 5 s) held each connect back 2-3 s, then gave those frames at once, and a live
    # stream keeps only the newest of them; an RTSP session description already names the streams, so half a
    # second of probing finds them (the copied recording's audio too: tests/test_copy_record.py)
    assert open_options(parse_source_uri("rtsp://camera/stream"), SourceConfig())["analyzeduration"] == "500000"
    with rtsp_camera("car", CAR_VIDEO, audio=True) as url:
        for probe_s, most_at_once in ((0.5, 12), (5.0, None)):
            source = open_source(url, SourceConfig(rtsp_probe_s=probe_s))
            arrivals = [time.monotonic() for _ in itertools.islice(source, 40)]
            source.close()
            at_once = sum(1 for a, b in itertools.pairwise(arrivals) if b - a < 0.02)
            if most_at_once is not None:
                assert at_once <= most_at_once  # the 8 frames the clock is chosen from, and no more
            else:
                assert at_once > 20  # the car video's 12.5 fps: 27 frames at once after FFmpeg's default probe


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_killed_camera_resumes_within_the_backoff(camera: Camera, transport: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    reader = Reader(camera.url, SourceConfig(rtsp_transport=transport, **FAST_RECONNECT))
    reader.wait_for(20, timeout_s=20)
    camera.kill()
    killed_at, before = time.monotonic(), len(reader.frames)
    time.sleep(1.5)
    camera.start()
    restarted_at = time.monotonic()
    reader.wait_for(before + 30, timeout_s=20)
    resumed = next(i for i, (t, _) in enumerate(reader.frames) if t > restarted_at)
    first_after = reader.frames[resumed][0]
    frames = reader.close()
    assert reader.source.report.reconnects >= 1
    # back within the longest backoff step plus a connection (the stall timeout bounds the UDP case)
    assert first_after - restarted_at < FAST_RECONNECT["reconnect_max_delay_s"] + FAST_RECONNECT["stall_timeout_s"] + 3
    assert _increasing(frames), "pts keep increasing across the reconnect"
    assert [f.index for f in frames] == list(range(len(frames)))
    # the new connection continues one frame step after the last frame of the old one
    assert frames[resumed].pts - frames[resumed - 1].pts == pytest.approx(1 / FPS, abs=1e-3)
    assert "stream dropped" in caplog.text and killed_at < restarted_at


def test_a_stalled_camera_is_detected_within_the_stall_timeout(camera: Camera,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    reader = Reader(camera.url, SourceConfig(**FAST_RECONNECT))
    reader.wait_for(20, timeout_s=20)
    camera.pause()
    paused_at, before = time.monotonic(), len(reader.frames)
    deadline = paused_at + FAST_RECONNECT["stall_timeout_s"] + 4
    while "stream dropped" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    detected_after = time.monotonic() - paused_at
    assert "stream dropped" in caplog.text, "a silent camera must read as a drop"
    assert detected_after < FAST_RECONNECT["stall_timeout_s"] + 3
    camera.resume()
    reader.wait_for(before + 20, timeout_s=30)
    frames = reader.close()
    assert reader.source.report.reconnects >= 1
    assert _increasing(frames)


def test_a_server_that_accepts_but_never_answers_fails_within_the_open_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # the kernel accepts connections; nothing ever answers
        url = f"rtsp://127.0.0.1:{listener.getsockname()[1]}/cam"
        started = time.monotonic()
        with pytest.raises(SourceError, match="no answer before the timeout"):
            open_source(url, SourceConfig(open_timeout_s=2.0))
        assert time.monotonic() - started < 2.0 + 3


def test_viewers_keep_watching_while_the_camera_restarts(camera: Camera) -> None:
    """`streamvis serve --source rtsp://...`: a WebRTC viewer keeps getting frames of the same stream, with
    increasing pts, across a camera that is killed and started again."""
    from streamvis_client import watch
    from test_serve import Server

    from streamvis.server.aiortc_compat import use_loopback_ice

    need(MODELS / "yolox-nano")
    use_loopback_ice(only=True)
    settings = [f"source.{key}={value}" for key, value in FAST_RECONNECT.items()]
    server = Server("--source", camera.url, "--models-dir", str(MODELS),
                    *itertools.chain.from_iterable(("--set", s) for s in settings))
    try:
        server.wait_ready(stream="cam")
        result: dict[str, object] = {}
        viewer = threading.Thread(target=lambda: result.setdefault(
            "report", asyncio.run(watch(server.url, "cam", frames=100_000, timeout_s=14))), daemon=True)
        viewer.start()
        time.sleep(4)
        camera.kill()
        time.sleep(1.5)
        camera.start()
        restarted = time.monotonic()
        viewer.join(timeout=40)
        assert not viewer.is_alive()
        report = result["report"]
        messages = report.frame_messages  # type: ignore[attr-defined]
        pts = [m["pts"] for m in messages]
        assert all(b > a for a, b in itertools.pairwise(pts))
        ended = time.monotonic()
        # frames from before the kill and from after the restart reached the same viewer
        assert len(messages) > 30 and ended - restarted > 3
        largest_gap = max(b - a for a, b in itertools.pairwise(pts))
        assert pts[-1] - pts[0] > 8, "the stream went on after the restart"
        assert largest_gap < 5
    finally:
        server.stop()

