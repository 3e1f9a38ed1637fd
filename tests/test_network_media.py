"""Finite or live, learnt from the stream: a real HTTP server on 127.0.0.1 (aiohttp) serves a recorded video as an
HLS VOD playlist and as an MP4 (range requests), and a live camera's sliding HLS playlist. A recording ends like a
file (every frame, no reconnect, a frame count for the progress bar's ETA); a live playlist is live; `source.live`
overrides what was learnt."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest
from aiohttp import web
from support import run_cli

from streamvis.config import SourceConfig
from streamvis.sources import open_source

FRAMES, FPS = 50, 10  # a 5 s recording in 1 s segments


def _record(path: Path, container_format: str | None = None, options: dict[str, str] | None = None,
            noise: bool = False) -> None:
    """50 frames; `noise`: of random pixels, so that the file is large (about 1 MB: FFmpeg seeks over its data)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=container_format, options=options or {}) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.options = {"g": str(FPS), "preset": "ultrafast"}
        for i in range(FRAMES):
            image = rng.integers(0, 255, (96, 128, 3), np.uint8) if noise else np.full((96, 128, 3), (i * 5) % 255,
                                                                                       np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@dataclass
class MediaServer:
    url: str
    ranges: list[str] = field(default_factory=list)  # Range headers the MP4 was asked for


def _live_playlist(segments: list[str], started: float) -> str:
    """A camera's sliding window: the newest 3 segments (1 s each), the window moving on every second; no
    #EXT-X-ENDLIST, so a player keeps reloading it."""
    sequence = int(time.monotonic() - started)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", f"#EXT-X-MEDIA-SEQUENCE:{sequence}"]
    for n in range(sequence, sequence + 3):
        lines += ["#EXTINF:1.0,", f"/vod/{segments[n % len(segments)]}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def media_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaServer]:
    root = tmp_path_factory.mktemp("www")
    (root / "vod").mkdir()
    _record(root / "vod" / "index.m3u8", "hls", {"hls_time": "1", "hls_playlist_type": "vod",
                                                  "hls_segment_filename": str(root / "vod" / "seg%d.ts")})
    _record(root / "clip.mp4", noise=True)  # its index (moov) at the end: FFmpeg fetches it with a range request
    segments = sorted((p.name for p in (root / "vod").glob("seg*.ts")), key=lambda n: int(n[3:-3]))
    started = time.monotonic()
    server = MediaServer("")

    async def clip(request: web.Request) -> web.StreamResponse:
        server.ranges.append(request.headers.get("Range", ""))
        return web.FileResponse(root / "clip.mp4")

    async def live(request: web.Request) -> web.Response:
        return web.Response(text=_live_playlist(segments, started), content_type="application/vnd.apple.mpegurl")

    app = web.Application()
    app.router.add_get("/clip.mp4", clip)
    app.router.add_get("/live/index.m3u8", live)
    app.router.add_static("/vod", root / "vod")
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{port}"
    yield server
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


FAST = SourceConfig(open_timeout_s=5, stall_timeout_s=5, reconnect_attempts=1, reconnect_initial_delay_s=0.05)


def test_an_hls_vod_playlist_is_finite_and_ends_like_a_file(media_server: MediaServer,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="streamvis")
    source = open_source(f"{media_server.url}/vod/index.m3u8", FAST)
    assert not source.live
    assert source.expected_frames == FRAMES  # from the playlist's duration: the progress bar has an ETA
    frames = list(source)  # ends by itself
    assert [f.index for f in frames] == list(range(FRAMES))
    assert source.report.reconnects == 0 and source.report.incomplete is None
    said = [r.getMessage() for r in caplog.records if "finite" in r.getMessage()]
    assert said == [f"{media_server.url}/vod/index.m3u8: finite: read to its end, no reconnect "
                    "(an HLS VOD playlist of 5.0 s)"]  # said once


def test_an_mp4_over_http_is_read_with_range_requests_to_its_end(media_server: MediaServer) -> None:
    media_server.ranges.clear()
    source = open_source(f"{media_server.url}/clip.mp4", FAST)
    assert not source.live
    assert sum(1 for _ in source) == FRAMES == source.expected_frames
    assert any(r.startswith("bytes=") and not r.startswith("bytes=0-") for r in media_server.ranges), \
        media_server.ranges  # the index at the end was fetched by a range request


def test_a_sliding_playlist_is_live(media_server: MediaServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="streamvis")
    source = open_source(f"{media_server.url}/live/index.m3u8", FAST)
    assert source.live
    assert "live: reconnects after a drop (a live HLS playlist (no #EXT-X-ENDLIST))" in caplog.text
    frames = []
    for frame in source:
        frames.append(frame)
        if len(frames) == 40:  # more than the 3 segments of the first playlist: it was reloaded as it slid
            source.close()
    assert len(frames) == 40


def test_the_setting_overrides_what_the_stream_says(media_server: MediaServer,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="streamvis")
    source = open_source(f"{media_server.url}/vod/index.m3u8", FAST.model_copy(update={"live": True}))
    assert source.live and source.expected_frames is None
    assert "(source.live: true)" in caplog.text
    source.close()


def test_process_reads_a_network_recording_to_its_end(media_server: MediaServer, tmp_path: Path,
                                                      models_dir: Path) -> None:
    events = tmp_path / "vod.jsonl"
    result = run_cli("process", f"{media_server.url}/vod/index.m3u8", "-o", str(tmp_path / "vod.mp4"), "--events",
                     str(events), "--models-dir", str(models_dir), timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    assert [row["frame_index"] for row in rows] == list(range(FRAMES))
    assert "reconnect" not in result.stderr.replace("no reconnect", "")
