"""Text as objects, where a stream looks, how text news is worded and answered, and how reading is scored: pure
logic, with hand-made readings. (The real PP-OCR models on real images: `test_reading_real.py`.)"""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from streamvis.config import ObjectsNarratorConfig, RapidOcrReaderConfig, load_pipeline
from streamvis.errors import ConfigError
from streamvis.frame import Frame, Result, TextReading
from streamvis.narration.backends import ObjectsNarrator
from streamvis.narration.narrator import Narrator, asks_about_text, text_answer
from streamvis.narration.policy import Trigger
from streamvis.narration.scene_model import Event
from streamvis.narration.wording import news
from streamvis.reading.model import RawText
from streamvis.reading.reader import StreamReader, changed_regions, merged
from streamvis.reading.scoring import LabelledText, score_image, words
from streamvis.reading.tracks import TextTracks, place
from streamvis.serialize import empty_detections, result_to_json

SIZE = (1280, 720)


def raw(text: str, x: float, y: float, w: float = 120, h: float = 30, score: float = 0.95) -> RawText:
    return RawText(np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32), text, score)


WHOLE = [np.array([0, 0, *SIZE], np.float32)]


def said(tracks: TextTracks, t: float, *found: RawText, looked: list[np.ndarray] | None = None) -> list[str]:
    return [r.text for r in tracks.update(t, list(found), WHOLE if looked is None else looked, SIZE)]


def test_a_sign_is_news_once_while_it_stays() -> None:
    tracks = TextTracks()
    assert said(tracks, 0.0, raw("STOP", 100, 100)) == ["STOP"]
    assert said(tracks, 1.0, raw("STOP", 102, 101)) == []  # the same sign, read again
    assert said(tracks, 2.0, raw("ST0P", 101, 100, score=0.99)) == []  # one letter misread: still the same sign
    assert [r.text for r in tracks.current()] == ["ST0P"]  # ... the better-scored reading is kept
    assert said(tracks, 3.0, raw("OPEN", 100, 100)) == ["OPEN"]  # other words in the same place: a changed sign


def test_unsure_and_one_letter_readings_are_dropped() -> None:
    tracks = TextTracks(min_score=0.75, min_chars=2)
    assert said(tracks, 0.0, raw("EXIT", 0, 0, score=0.6), raw("A", 300, 0), raw("-", 600, 0)) == []
    assert tracks.current() == ()


def test_part_of_a_line_hidden_behind_someone_is_not_news() -> None:
    tracks = TextTracks()
    assert said(tracks, 0.0, raw("KOREAN RESTAURANT", 100, 100, w=400)) == ["KOREAN RESTAURANT"]
    assert said(tracks, 1.0, raw("ANT", 420, 100, w=80)) == []
    assert [r.text for r in tracks.current()] == ["KOREAN RESTAURANT"]


def test_text_leaves_when_a_look_at_its_place_misses_it_twice() -> None:
    tracks = TextTracks(gone_after=2)
    said(tracks, 0.0, raw("EXIT", 100, 100), raw("PUSH", 900, 500))
    left_half = [np.array([0, 0, 640, 720], np.float32)]
    said(tracks, 1.0, looked=left_half)
    said(tracks, 2.0, looked=left_half)
    assert [r.text for r in tracks.current()] == ["PUSH"]  # EXIT's place was looked at twice; PUSH's never


def test_the_same_words_are_said_again_only_after_a_while() -> None:
    tracks = TextTracks(repeat_after_s=60.0, gone_after=1)
    assert said(tracks, 0.0, raw("BUS 65", 100, 100)) == ["BUS 65"]
    said(tracks, 1.0)  # gone
    assert said(tracks, 10.0, raw("Bus 65", 700, 300)) == []  # back within a minute (even elsewhere): not again
    said(tracks, 11.0)
    assert said(tracks, 80.0, raw("BUS 65", 100, 100)) == ["BUS 65"]


def test_text_on_an_object_is_that_objects() -> None:
    tracks = TextTracks()
    detections = sv.Detections(xyxy=np.array([[50, 50, 600, 400], [0, 0, 1280, 720]], np.float32),
                               class_id=np.array([5, 0]), tracker_id=np.array([7, 8]),
                               data={"class_name": np.array(["bus", "person"])})
    [reading] = tracks.update(0.0, [raw("65745", 100, 100)], WHOLE, SIZE, detections)
    assert (reading.object, reading.object_track) == ("bus", 7)  # the smallest box holding it


