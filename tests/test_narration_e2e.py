"""Narration end to end with a tiny random Florence-2 (loaded by hub id, offline): WebVTT and the muxed
audio-description track offline; narration events, questions and the Opus audio track live; the browser's
live region."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from pathlib import Path

import av
import numpy as np
from streamvis_client import watch
from support import TinyModels, cut_clip, run_cli
from test_browser import _browser_or_skip, chromium_page
from test_serve import Server

CUE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})$")


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    lines = text.splitlines()
    assert lines[0] == "WEBVTT" and lines[1] == ""
    cues = []
    for i, line in enumerate(lines):
        match = CUE.match(line)
        if match:
            g = match.groups()
            cues.append((_seconds(*g[:4]), _seconds(*g[4:]), lines[i + 1]))
    return cues


def test_offline_captions_and_audio_description(tiny_models: TinyModels, person_video: Path, models_dir: Path,
                                                tmp_path: Path) -> None:
    clip = cut_clip(person_video, tmp_path / "person.mp4", 200)
    out, vtt = tmp_path / "narrated.mp4", tmp_path / "narrated.vtt"
    result = run_cli("process", str(clip), "-o", str(out), "-p", "narrate", "-q", "--models-dir", str(models_dir),
                     "--set", "narrator.type=florence2", "--set", f"narrator.model={tiny_models.FLORENCE}",
                     "--set", "narrator.max_new_tokens=12",
                     "--set", "narrator.period_s=4", "--set", "narrator.min_gap_s=2",
                     "--captions", str(vtt), "--audio-description", env=tiny_models.offline_env)
    assert result.returncode == 0, result.stderr
    cues = parse_vtt(vtt.read_text())
    assert len(cues) >= 2
    assert all(start < end for start, end, _ in cues)
    assert all(a[0] < b[0] and a[1] <= b[0] for a, b in itertools.pairwise(cues))  # increasing, no overlap
    assert any("Person" in text for _, _, text in cues)  # the words match YOLOX's boxes
    assert len({text for _, _, text in cues}) == len(cues)  # nothing said twice in a row
    with av.open(str(out)) as container:
        audio = [s for s in container.streams if s.type == "audio"]
        assert len(audio) == 1 and container.streams.video[0].frames == 200
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio[0])])
    rate = 48_000
    start = int(cues[0][0] * rate)
    spoken = samples[start:start + rate]
    assert np.sqrt(np.mean(spoken.astype(np.float64) ** 2)) > 0.01  # speech at the first cue (float planar)
    assert np.sqrt(np.mean(samples[: int(0.5 * rate)].astype(np.float64) ** 2)) < 1e-3 or cues[0][0] < 0.5


def _narrating_server(tiny_models: TinyModels, person_video: Path, models_dir: Path) -> Server:
    srv = Server("--source", str(person_video), "--models-dir", str(models_dir), "--loop", "-p", "narrate",
                 "--set", "narrator.type=florence2", "--set", f"narrator.model={tiny_models.FLORENCE}",
                 "--set", "narrator.max_new_tokens=12",
                 env=tiny_models.offline_env)
    srv.wait_ready()
    return srv


def test_live_question_narration_event_and_audio_track(tiny_models: TinyModels, person_video: Path,
                                                       models_dir: Path) -> None:
    srv = _narrating_server(tiny_models, person_video, models_dir)
    try:
        async def scenario():
            viewer = asyncio.ensure_future(watch(srv.url, "intel_one-by-one-person-detection", frames=10**6,
                                                 timeout_s=8, audio=True))
            await asyncio.sleep(3)
            status, text = await asyncio.to_thread(srv.get, "/ask", None,
                                                   json.dumps({"question": "What is ahead?"}).encode(), "POST",
                                                   "application/json")
            return status, text, await viewer

        status, text, report = asyncio.run(scenario())
        assert status == 200, text
        answer = json.loads(text)
        assert answer["type"] == "narration" and answer["question"] == "What is ahead?" and answer["text"]
        asked = [m for m in report.narration_messages if m.get("question") == "What is ahead?"]
        assert asked and asked[0]["text"] == answer["text"]  # the answer also came as a narration event
        assert report.audio_samples > 48_000 * 4 and report.audio_peak_rms > 0.02  # speech on the audio track
        assert srv.get("/ask", data=b'{"question": ""}', method="POST", content_type="application/json")[0] == 400
    finally:
        srv.stop()


def test_browser_live_region_gets_narration(tiny_models: TinyModels, person_video: Path, models_dir: Path) -> None:
    _browser_or_skip()
    srv = _narrating_server(tiny_models, person_video, models_dir)
    try:
        with chromium_page(srv.url + "/?autoplay=1") as page:
            page.wait_for_function("(window.streamvisFramesDecoded || 0) >= 10", timeout=60_000)
            page.fill("#question", "what does the sign say?")
            page.focus("#ask")
            page.keyboard.press("Enter")
            page.wait_for_function("(window.streamvisNarrations || 0) >= 1", timeout=60_000)
            region = page.evaluate("""() => { const r = document.getElementById('narration');
                return {live: r.getAttribute('aria-live'), role: r.getAttribute('role'),
                        items: r.querySelectorAll('p').length, text: r.textContent}; }""")
    finally:
        srv.stop()
    assert region["live"] == "polite" and region["role"] == "log" and region["items"] >= 1
    assert "what does the sign say?" in region["text"]


# Records what the page asks the speech synthesiser to do, instead of speaking.
FAKE_SPEECH = """
window.spoken = [];
const fake = { speak: (u) => window.spoken.push(['speak', u.text]), cancel: () => window.spoken.push(['cancel']),
               speaking: false, pending: false, paused: false, getVoices: () => [] };
Object.defineProperty(window, 'speechSynthesis', { value: fake });
"""


def test_viewer_speaks_at_the_listeners_level_and_a_hazard_interrupts(person_video: Path, models_dir: Path) -> None:
    """The viewer page with the objects narrator (real YOLOX, no model download): narration arrives and is spoken;
    at "brief" the brief text is spoken; an urgent item cancels what is being said, is spoken at once and is
    announced in the assertive region."""
    _browser_or_skip()
    srv = Server("--source", str(person_video), "--models-dir", str(models_dir), "--loop", "-p", "narrate")
    srv.wait_ready()
    try:
        with chromium_page(srv.url + "/?autoplay=1", FAKE_SPEECH) as page:
            page.wait_for_function("window.spoken.length >= 1", timeout=60_000)  # the stream's own narration
            first = page.evaluate("window.spoken[0]")
            page.select_option("#verbosity", "brief")
            message = {"type": "narration", "text": "Person on the left: two people in view.", "urgent": False,
                       "texts": {"brief": "Person left.", "normal": "Person on the left: two people in view.",
                                 "detailed": "Person on the left, far away: two people in view."}}
            hazard = {"type": "narration", "text": "Careful: car approaching on the right.", "urgent": True,
                      "texts": {level: "Careful: car approaching on the right." for level in
                                ("brief", "normal", "detailed")}}
            page.evaluate("(m) => { window.spoken = []; window.streamvisReceive(m); }", message)
            page.evaluate("(m) => window.streamvisReceive(m)", hazard)
            spoken = page.evaluate("window.spoken")
            alert = page.evaluate("document.getElementById('alert').textContent")
            role = page.evaluate("document.getElementById('alert').getAttribute('role')")
    finally:
        srv.stop()
    assert first[0] == "speak" and first[1], first
    assert spoken == [["speak", "Person left."], ["cancel"], ["speak", "Careful: car approaching on the right."]]
    assert role == "alert" and alert == "Careful: car approaching on the right."
