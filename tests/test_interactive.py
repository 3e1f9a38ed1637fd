"""The viewer in headless Chromium, pointing: a click on the video adds an object prompted on the frame that was on
screen, a drag adds one from a box, words reach the grounding model; with the layers drawn in the browser, the
canvas shows the mask of the message whose frame is on screen (read back pixel by pixel against its RLE);
glass-to-glass latency is measured and shown. Server: the shared person video, YOLOX boxes, a tiny SAM 2.1, a
tiny Florence-2 as the narrator (for grounding)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import numpy as np
import pytest
from support import MODELS, PERSON_VIDEO, TinyModels, need
from test_browser import chromium_page
from test_serve import Server

from streamvis.serialize import rle_to_masks


@pytest.fixture(scope="module")
def server(tiny_models: TinyModels) -> Iterator[Server]:
    need(PERSON_VIDEO)
    need(MODELS / "yolox-nano")
    srv = Server("--source", str(PERSON_VIDEO), "--models-dir", str(MODELS), "--loop",
                 "--set", "segmenter.type=sam2", "--set", f"segmenter.model={tiny_models.sam2}",
                 "--set", "detector.every_n_frames=10", "--set", "narrator.type=florence2",
                 "--set", f"narrator.model={tiny_models.florence}", "--set", "narrator.period_s=0",
                 env=tiny_models.offline_env)
    try:
        srv.wait_ready(timeout=120)
        yield srv
    finally:
        srv.log = srv.stop()


def _playing(page, frames: int = 20) -> None:
    page.wait_for_function(f"(window.streamvisFramesDecoded || 0) >= {frames}", timeout=90_000)
    page.wait_for_function("window.streamvisDisplayed && window.streamvisDisplayed.synced", timeout=30_000)


def _result(page, count: int) -> dict:
    page.wait_for_function(f"window.streamvisPromptResults.length >= {count}", timeout=60_000)
    return page.evaluate(f"window.streamvisPromptResults[{count - 1}]")


def _shown_then(page, action: str) -> int:
    """The frame on screen, read in the same task as the pointer press that follows (no frame can slip in)."""
    return page.evaluate(f"""() => {{
        const shown = window.streamvisDisplayed.frame_index;
        {action}
        return shown;
    }}""")


def _press(x: float, y: float, to: tuple[float, float] | None = None) -> str:
    """JS that presses (and releases, after moving to `to` for a drag) the primary button on the stage."""
    end = to or (x, y)
    return f"""
        const stage = document.getElementById('stage');
        const at = (type, px, py) => stage.dispatchEvent(new PointerEvent(type, {{bubbles: true, clientX: px,
            clientY: py, button: 0, pointerId: 1, isPrimary: true}}));
        at('pointerdown', {x}, {y}); at('pointermove', {end[0]}, {end[1]}); at('pointerup', {end[0]}, {end[1]});"""


def test_a_click_and_a_drag_add_objects_on_the_frame_on_screen(server: Server) -> None:
    with chromium_page(server.url + "/") as page:
        _playing(page)
        box = page.locator("#video").bounding_box()
        cx, cy = box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5
        shown = _shown_then(page, _press(cx, cy))
        clicked = _result(page, 1)
        assert clicked["ok"], clicked
        assert clicked["frame_index"] == shown and clicked["note"] == ""  # prompted on the frame shown
        (clicked_id,) = clicked["object_ids"]
        shown = _shown_then(page, _press(box["x"] + 40, box["y"] + 30, (box["x"] + 200, box["y"] + 220)))
        boxed = _result(page, 2)
        assert boxed["ok"] and boxed["frame_index"] == shown, boxed
        (boxed_id,) = boxed["object_ids"]
        page.wait_for_function(f"""() => {{
            const ids = (window.streamvisLastFrame.detections || []).map(d => d.track_id);
            return ids.includes({clicked_id}) && ids.includes({boxed_id});
        }}""", timeout=30_000)  # both carried by SAM 2 on the frames after
        status = page.text_content("#prompt-status")
        assert f"#{boxed_id}" in status


def test_words_reach_the_grounding_model(server: Server) -> None:
    with chromium_page(server.url + "/") as page:
        _playing(page, 5)
        page.fill("#find-text", "red car")
        page.press("#find-text", "Enter")
        found = _result(page, 1)
    assert found["ok"], found
    assert found["object_ids"] or "nothing matched 'red car'" in found["note"]
    assert isinstance(found["frame_index"], int)


CAPTURE = """() => {
    const canvas = document.getElementById('layers');
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const alpha = new Uint8Array(pixels.length / 4);
    for (let i = 0; i < alpha.length; i += 1) alpha[i] = pixels[i * 4 + 3];
    let text = '';
    for (let i = 0; i < alpha.length; i += 8192) text += String.fromCharCode(...alpha.subarray(i, i + 8192));
    return {message: window.streamvisOverlay, displayed: window.streamvisDisplayed, alpha: btoa(text),
            size: [canvas.width, canvas.height], hidden: canvas.hidden,
            video: [document.getElementById('video').videoWidth, document.getElementById('video').videoHeight]};
}"""


def _next_drawn(page) -> dict:
    """The canvas and the message it was drawn from, once a frame after the one on the canvas now is drawn (read
    in one task): what the page's controls were set to before this call holds for it."""
    now = page.evaluate("window.streamvisOverlay ? window.streamvisOverlay.frame_index : -1")
    page.wait_for_function(f"""() => window.streamvisOverlay && window.streamvisDisplayed.synced
        && window.streamvisOverlay.frame_index > {now}
        && window.streamvisOverlay.detections.some(d => d.mask)""", timeout=60_000)
    return page.evaluate(CAPTURE)


