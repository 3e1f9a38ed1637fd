"""The viewer page in headless Chromium (Debian's package, driven by Playwright) against `streamvis serve`, over
HTTP and over HTTPS with a certificate from `streamvis cert`: video frames decode, data-channel messages arrive
and name what YOLOX sees, the page is keyboard operable."""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import MODELS, PERSON_VIDEO, need
from test_serve import STREAM, Server

from streamvis.testing.browser import CHROMIUM, chromium_pages


def _browser_or_skip():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is missing in CI: scripts/test.sh installs it")
        pytest.skip("needs playwright (pip install -e .[test])")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: scripts/test.sh installs Debian's chromium")
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")


@contextlib.contextmanager
def chromium_page(url: str, init_script: str | None = None) -> Iterator[Any]:
    """A headless Chromium page opened at `url` (closed afterwards); `init_script` runs before the page's own."""
    _browser_or_skip()
    with chromium_pages([url], init_script) as (page,):
        yield page


def _watch_page(url: str, keyboard: bool = True) -> dict:
    """Watch the stream the page picks: with `keyboard`, by Tab and Enter on Connect; else the page plays it
    on its own (one stream, or `?stream=`)."""
    with chromium_page(url) as page:
        page.wait_for_function("document.getElementById('stream').options.length > 0", timeout=20_000)
        if keyboard:
            page.keyboard.press("Tab")  # keyboard only: focus the stream picker, then the Connect button
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "connect"
            page.keyboard.press("Enter")
        page.wait_for_function("(window.streamvisFramesDecoded || 0) >= 60", timeout=60_000)
        page.wait_for_function("(window.streamvisMessages || 0) >= 60", timeout=30_000)  # the channel opens later
        page.wait_for_function("window.streamvisLastFrame && window.streamvisLastFrame.detections.some("
                               "d => d.class_name === 'person')", timeout=60_000)
        return page.evaluate("""() => ({frames: window.streamvisFramesDecoded,
            messages: window.streamvisMessages, objects: document.querySelectorAll('#objects li').length,
            state: document.getElementById('state').textContent,
            budget: document.getElementById('budget').textContent,
            timeline: window.streamvisTimeline || null,
            timeline_rows: document.querySelectorAll('#timeline tbody tr').length,
            live: document.getElementById('narration').getAttribute('aria-live')})""")


def test_viewer_in_chromium() -> None:
    """Played with the keyboard alone; the stats panel shows the latency budget and what it gives up (a budget
    this 10 fps video holds at full quality)."""
    need(PERSON_VIDEO)
    srv = Server("--source", str(PERSON_VIDEO), "--models-dir", str(MODELS), "--loop", "--latency-budget-ms", "2000")
    try:
        srv.wait_ready()
        seen = _watch_page(srv.url + "/?autoplay=0")
        icon = srv.get("/favicon.ico")
    finally:
        srv.stop()
    assert icon[0] == 200 and icon[1].startswith("<svg")
    assert seen["frames"] >= 60 and seen["messages"] >= 60 and seen["objects"] >= 1
    assert seen["live"] == "polite" and "connected" in seen["state"]
    assert seen["budget"] == "2000 ms: full quality"
    # every displayed frame's time, split where it went: each part measured, none negative past clock jitter, and
    # the parts add up to the whole (each a median, so loosely)
    timeline = seen["timeline"]
    assert timeline and timeline["samples"] >= 10 and seen["timeline_rows"] >= 1, timeline
    parts = timeline["p50"]
    assert set(parts) == {"pipeline", "to_encoder", "encode", "network", "display"}
    assert all(v is not None and v > -15 for v in parts.values()), parts
    assert abs(sum(parts.values()) - timeline["total_p50"]) <= max(30, 0.5 * timeline["total_p50"]), timeline


def test_viewer_in_chromium_over_https_with_token(tmp_path: Path) -> None:
    need(PERSON_VIDEO)
    exe = Path(sys.executable).parent / "streamvis"
    made = subprocess.run([str(exe), "cert", "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    srv = Server("--source", str(PERSON_VIDEO), "--models-dir", str(MODELS), "--loop", "--token", "t0k",
                 "--certfile", str(cert), "--keyfile", str(key), scheme="https")
    context = ssl.create_default_context(cafile=str(cert))  # the self-signed certificate verifies for 127.0.0.1
    try:
        srv.wait_ready({"Authorization": "Bearer t0k"}, context=context)
        seen = _watch_page(srv.url + f"/?token=t0k&stream={STREAM}", keyboard=False)  # plays with no click
    finally:
        srv.stop()
    assert seen["frames"] >= 60 and seen["objects"] >= 1


def test_viewer_publishes_its_camera_and_watches_it_annotated() -> None:
    """The page publishes Chromium's fake camera over WHIP and plays the annotated result back."""
    need(PERSON_VIDEO)
    srv = Server("--source", str(PERSON_VIDEO), "--models-dir", str(MODELS), "--loop")
    try:
        srv.wait_ready()
        with chromium_page(srv.url + "/?autoplay=0") as page:
            page.wait_for_function("document.getElementById('stream').options.length > 0", timeout=20_000)
            page.fill("#publish-name", "bad name!")  # the name's pattern is a valid expression: it does check
            assert page.evaluate("document.getElementById('publish-name').validity.patternMismatch")
            page.fill("#publish-name", "phone")
            assert not page.evaluate("document.getElementById('publish-name').validity.patternMismatch")
            page.focus("#publish")
            page.keyboard.press("Enter")
            page.wait_for_function("(window.streamvisFramesDecoded || 0) >= 30", timeout=60_000)
            watched = page.evaluate("window.streamvisLastFrame.stream")
            size = page.evaluate("[document.getElementById('video').videoWidth, "
                                 "document.getElementById('video').videoHeight]")
        streams = srv.get("/streams")[1]
    finally:
        srv.stop()
    assert watched == "phone" and '"phone"' in streams
    assert size[0] > 0 and size[1] > 0