@pytest.mark.parametrize(("xyxy", "expected"), [
    ((10, 300, 200, 360), ("left", "near")),  # 60 px of 720: 8% of the height
    ((600, 300, 700, 320), ("ahead", "mid")),
    ((1100, 300, 1200, 310), ("right", "far")),
])
def test_where_text_is(xyxy: tuple[int, int, int, int], expected: tuple[str, str]) -> None:
    assert place(np.array(xyxy, np.float32), SIZE) == expected


def test_text_is_said_after_hazards_and_near_arrivals_and_before_the_rest() -> None:
    events = [Event("enter", 3, "person", "right", "mid", "still", 1.0),
              Event("text", "text#1", "stop sign", "ahead", "mid", "still", 1.0, said="STOP"),
              Event("hazard", 4, "car", "left", "near", "approaching", 1.0),
              Event("text", "text#2", "sign", "left", "near", "still", 1.0, said="EXIT")]
    utterance = news(events, [])
    assert utterance.text("normal") == ("Careful: car approaching on the left. Stop sign ahead: STOP. "
                                        "Sign on the left: EXIT. Person on the right.")
    assert utterance.text("brief").startswith("Careful: car approaching, left. Stop sign ahead: STOP. Sign left: EXIT.")
    assert "Sign on the left, close: EXIT." in utterance.text("detailed")


def test_a_question_about_text_is_answered_from_what_was_read() -> None:
    readings = (TextReading("STOP", 0.99, ((600, 100), (700, 100), (700, 140), (600, 140)), 1, "ahead", "mid",
                            0.0, 0.0, "stop sign", 4),
                TextReading("EXIT", 0.97, ((10, 10), (60, 10), (60, 30), (10, 30)), 2, "left", "far", 0.0, 0.0))
    narrator = Narrator(ObjectsNarratorConfig(), ObjectsNarrator())
    narrator.texts_in_view = lambda: readings
    frame = Frame(np.zeros((720, 1280, 3), np.uint8), 0, 0.0, "cam")
    answer = narrator.describe(frame, empty_detections(), Trigger("ask", urgent=True), "What does the sign say?")
    assert answer is not None and answer.text == "The stop sign ahead says STOP. On the left: EXIT."
    other = narrator.describe(frame, empty_detections(), Trigger("ask", urgent=True), "Is anyone there?")
    assert other is not None and "STOP" not in other.text  # not a question about text: the objects answer
    assert text_answer(()) == "I see no text I can read."
    assert asks_about_text("read it to me") and asks_about_text("What's written there?")
    assert not asks_about_text("what is ahead?")


class CountingModel:
    """A stand-in that counts what it is asked to read: it tests the schedule, not reading."""

    name = "counting"
    provider = "cpu"

    def __init__(self) -> None:
        self.crops: list[tuple[int, int]] = []

    def read(self, image_bgr: np.ndarray) -> list[RawText]:
        self.crops.append(image_bgr.shape[:2])
        return []


def frame_at(image: np.ndarray, pts: float) -> Frame:
    return Frame(image, int(pts * 10), pts, "cam")


def test_a_stream_looks_where_it_changed_and_at_new_text_objects_only() -> None:
    model = CountingModel()
    reader = StreamReader(RapidOcrReaderConfig(every_s=1.0, full_frame_every_s=10.0), model)
    still = np.full((720, 1280, 3), 90, np.uint8)
    none = empty_detections()
    reader.look(frame_at(still, 0.0), none)
    assert model.crops == [(720, 1280)]  # the first look: the whole frame
    assert not reader.due(0.5) and reader.due(1.0)
    reader.look(frame_at(still, 1.0), none)
    assert len(model.crops) == 1 and reader.quiet == 1  # nothing changed, nothing new: no model run
    changed = still.copy()
    changed[300:360, 600:760] = 250  # a sign lit up
    reader.look(frame_at(changed, 2.0), none)
    height, width = model.crops[-1]
    assert 60 <= height < 300 and 160 <= width < 500  # around the change, with a margin
    bus = sv.Detections(xyxy=np.array([[100, 400, 400, 700]], np.float32), class_id=np.array([5]),
                        tracker_id=np.array([3]), data={"class_name": np.array(["bus"])})
    reader.look(frame_at(changed, 3.0), bus)
    assert model.crops[-1] == (350, 360)  # the new bus: its box with a 10% margin, clipped to the frame
    reader.look(frame_at(changed, 4.0), bus)
    assert len(model.crops) == 3  # the same bus again: already read
    reader.look(frame_at(changed, 12.0), none)
    assert model.crops[-1] == (720, 1280)  # full_frame_every_s passed: the whole frame again