def _painted_as_the_rle_says(drawn: dict, hidden: set[str]) -> None:
    message = drawn["message"]
    assert not drawn["hidden"] and drawn["displayed"]["frame_index"] == message["frame_index"]
    width, height = drawn["size"]
    assert (width, height) == tuple(message["resolution_wh"]) == tuple(drawn["video"])
    painted = np.frombuffer(base64.b64decode(drawn["alpha"]), np.uint8).reshape(height, width) > 0
    shown = [d for d in message["detections"] if "mask" in d and d["class_name"] not in hidden]
    expected = rle_to_masks([d["mask"] for d in shown]).any(axis=0) if shown else np.zeros_like(painted)
    assert (painted != expected).sum() == 0  # every pixel as the RLE says


def test_layers_drawn_in_the_browser_match_the_message_on_screen(server: Server) -> None:
    with chromium_page(server.url + "/?layers=client") as page:
        _playing(page)
        page.uncheck("#layer-boxes")
        page.uncheck("#layer-labels")
        drawn = _next_drawn(page)
        _painted_as_the_rle_says(drawn, set())
        assert rle_to_masks([d["mask"] for d in drawn["message"]["detections"]]).any()
        name = drawn["message"]["detections"][0]["class_name"]
        classes = page.evaluate("[...document.querySelectorAll('#class-layers input')].map(i => i.dataset.class)")
        assert name in classes
        page.uncheck(f"#class-layers input[data-class='{name}']")  # a class switched off is not drawn
        _painted_as_the_rle_says(_next_drawn(page), {name})


def test_glass_to_glass_latency_is_measured_and_shown(server: Server) -> None:
    with chromium_page(server.url + "/") as page:
        _playing(page, 30)
        page.wait_for_function("window.streamvisGlassToGlass && window.streamvisGlassToGlass.samples >= 20",
                               timeout=60_000)
        g2g = page.evaluate("window.streamvisGlassToGlass")
        shown = page.text_content("#glass")
    assert 0 < g2g["p50"] <= g2g["p95"] < 5000
    p50, p95 = (int(v) for v in shown.removesuffix(" ms").split(" / "))
    assert p50 <= p95 and p95 > 0  # the page shows what it measured (updated each second)
