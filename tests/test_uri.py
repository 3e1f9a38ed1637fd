"""Source URIs are classified without I/O (table-driven)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamvis.sources import parse_source_uri


@pytest.mark.parametrize(
    ("uri", "kind", "target", "fmt", "live"),
    [
        ("synthetic:", "synthetic", "synthetic:", None, False),
        ("0", "device", "/dev/video0", "v4l2", True),
        ("/dev/video2", "device", "/dev/video2", "v4l2", True),
        ("rtsp://127.0.0.1:8554/cam", "stream", "rtsp://127.0.0.1:8554/cam", None, True),
        ("rtmp://host/live/key", "stream", "rtmp://host/live/key", None, True),
        ("http://host/live.m3u8", "stream", "http://host/live.m3u8", None, True),
        ("https://host/clip.mp4", "stream", "https://host/clip.mp4", None, False),
        ("udp://@:1234", "stream", "udp://@:1234", None, True),
        ("video.mp4", "file", "video.mp4", None, False),
        ("file:///data/video.mkv", "file", "/data/video.mkv", None, False),
        ("frames/*.jpg", "images", "frames/*.jpg", None, False),
        ("photo.png", "images", "photo.png", None, False),
    ],
)
def test_parse_source_uri(uri: str, kind: str, target: str, fmt: str | None, live: bool) -> None:
    spec = parse_source_uri(uri)
    assert (spec.kind, spec.target, spec.format, spec.live) == (kind, target, fmt, live)


def test_device_options_and_synthetic_parameters() -> None:
    spec = parse_source_uri("/dev/video0?video_size=1280x720&framerate=30&input_format=mjpeg")
    assert spec.target == "/dev/video0"
    assert spec.options == {"video_size": "1280x720", "framerate": "30", "input_format": "mjpeg"}
    assert parse_source_uri("synthetic:?w=320&frames=5").options == {"w": "320", "frames": "5"}


def test_folder_is_an_image_sequence(tmp_path: Path) -> None:
    spec = parse_source_uri(str(tmp_path))
    assert spec.kind == "images" and spec.source_id == tmp_path.name
