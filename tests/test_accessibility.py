"""The viewer audited as assistive technology meets it: axe-core (the engine behind Lighthouse's accessibility
audit, from npm) in headless Chromium over the viewer's states (idle, playing, narration spoken, layers drawn in
the browser, an error shown) with the WCAG 2.x A and AA rules: no serious or critical violation. Every control is
reached with the Tab key alone, and none is clipped or overlaps another at 1280x720, 1920x1080 and a 390x844 phone
screen."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from support import MODELS, PERSON_VIDEO, ROOT, need
from test_browser import _browser_or_skip
from test_serve import Server

from streamvis.testing.browser import chromium_pages

AXE = ROOT / "tests" / "clients" / "node_modules" / "axe-core" / "axe.min.js"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
CONTROLS = "button:not([hidden]), select, input, summary, video[tabindex]"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    need(PERSON_VIDEO)
    srv = Server("--source", str(PERSON_VIDEO), "--models-dir", str(MODELS), "--loop", "--latency-budget-ms", "2000")
    srv.wait_ready()
    yield srv
    srv.stop()


@contextlib.contextmanager
def _page(url: str, width: int = 1280, height: int = 720) -> Iterator[Any]:
    _browser_or_skip()
    if not AXE.is_file():
        pytest.fail("axe-core is missing: scripts/test.sh installs it (npm ci in tests/clients)")
    with chromium_pages([url]) as (page,):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_function("document.getElementById('stream').options.length > 0", timeout=20_000)
        yield page


def _violations(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async (tags) => {
        const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}});
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                             nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
    }""", WCAG)
    return [v for v in found if v["impact"] in ("serious", "critical")]


def _playing(page: Any) -> None:
    page.click("#connect")
    page.wait_for_function("(window.streamvisFramesDecoded || 0) >= 10", timeout=60_000)
    page.wait_for_function("(window.streamvisMessages || 0) >= 20", timeout=30_000)


def test_every_state_of_the_viewer_passes_the_wcag_audit(server: Server) -> None:
    seen: dict[str, list[dict[str, Any]]] = {}
    with _page(server.url + "/?autoplay=0") as page:
        seen["idle"] = _violations(page)
        _playing(page)
        seen["playing"] = _violations(page)
        page.evaluate("(m) => window.streamvisReceive(m)", {
            "type": "narration", "text": "Careful: car approaching on the right.", "urgent": True,
            "texts": {level: "Careful: car approaching on the right." for level in ("brief", "normal", "detailed")}})
        page.click("#timeline-panel summary")  # the frame timeline open
        seen["narration and timeline"] = _violations(page)
        page.check("#client-layers")  # the layers drawn here, with a checkbox per class
        page.wait_for_function("document.querySelectorAll('#class-layers input').length > 0", timeout=30_000)
        seen["layers in the browser"] = _violations(page)
    with _page(server.url + "/?stream=nowhere") as page:  # an error shown
        page.wait_for_function("document.getElementById('state').textContent.includes('No stream named')")
        seen["error"] = _violations(page)
    assert all(not v for v in seen.values()), {state: v for state, v in seen.items() if v}


def test_every_control_is_reached_with_the_tab_key(server: Server) -> None:
    with _page(server.url + "/?autoplay=0") as page:
        _playing(page)
        page.click("#timeline-panel summary")
        wanted = set(page.evaluate(f"""() => [...document.querySelectorAll('{CONTROLS}')]
            .filter(e => !e.disabled && e.offsetParent !== null).map(e => e.id || e.textContent.trim())"""))
        page.evaluate("document.activeElement.blur()")
        reached: set[str] = set()
        for _ in range(len(wanted) + 15):
            page.keyboard.press("Tab")
            reached.add(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    assert wanted and wanted <= reached, sorted(wanted - reached)


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1920, 1080), (390, 844)])
def test_no_control_is_clipped_or_overlaps_another(server: Server, width: int, height: int) -> None:
    with _page(server.url + "/?autoplay=0", width, height) as page:
        _playing(page)
        page.evaluate("document.getElementById('ask-voice').hidden = false")  # shown where speech input exists
        page.click("#timeline-panel summary")
        boxes = page.evaluate(f"""() => [...document.querySelectorAll('{CONTROLS}, label')]
            .filter(e => e.offsetParent !== null)
            .map(e => {{ const r = e.getBoundingClientRect();
                        return {{id: e.id || e.tagName + ':' + e.textContent.trim().slice(0, 30),
                                x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height,
                                control: !['LABEL'].includes(e.tagName),
                                inside: [...e.querySelectorAll('input, select')].map(c => c.id)}}; }})""")
        page_width = page.evaluate("document.documentElement.clientWidth")
    clipped = [b["id"] for b in boxes if b["x"] < -1 or b["x"] + b["w"] > page_width + 1]
    assert not clipped, f"past the {page_width} px page: {clipped}"
    controls = [b for b in boxes if b["control"] and b["w"] > 0 and b["h"] > 0]
    overlapping = []
    for i, a in enumerate(controls):
        for b in controls[i + 1:]:
            if a["id"] in b["inside"] or b["id"] in a["inside"]:
                continue
            dx = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            dy = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            if dx > 1 and dy > 1:
                overlapping.append((a["id"], b["id"]))
    assert not overlapping, overlapping


def test_the_audit_finds_what_it_should(server: Server) -> None:
    """The audit can fail: a control without a name, put on the page, is a serious violation it reports."""
    with _page(server.url + "/?autoplay=0") as page:
        page.evaluate("document.body.append(Object.assign(document.createElement('button'), {id: 'nameless'}))")
        found = _violations(page)
    assert any(v["id"] == "button-name" for v in found), found

