"""The scene model, its words and when they are spoken, on scripted tracks (10 fps, a 640x480 frame): arrivals
after 0.8 s, departures, approaching, hazards only when near or approaching, counts, one object under a new
tracker id, the minimum gap, the per-minute cap, summaries only with news, and the three verbosity levels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import supervision as sv

from streamvis.narration.policy import NarrationPolicy, PolicySettings, Trigger
from streamvis.narration.scene_model import Event, SceneModel, SceneSettings
from streamvis.narration.wording import counted, news, plural, summary

FPS, W, H = 10, 640, 480
IMAGE = np.zeros((H, W, 3), np.uint8)
HAZARDS = frozenset({"car", "dog"})


@dataclass
class Track:
    track_id: int
    name: str
    box: Callable[[float], list[float] | None]  # t -> xyxy, or None while unseen
    score: float = 0.9


def still(x: float, height: float, start: float = 0.0, end: float = 1e9) -> Callable[[float], list[float] | None]:
    """A box centred at x (share of the width), `height` (share of the frame height) tall, from start to end."""
    def box(t: float) -> list[float] | None:
        if not start <= t < end:
            return None
        h = height * H
        return [x * W - h / 4, H - h - 10, x * W + h / 4, H - 10]
    return box


def growing(x: float, from_height: float, to_height: float, start: float, seconds: float):
    def box(t: float) -> list[float] | None:
        if t < start:
            return None
        share = from_height + (to_height - from_height) * min(1.0, (t - start) / seconds)
        return still(x, share)(t)
    return box


def frame_at(t: float, tracks: list[Track]) -> sv.Detections:
    seen = [(tr, tr.box(t)) for tr in tracks]
    seen = [(tr, b) for tr, b in seen if b is not None]
    return sv.Detections(xyxy=np.array([b for _, b in seen], np.float32).reshape(-1, 4),
                         confidence=np.array([tr.score for tr, _ in seen], np.float32),
                         class_id=np.zeros(len(seen), int), tracker_id=np.array([tr.track_id for tr, _ in seen]),
                         data={"class_name": np.array([tr.name for tr, _ in seen], dtype=str)})


def events_of(tracks: list[Track], seconds: float) -> list[tuple[float, Event]]:
    model = SceneModel(SceneSettings(hazard_classes=HAZARDS))
    out = []
    for i in range(int(seconds * FPS)):
        t = i / FPS
        model.update(t, frame_at(t, tracks), (W, H))
        out += [(t, e) for e in model.take_news()]
    return out


def kinds(events: list[tuple[float, Event]]) -> list[tuple[float, str, str]]:
    return [(round(t, 1), e.kind, e.name) for t, e in events]


# -- the scene model ---------------------------------------------------------------------------------------------

def test_an_object_that_stays_arrives_once_after_it_was_seen_for_0_8_s() -> None:
    assert kinds(events_of([Track(1, "person", still(0.5, 0.3, start=1.0))], 10)) == [(1.8, "enter", "person")]


@pytest.mark.parametrize(("why", "track"), [
    ("seen for 0.3 s", Track(1, "person", still(0.5, 0.3, start=1.0, end=1.3))),
    ("never detected surely", Track(1, "person", still(0.5, 0.3), score=0.4)),
    ("seen in one frame of three", Track(1, "person", lambda t: still(0.5, 0.3)(t) if round(t * FPS) % 3 == 0
                                         else None)),
])
def test_flicker_is_not_news(why: str, track: Track) -> None:
    assert events_of([track], 5) == [], why


def test_a_car_parked_far_away_is_scenery_and_an_approaching_one_a_hazard() -> None:
    parked = Track(1, "car", still(0.85, 0.1))
    approaching = Track(2, "car", growing(0.8, 0.1, 0.35, start=5.0, seconds=2.0))
    found = events_of([parked, approaching], 12)
    assert [(e.kind, e.key) for _, e in found] == [("enter", 1), ("hazard", 2)]
    hazard = found[1][1]
    assert hazard.motion == "approaching" and hazard.side == "right"
    assert news([hazard], []).text("normal") == "Careful: car approaching on the right."


def test_a_hazard_class_that_appears_close_is_a_warning() -> None:
    found = events_of([Track(1, "dog", still(0.5, 0.6, start=1.0))], 4)
    assert [(e.kind, e.distance) for _, e in found] == [("hazard", "near")]
    assert news([found[0][1]], []).text("normal") == "Careful: dog close, ahead."


def test_departures_of_objects_that_were_there_are_news_and_brief_visits_are_not() -> None:
    stayed = Track(1, "person", still(0.2, 0.3, start=0.0, end=4.0))
    visited = Track(2, "chair", still(0.8, 0.3, start=0.0, end=1.5))
    assert kinds(events_of([stayed, visited], 8)) == [(0.8, "enter", "person"), (0.8, "enter", "chair"),
                                                      (5.4, "exit", "person")]  # unseen for 1.5 s


def test_one_object_under_a_new_tracker_id_is_no_news() -> None:
    before = Track(1, "person", still(0.5, 0.3, start=0.0, end=3.0))
    after = Track(2, "person", still(0.52, 0.3, start=3.2))
    assert kinds(events_of([before, after], 8)) == [(0.8, "enter", "person")]


def test_a_person_walking_towards_the_camera_is_approaching() -> None:
    walker = Track(1, "person", growing(0.5, 0.2, 0.45, start=0.0, seconds=6.0))
    found = kinds(events_of([walker], 6))
    assert found == [(0.8, "enter", "person"), (2.3, "approach", "person")]  # once, a second after arriving


# -- words -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "name", "said"), [
    (1, "person", "a person"), (3, "person", "three people"), (2, "bus", "two buses"), (1, "apple", "an apple"),
    (2, "knife", "two knives"), (13, "cup", "13 cups"), (2, "tvmonitor", "two TVs"), (2, "sheep", "two sheep"),
])
def test_counting_in_words(n: int, name: str, said: str) -> None:
    assert counted(n, name) == said
    assert plural("traffic light") == "traffic lights"


def test_arrivals_together_are_counted_and_placed() -> None:
    people = [Track(i, "person", still(0.5, 0.3)) for i in range(1, 4)] + [Track(9, "person", still(0.1, 0.6))]
    found = [e for _, e in events_of(people, 2)]
    model = SceneModel(SceneSettings())
    for i in range(10):
        model.update(i / FPS, frame_at(i / FPS, people), (W, H))
    said = news(found, model.present())
    assert said.text("normal") == "Person on the left, close. Three people ahead: four people in view."
    assert said.text("brief") == "Person left, close. Three people ahead."
    assert summary(model.present()).text("normal") == "In view: four people: three ahead, one on the left."
    assert summary(model.present()).text("brief") == "4 people."


def test_levels_say_more_or_less_of_the_same_news() -> None:
    gone = Event("exit", 4, "person", "left", "mid", "still", 9.0)
    far = Event("enter", 5, "bench", "right", "far", "still", 9.0)
    said = news([gone, far], [])
    assert said.text("brief") == "Bench right."  # departures are not brief news
    assert said.text("normal") == "Bench on the right. Person gone from the left."  # arrivals first
    assert said.text("detailed") == "Bench on the right, far away. Person gone from the left."


# -- when to speak -----------------------------------------------------------------------------------------------

def run_policy(tracks: list[Track], seconds: float, **settings) -> list[tuple[float, Trigger]]:
    policy = NarrationPolicy(PolicySettings(scene_change=0, scene=SceneSettings(hazard_classes=HAZARDS),
                                            **settings))
    spoken = []
    for i in range(int(seconds * FPS)):
        t = i / FPS
        trigger = policy.observe(t, frame_at(t, tracks), IMAGE)
        if trigger is not None and policy.accept(t, trigger):
            spoken.append((round(t, 1), trigger))
    return spoken


def test_news_waits_for_the_minimum_gap_and_comes_together() -> None:
    tracks = [Track(1, "person", still(0.5, 0.3)), Track(2, "chair", still(0.8, 0.3, start=1.0)),
              Track(3, "cup", still(0.2, 0.3, start=1.2))]
    spoken = run_policy(tracks, 6, min_gap_s=3.0)
    assert [(t, trig.utterance.text("normal")) for t, trig in spoken] == [
        (0.8, "Person ahead."), (3.8, "Chair on the right. Cup on the left.")]


def test_at_most_max_per_minute_and_hazards_are_never_held_back() -> None:
    people = [Track(i, "person", still(0.1 + 0.8 * (i % 2), 0.3, start=i * 2.0)) for i in range(30)]
    car = Track(99, "car", still(0.5, 0.6, start=40.0))
    spoken = run_policy([*people, car], 60, min_gap_s=1.0, max_per_minute=12)
    ordinary = [t for t, trig in spoken if not trig.urgent]
    assert len(ordinary) == 12
    assert [t for t, trig in spoken if trig.urgent] == [40.8]


def test_a_summary_only_when_the_listener_has_not_heard_it() -> None:
    walker = Track(1, "person", lambda t: still(0.5 if t < 30 else 0.15, 0.3)(t))
    spoken = [(t, trig.reason) for t, trig in run_policy([walker], 60, period_s=20)]
    assert spoken == [(0.8, "enter:person"), (30.0, "periodic")]  # not at 20.8: nothing had changed then


def test_a_question_is_always_answered() -> None:
    policy = NarrationPolicy(PolicySettings())
    ask = Trigger("ask", urgent=True)
    assert policy.accept(1.0, ask, "The sign says exit.")
    assert policy.accept(1.5, ask, "The sign says exit.")
    assert not policy.accept(2.0, Trigger("periodic"), "")


class _ReadsText:
    """A stand-in caption model that reads a sign (the narrator's composition is under test, not a model)."""

    captions, name, provider, last_ms = True, "stand-in", "cpu", 0.0

    def describe(self, image_bgr: np.ndarray, objects: str, question: str | None = None) -> str:
        return "The text reads: EXIT."


@pytest.mark.parametrize(("event", "said"), [
    (Event("enter", 1, "chair", "right", "mid", "still", 1.0), "The text reads: EXIT. Chair on the right."),
    (Event("enter", 2, "person", "ahead", "near", "still", 1.0), "Person ahead, close. The text reads: EXIT."),
    (Event("hazard", 3, "car", "left", "mid", "approaching", 1.0),
     "Careful: car approaching on the left. The text reads: EXIT."),
])
def test_text_read_aloud_goes_after_hazards_and_near_arrivals_only(event: Event, said: str) -> None:
    from streamvis.config import Florence2NarratorConfig
    from streamvis.frame import Frame
    from streamvis.narration.narrator import Narrator

    narrator = Narrator(Florence2NarratorConfig(task="<OCR>"), _ReadsText())
    trigger = Trigger(f"{event.kind}:{event.name}", urgent=event.kind == "hazard", utterance=news([event], []))
    description = narrator.describe(Frame(IMAGE, 10, 1.0, "test"), frame_at(1.0, []), trigger)
    assert description is not None and description.text == said
    assert description.texts is not None and description.texts["normal"] == said


class _SlowCaptions:
    """A stand-in caption backend that takes `seconds` per caption (a slow model server): a scheduler test."""

    captions = True
    name = "slow"
    provider = "test"
    last_ms = 0.0

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def describe(self, image_bgr: np.ndarray, objects: str, question: str | None = None) -> str:
        import time

        time.sleep(self.seconds)
        return "A caption that took its time."


def test_a_hazard_is_said_at_once_while_a_slow_caption_is_on_its_way() -> None:
    """Live, one description runs at a time; a hazard that comes while a slow one runs is said at once, in the
    scene model's words, and the caption still comes after."""
    import time

    from streamvis.config import ObjectsNarratorConfig
    from streamvis.frame import Frame
    from streamvis.narration.narrator import LiveNarrator, Narrator

    config = ObjectsNarratorConfig(hazard_classes=["dog"])
    live = LiveNarrator(Narrator(config, _SlowCaptions(seconds=3.0)))  # type: ignore[arg-type]
    person = Track(1, "person", still(0.2, 0.3, start=0.0))
    dog = Track(2, "dog", still(0.6, 0.6, start=1.2))
    slow = urgent = None
    said_at = None
    start = time.monotonic()
    try:
        for i in range(40):
            t = i / FPS
            pending = live.step(Frame(IMAGE, i, t, "s"), frame_at(t, [person, dog]))
            if pending is not None and slow is None:
                slow = pending  # the person's arrival, with a caption that takes 3 s
            elif pending is not None and urgent is None:
                urgent, said_at = pending, time.monotonic() - start
        assert slow is not None and urgent is not None and urgent.done()
        description = urgent.result()
        assert description is not None and description.urgent
        assert description.text.startswith("Careful: dog close, ahead.")  # then any other news it brings
        assert said_at is not None and said_at < 1.0 and not slow.done()  # it did not wait for the caption
        first = slow.result(timeout=10)
        assert first is not None and "A caption that took its time." in first.text
    finally:
        live.close()
