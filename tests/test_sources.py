"""Sources with real media: files (PyAV clips and ../shared), images, synthetic, live HTTP with reconnects."""

from __future__ import annotations

import http.server
import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from support import make_clip

from streamvis.config import SourceConfig
from streamvis.errors import SourceError, SourceNotFoundError
from streamvis.sources import open_source
from streamvis.sources.synthetic import SyntheticSource


def test_file_frames_carry_index_pts_and_source_id(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=25, fps=10)
    source = open_source(str(clip))
    frames = list(source)
    assert [f.index for f in frames] == list(range(25))
    np.testing.assert_allclose([f.pts for f in frames], np.arange(25) / 10, atol=1e-6)
    assert {f.source_id for f in frames} == {"clip.mp4"}
    assert frames[0].image.shape == (96, 160, 3) and frames[0].image.dtype == np.uint8
    assert source.fps == 10 and source.report.incomplete is None and source.report.frames == 25


def test_real_video_decodes_every_frame(person_video: Path) -> None:
    source = open_source(str(person_video))
    count = sum(1 for _ in source)
    assert count == 1394 == source.expected_frames
    assert source.report.decode_errors == 0 and source.report.incomplete is None


def test_truncated_file_keeps_frames_before_the_cut(person_video: Path, tmp_path: Path) -> None:
    data = person_video.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    source = open_source(str(half))
    count = sum(1 for _ in source)
    assert 600 < count < 1394
    assert source.report.incomplete is not None and f"decoded {count} of the 1394" in source.report.incomplete


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [(lambda d: d / "missing.mp4", SourceNotFoundError, "input not found"),
     (lambda d: (d / "text.mp4").write_text("just text\n" * 50) and d / "text.mp4", SourceError,
      "not a media file FFmpeg can read"),
     (lambda d: Path("/dev/video97"), SourceNotFoundError, "camera not found: /dev/video97"),
     (lambda d: d / "empty_dir", SourceError, "no images")],
)
def test_bad_inputs(tmp_path: Path, make, error, message) -> None:
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(error, match=message):
        open_source(str(make(tmp_path)))


def test_rtsp_to_a_closed_port_fails_fast() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(SourceError, match=f"cannot connect to rtsp://127.0.0.1:{port}/cam: connection refused"):
        open_source(f"rtsp://127.0.0.1:{port}/cam", SourceConfig(open_timeout_s=3))
    assert time.monotonic() - start < 3


def test_image_folder_and_glob(tmp_path: Path) -> None:
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"f{i:02d}.png"), np.full((40, 60, 3), i * 50, np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_source(str(tmp_path), SourceConfig(image_fps=5))
    frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2, 3]  # broken.jpg sorts first and is skipped
    np.testing.assert_allclose([f.pts for f in frames], [0, 0.2, 0.4, 0.6])
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 50, 100, 150]
    assert source.report.decode_errors == 1
    assert len(list(open_source(str(tmp_path / "f0[12].png")))) == 2


def test_synthetic_boxes_are_exact() -> None:
    source = open_source("synthetic:?w=320&h=180&fps=15&frames=40&objects=3&seed=4")
    assert isinstance(source, SyntheticSource)
    frames = list(source)
    assert len(frames) == 40 and frames[-1].pts == pytest.approx(39 / 15)
    for frame in frames[::7]:
        boxes = source.boxes_at(frame.index)
        assert len(boxes) == 3
        for (x1, y1, x2, y2), name in zip(boxes.xyxy.astype(int), boxes.data["class_name"], strict=True):
            assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 180
            cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
            assert not np.array_equal(frame.image[cy, cx], source._background[cy, cx]), name  # drawn there
    moved = np.abs(source.boxes_at(10).xyxy - source.boxes_at(0).xyxy).max()
    assert moved > 5


def test_synthetic_object_enters_later_and_bad_parameters() -> None:
    source = open_source("synthetic:?objects=3&enter=10&frames=20")
    assert isinstance(source, SyntheticSource)
    assert len(source.boxes_at(9)) == 2 and len(source.boxes_at(10)) == 3
    with pytest.raises(SourceError, match="synthetic source: w must be an integer, got 'wide'"):
        open_source("synthetic:?w=wide")


def test_synthetic_realtime_is_paced() -> None:
    source = open_source("synthetic:?fps=20&frames=10&realtime=1")
    assert source.live
    start = time.monotonic()
    assert len(list(source)) == 10
    assert time.monotonic() - start >= 9 / 20 - 0.02


# -- a live stream over HTTP that drops: the source reconnects with backoff and keeps going ---------------

@pytest.fixture
def ts_stream(tmp_path: Path) -> Iterator[tuple[str, dict[str, object]]]:
    """`/live` serves an MPEG-TS clip; the first connection is cut after a third of it."""
    clip = tmp_path / "clip.ts"
    with av.open(str(clip), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for i in range(50):
            image = np.full((96, 128, 3), (i * 5) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    payload = clip.read_bytes()
    state: dict[str, object] = {"requests": 0, "up": True}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state["requests"] = int(state["requests"]) + 1  # type: ignore[call-overload]
            if not state["up"]:
                self.send_error(503)
                return
            first = state["requests"] == 1
            body = payload[: len(payload) // 3] if first else payload
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/live", state
    server.shutdown()


def test_live_stream_reconnects_after_a_drop(ts_stream, caplog) -> None:
    url, state = ts_stream
    caplog.set_level(logging.WARNING, logger="streamvis")
    config = SourceConfig(reconnect_attempts=2, reconnect_initial_delay_s=0.05, open_timeout_s=5,
                          stall_timeout_s=5)
    source = open_source(url, config)
    assert source.live
    frames = []
    with pytest.raises(SourceError, match="2 reconnect attempts failed"):
        for frame in source:
            frames.append(frame)
            if int(state["requests"]) >= 2 and len(frames) > 30:  # type: ignore[call-overload]
                state["up"] = False  # the server goes away for good: attempts run out
    assert source.report.reconnects >= 1
    assert len(frames) > 30  # frames from the second connection arrived
    assert "stream dropped" in caplog.text and "reconnecting in" in caplog.text
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(b.pts > a.pts for a, b in itertools.pairwise(frames)), "pts must keep increasing"


def test_live_stream_gives_up_after_the_attempts(ts_stream) -> None:
    url, state = ts_stream
    config = SourceConfig(reconnect_attempts=2, reconnect_initial_delay_s=0.05, open_timeout_s=5)
    source = open_source(url, config)
    state["up"] = False
    with pytest.raises(SourceError, match=r"stream dropped .* 2 reconnect attempts failed"):
        for _ in source:
            pass