def test_changed_regions_are_merged_where_they_touch() -> None:
    then = np.zeros((90, 160), np.uint8)
    now = then.copy()
    now[10:20, 10:30] = 255
    now[60:80, 120:150] = 255
    regions = changed_regions(then, now, (1280, 720))
    assert len(regions) == 2 and all(r[2] > r[0] and r[3] > r[1] for r in regions)
    boxes = [np.array([0, 0, 100, 100], np.float32), np.array([50, 50, 200, 200], np.float32),
             np.array([500, 500, 600, 600], np.float32)]
    assert [b.tolist() for b in merged(boxes)] == [[0, 0, 200, 200], [500, 500, 600, 600]]


def label(text: str, x: float, y: float, w: float = 100, h: float = 20) -> LabelledText:
    return LabelledText(np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32), text)


def test_reading_is_scored_by_words_characters_and_height() -> None:
    labels = [label("Genaxis Theatre", 0, 0, 200, 14), label("KOREANRESTAURANT", 0, 100, 300, 40),
              label("###", 0, 300), label("EXIT", 500, 500, 60, 70)]
    readings = [raw("Genexis Theatre", 0, 0, 200, 14), raw("KOREAN RESTAURANT", 0, 100, 300, 40),
                raw("blur", 0, 300, 100, 20), raw("NOISE", 900, 10, 50, 20)]
    score = score_image(labels, readings)
    assert (score.label_words, score.found_words) == (4, 2)  # Theatre; KOREANRESTAURANT (the same letters split)
    assert (score.read_words, score.right_words) == (5, 3)  # "blur" over ### counts neither way; NOISE is wrong
    # character errors over the lines read as one line: a letter in GENAXIS (EXIT, never read, is a missed word)
    assert (score.char_errors, score.label_chars) == (1, len("GENAXISTHEATRE") + len("KOREANRESTAURANT"))
    metrics = score.metrics()
    assert metrics["recall_<16px"] == 0.5 and metrics["recall_32-64px"] == 1.0 and metrics["recall_>=64px"] == 0.0
    assert words("3.99 B!") == ["399", "B"]


def test_texts_are_in_the_per_frame_record() -> None:
    reading = TextReading("STOP", 0.99, ((1, 2), (3, 2), (3, 4), (1, 4)), 5, "ahead", "mid", 1.5, 1.5, "stop sign",
                          9, new=True)
    record = result_to_json(Result(Frame(np.zeros((4, 4, 3), np.uint8), 0, 1.5, "cam"), empty_detections(), False,
                                   texts=(reading,)))
    assert record["texts"] == [{"text": "STOP", "score": 0.99, "polygon_xy": [[1, 2], [3, 2], [3, 4], [1, 4]],
                                "text_id": 5, "side": "ahead", "distance": "mid", "object": "stop sign",
                                "object_track": 9, "new": True, "first_pts": 1.5}]
    assert "texts" not in result_to_json(Result(Frame(np.zeros((4, 4, 3), np.uint8), 0, 1.5, "cam"),
                                                empty_detections(), False))


def test_the_narrate_pipeline_reads_and_others_do_not() -> None:
    narrate = load_pipeline("narrate")
    assert isinstance(narrate.reader, RapidOcrReaderConfig) and narrate.reader.speak
    assert load_pipeline("detect").reader.type == "none"
    assert load_pipeline("narrate", ["reader.type=none"]).reader.type == "none"
    with pytest.raises(ConfigError, match=r"reader\.max_side_px"):
        load_pipeline("narrate", ["reader.max_side_px=10"])
