"""Narration: positions in words, a synthetic clip through the policy, the backends with tiny random Florence-2 /
SmolVLM (Idefics3) / PaliGemma 2 models, speech, and WebVTT. The scene model, the words and the policy's rules
are in test_narration_policy.py; real scenes in test_narration_real.py."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv
from support import TinyModels

from streamvis.config import Florence2NarratorConfig, VlmNarratorConfig
from streamvis.frame import Frame
from streamvis.narration.backends import ChatVLMNarrator, FlorenceNarrator
from streamvis.narration.narrator import Narrator
from streamvis.narration.policy import NarrationPolicy, PolicySettings, Trigger
from streamvis.narration.scene import locate, scene_distance, scene_signature, text_similarity
from streamvis.narration.speech import rms, synthesize
from streamvis.narration.wording import clean_text
from streamvis.sinks.captions import spoken_seconds, vtt_time
from streamvis.sources import open_source


def dets(boxes, names, tracks=None) -> sv.Detections:
    n = len(names)
    return sv.Detections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), confidence=np.ones(n, np.float32),
                         class_id=np.zeros(n, int), tracker_id=None if tracks is None else np.array(tracks),
                         data={"class_name": np.array(names, dtype=str)})


@pytest.mark.parametrize(("box", "side", "distance"), [
    ([0, 100, 100, 400], "left", "near"),
    ([280, 300, 360, 340], "ahead", "far"),
    ([500, 100, 640, 250], "right", "mid"),
    ([200, 0, 230, 480], "ahead", "near"),
])
def test_locate(box, side, distance) -> None:
    assert locate(np.array(box), (640, 480)) == (side, distance)


@pytest.mark.parametrize(("a", "b", "similar"), [
    ("A man standing in a room.", "a man standing in the room", True),
    ("Person ahead, close.", "Person ahead, close", True),
    ("A man standing in a room.", "A red car parked on the street.", False),
    ("", "", True),
])
def test_text_similarity(a: str, b: str, similar: bool) -> None:
    assert (text_similarity(a, b) >= 0.75) is similar


def test_scene_distance() -> None:
    dark = np.full((360, 640, 3), 30, np.uint8)
    noisy = np.clip(dark.astype(int) + np.random.default_rng(0).integers(-3, 4, dark.shape), 0, 255).astype(np.uint8)
    green = np.zeros_like(dark)
    green[:, :, 1] = 200
    assert scene_distance(scene_signature(dark), scene_signature(noisy)) < 0.2
    assert scene_distance(scene_signature(dark), scene_signature(green)) > 0.5


def test_an_object_entering_a_synthetic_clip_is_the_only_news() -> None:
    policy = NarrationPolicy(PolicySettings(period_s=0, min_gap_s=0.5, scene_change=0))
    source = open_source("synthetic:?w=320&h=192&fps=10&frames=60&objects=3&enter=30")
    fired = []
    for frame in source.frames():
        gt = source.boxes_at(frame.index)
        tracked = dets(gt.xyxy, list(gt.data["class_name"]), gt.data["object_id"])
        trigger = policy.observe(frame.pts, tracked, frame.image)
        if trigger is not None:
            fired.append((frame.index, trigger.reason))
            assert policy.accept(frame.pts, trigger)
    entering = str(source.boxes_at(59).data["class_name"][-1])
    assert fired[0][0] == 8 and fired[0][1].startswith("enter:")  # the first objects, once seen for 0.8 s
    assert fired[1] == (38, f"enter:{entering}") and len(fired) == 2  # nothing else changed: silence


@pytest.mark.parametrize(("raw", "clean"), [
    ("</s><s>A dog.<loc_3></s>", "A dog."), ("\x00two\n lines ", "two lines"), ("<pad><pad>", "")])
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def _frame(index: int = 0, pts: float = 0.0) -> Frame:
    image = np.zeros((240, 320, 3), np.uint8)
    image[60:200, 100:160] = 200
    return Frame(image, index, pts, "test")


@pytest.mark.parametrize("kind", ["florence2", "idefics3", "paligemma"])
def test_backends_with_tiny_models(tiny_models: TinyModels, kind: str) -> None:
    folder = {"florence2": tiny_models.florence, "idefics3": tiny_models.idefics3,
              "paligemma": tiny_models.paligemma}[kind]
    config = (Florence2NarratorConfig if kind == "florence2" else VlmNarratorConfig)(model=str(folder),
                            max_new_tokens=8, device="cpu")
    backend = FlorenceNarrator(config) if kind == "florence2" else ChatVLMNarrator(config)
    text = backend.describe(_frame().image, "Person ahead, close.")
    assert isinstance(text, str) and "\n" not in text and backend.last_ms > 0
    if kind == "idefics3":  # a chat template: the instruction is grounded in the boxes
        assert "The detector sees: Person ahead, close." in backend.prompt_text("Person ahead, close.", None)
        assert backend.prompt_text("", "Is the door open?") == "Is the door open?"
    if kind == "paligemma":  # plain task prefixes
        assert backend.prompt_text("x", "is the door open?") == "answer en is the door open?"
    narrator = Narrator(config, backend)
    answer = narrator.describe(_frame(), dets([[100, 60, 160, 200]], ["person"]), Trigger("ask", True),
                               "What is ahead?")
    assert answer is not None and answer.text and answer.question == "What is ahead?"


def test_speech_and_captions_helpers() -> None:
    samples, rate = synthesize("Person ahead, close.")
    assert rate > 8000 and len(samples) > rate * 0.5 and rms(samples) > 0.02
    assert rms(np.zeros(100, np.int16)) == 0.0
    assert vtt_time(83.5) == "00:01:23.500" and vtt_time(3725.0042) == "01:02:05.004"
    assert spoken_seconds("one two", 120) == 1.5 and spoken_seconds(" ".join(["w"] * 30), 120) == 15.5
