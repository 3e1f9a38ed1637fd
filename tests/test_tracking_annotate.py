"""Tracker ids on known motion, annotation at several resolutions."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from streamvis.config import AnnotatorConfig, TrackerConfig
from streamvis.pipeline.annotate import Annotator, draw_caption, label_texts
from streamvis.pipeline.tracking import ClassVotes, Tracker
from streamvis.sources import open_source
from streamvis.sources.synthetic import SyntheticSource


@pytest.mark.parametrize("kind", ["bytetrack", "sort", "ocsort", "botsort", "mcbyte"])
def test_track_ids_are_stable_on_known_motion(kind: str) -> None:
    """Ground-truth boxes of moving shapes: each object keeps one track id; a late entrant gets a new one."""
    source = open_source("synthetic:?objects=3&frames=90&enter=30&seed=2")
    assert isinstance(source, SyntheticSource)
    tracker = Tracker(TrackerConfig(type=kind, minimum_consecutive_frames=1), fps=30)
    seen: dict[int, set[int]] = {}
    for index in range(90):
        truth = source.boxes_at(index)
        truth.confidence = np.full(len(truth), 0.9, np.float32)
        tracked = tracker.update(truth, index / 30, source.render(index))
        for oid, tid in zip(tracked.data["object_id"], tracked.tracker_id, strict=True):
            if tid >= 0:
                seen.setdefault(int(oid), set()).add(int(tid))
    assert set(seen) == {0, 1, 2}
    assert all(len(ids) == 1 for ids in seen.values()), seen
    assert len({next(iter(ids)) for ids in seen.values()}) == 3  # distinct ids


def _detections(tracker_ids=(3, 7), masks: bool = False) -> sv.Detections:
    xyxy = np.array([[20, 20, 120, 100], [150, 60, 300, 200]], np.float32)
    mask = None
    if masks:
        mask = np.zeros((2, 360, 640), bool)
        mask[0, 30:90, 30:110] = True
        mask[1, 70:190, 160:290] = True
    return sv.Detections(xyxy=xyxy, confidence=np.array([0.91, 0.5], np.float32), class_id=np.array([0, 2]),
                         tracker_id=np.array(tracker_ids), mask=mask,
                         data={"class_name": np.array(["person", "car"])})


@pytest.mark.parametrize(
    ("tracker_ids", "show_id", "show_score", "expected"),
    [((3, 7), True, True, ["person #3 0.91", "car #7 0.50"]),
     ((3, -1), True, True, ["person #3 0.91", "car 0.50"]),
     ((3, 7), False, True, ["person 0.91", "car 0.50"]),
     ((3, 7), True, False, ["person #3", "car #7"])],
)
def test_label_texts(tracker_ids, show_id, show_score, expected) -> None:
    assert label_texts(_detections(tracker_ids), show_id, show_score) == expected


@pytest.mark.parametrize("resolution_wh", [(640, 360), (1280, 720), (1920, 1080)])
def test_annotate_draws_boxes_masks_and_caption(resolution_wh) -> None:
    width, height = resolution_wh
    scale = width / 640
    detections = _detections(masks=True)
    detections.xyxy = detections.xyxy * scale
    big = np.zeros((2, height, width), bool)
    for i in range(2):
        x1, y1, x2, y2 = (detections.xyxy[i] + [10, 10, -10, -10]).astype(int)
        big[i, y1:y2, x1:x2] = True
    detections.mask = big
    image = np.full((height, width, 3), 128, np.uint8)
    out = Annotator(AnnotatorConfig()).annotate(image, detections, caption="A person walks in from the left.")
    assert out.shape == image.shape and (image == 128).all()  # the input is not drawn on
    x1, y1, x2, y2 = detections.xyxy[1].astype(int)
    assert (out[(y1 + y2) // 2, (x1 + x2) // 2] != 128).any()  # mask tint inside the object
    assert (out[y1 + 1 : y2, x2 - 1] != 128).any()  # box edge
    band = out[int(height * 0.9) :, :]
    assert band.max() == 255 and np.median(band) < 128  # white text on a darkened band


def test_caption_wraps_and_skips_empty_text() -> None:
    image = np.full((360, 640, 3), 200, np.uint8)
    assert (draw_caption(image.copy(), "") == 200).all()
    long = draw_caption(image.copy(), "word " * 80)
    short = draw_caption(image.copy(), "short")
    darkened_rows = lambda img: int((img[:, :, 0].mean(axis=1) < 150).sum())  # noqa: E731
    assert darkened_rows(long) > darkened_rows(short)  # several lines, a taller band


def _one_box(name: str, class_id: int, score: float, track_id: int = 7) -> sv.Detections:
    return sv.Detections(xyxy=np.array([[10, 10, 50, 50]], np.float32), confidence=np.array([score], np.float32),
                         class_id=np.array([class_id]), tracker_id=np.array([track_id]),
                         data={"class_name": np.array([name])})


@pytest.mark.parametrize(("seen", "labelled"), [
    # the detector hesitates on one animal: the id keeps the class it was seen as most
    ([("cat", 15, 0.6), ("dog", 16, 0.5), ("cat", 15, 0.6), ("person", 0, 0.4)], ["cat", "cat", "cat", "cat"]),
    # a class takes over only once its summed score passes the current one's
    ([("dog", 16, 0.3), ("cat", 15, 0.3), ("cat", 15, 0.3), ("cat", 15, 0.3)], ["dog", "dog", "cat", "cat"]),
    # a confident first look is not outvoted by one weak frame
    ([("person", 0, 0.9), ("teddy bear", 77, 0.35), ("person", 0, 0.8)], ["person", "person", "person"]),
])
def test_a_track_keeps_its_majority_class(seen: list[tuple[str, int, float]], labelled: list[str]) -> None:
    votes = ClassVotes(forget_after=100)
    got = []
    for name, class_id, score in seen:
        out = votes.apply(_one_box(name, class_id, score))
        got.append(str(out.data["class_name"][0]))
        assert int(out.class_id[0]) == {"cat": 15, "dog": 16, "person": 0, "teddy bear": 77}[got[-1]]
    assert got == labelled


def test_class_votes_are_per_track_and_forgotten() -> None:
    votes = ClassVotes(forget_after=2)
    votes.apply(_one_box("cat", 15, 0.9, track_id=1))
    assert str(votes.apply(_one_box("dog", 16, 0.5, track_id=2)).data["class_name"][0]) == "dog"  # its own votes
    for _ in range(3):
        votes.apply(sv.Detections.empty())
    assert str(votes.apply(_one_box("dog", 16, 0.5, track_id=1)).data["class_name"][0]) == "dog"  # 1 was forgotten


def test_unconfirmed_detections_keep_their_own_class() -> None:
    votes = ClassVotes(forget_after=10)
    votes.apply(_one_box("cat", 15, 0.9, track_id=-1))
    assert str(votes.apply(_one_box("dog", 16, 0.5, track_id=-1)).data["class_name"][0]) == "dog"
