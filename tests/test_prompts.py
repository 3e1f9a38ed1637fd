"""Prompts from viewers: parsing and checking (one-line errors), rate limiting, and a tiny SAM 2.1 stream taking
clicks and boxes on a frame it showed earlier, refinements and removals."""

from __future__ import annotations

import time

import numpy as np
import pytest
from support import TinyModels

from streamvis.config import PipelineConfig, Sam2Config
from streamvis.frame import Frame
from streamvis.pipeline.loading import Models
from streamvis.pipeline.step import Pipeline
from streamvis.prompts import Prompt, PromptError, RateLimiter, parse_prompt
from streamvis.segmentation.video import VideoSegmenterModel
from streamvis.serialize import empty_detections
from streamvis.sources import open_source
from streamvis.testing.fakes import StandInDetector

FRAME_WH = (320, 192)


class SeesNothing(StandInDetector):
    """A stand-in detector that finds nothing (so keyframes miss every object)."""

    def detect(self, image_bgr):
        return empty_detections()


@pytest.mark.parametrize(("data", "expected"), [
    ({"type": "point", "x": 10, "y": 20}, Prompt("point", None, ((10.0, 20.0),), (1,))),
    ({"type": "point", "frame_index": 7, "x": 10.5, "y": 20, "label": 0, "object_id": 2, "id": "a"},
     Prompt("point", 7, ((10.5, 20.0),), (0,), object_id=2, request_id="a")),
    ({"type": "point", "points": [[1, 2], [3, 4, 0]]}, Prompt("point", None, ((1.0, 2.0), (3.0, 4.0)), (1, 0))),
    ({"type": "box", "xyxy": [0, 0, 320, 192], "frame_index": 3}, Prompt("box", 3, box_xyxy=(0.0, 0.0, 320.0, 192.0))),
    ({"type": "text", "text": "  red   car. dog "}, Prompt("text", None, text="red car. dog")),
    ({"type": "remove", "object_id": 4}, Prompt("remove", None, object_id=4)),
])
def test_valid_prompts(data, expected) -> None:
    assert parse_prompt(data, FRAME_WH) == expected


@pytest.mark.parametrize(("data", "message"), [
    ("click", r"expected a JSON object"),
    ({"type": "lasso"}, r"type must be one of point, box, text, remove, got 'lasso'"),
    ({"type": "point", "x": 400, "y": 20}, r"point 0 \(400, 20\) is outside the 320x192 frame"),
    ({"type": "point", "x": float("nan"), "y": 20}, r"points\[0\]\.x must be a finite number"),
    ({"type": "point", "x": True, "y": 20}, r"must be a finite number"),
    ({"type": "point", "x": 1, "y": 2, "label": 5}, r"label must be 1 \(the object\) or 0"),
    ({"type": "point", "x": 1, "y": 2, "label": 0}, r"a new object needs at least one positive point"),
    ({"type": "point", "points": [[1, 2]] * 17}, r"1 to 16"),
    ({"type": "point", "points": [[1]]}, r"points\[0\] must be \[x, y\]"),
    ({"type": "box", "xyxy": [10, 10, 11, 50]}, r"at least 2 pixels wide"),
    ({"type": "box", "xyxy": [50, 10, 10, 50]}, r"x2 > x1"),
    ({"type": "box", "xyxy": [0, 0, 10]}, r"xyxy must be \[x1, y1, x2, y2\]"),
    ({"type": "box", "xyxy": [0, 0, 10, 500]}, r"outside the 320x192 frame"),
    ({"type": "text", "text": ""}, r"non-empty string of at most 200"),
    ({"type": "text", "text": "x" * 201}, r"at most 200"),
    ({"type": "text", "text": ". ".join("abcdefghi")}, r"at most 8 phrases"),
    ({"type": "remove"}, r"remove needs the object_id"),
    ({"type": "remove", "object_id": 0}, r"object_id must be an integer >= 1"),
    ({"type": "point", "x": 1, "y": 1, "frame_index": -3}, r"frame_index must be an integer >= 0"),
])
def test_invalid_prompts_say_what_is_wrong(data, message) -> None:
    with pytest.raises(PromptError, match=message):
        parse_prompt(data, FRAME_WH)


def test_a_stream_without_frames_takes_words_but_no_clicks() -> None:
    assert parse_prompt({"type": "text", "text": "dog"}, None).text == "dog"
    with pytest.raises(PromptError, match="no frame yet"):
        parse_prompt({"type": "point", "x": 1, "y": 1}, None)


def test_rate_limiter_allows_bursts_then_the_rate() -> None:
    limiter = RateLimiter(rate_per_s=2, burst=3)
    assert [limiter.allow("a", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", now=0.0)  # clients have their own buckets
    assert limiter.allow("a", now=0.5) and not limiter.allow("a", now=0.5)  # one token per 0.5 s


# -- a stream taking prompts (tiny SAM 2.1) -------------------------------------------------------------------
@pytest.fixture(scope="module")
def segmenter_model(tiny_models: TinyModels) -> VideoSegmenterModel:
    return VideoSegmenterModel(Sam2Config(model=str(tiny_models.sam2), device="cpu", max_objects=4))


def _pipeline(model: VideoSegmenterModel) -> Pipeline:
    config = PipelineConfig.model_validate({"segmenter": {"type": "sam2", "model": model.name},
                                            "detector": {"every_n_frames": 1000}})
    return Pipeline(config, Models(SeesNothing(), model), interactive=True)


def _frames(count: int) -> list[Frame]:
    return list(open_source(f"synthetic:?w=320&h=192&frames={count}&objects=2&seed=9").frames())


def _square(xy, size: int) -> list[float]:
    return [xy[0] * size / FRAME_WH[0], xy[1] * size / FRAME_WH[1]]


def test_a_box_on_an_earlier_frame_joins_the_session_on_that_frame(segmenter_model) -> None:
    pipeline = _pipeline(segmenter_model)
    frames = _frames(8)
    for frame in frames[:6]:
        pipeline.apply(frame, None)
    result = pipeline.apply_prompt(Prompt("box", frame_index=2, box_xyxy=(40.0, 30.0, 120.0, 150.0)))
    (object_id,) = result.object_ids
    assert result.frame_index == 2 and result.note == ""
    segmenter = pipeline.segmenter
    session = segmenter.session
    obj_idx = session.obj_id_to_idx(object_id)
    shown = next(seg for index, seg, _ in pipeline.prompt_history if index == 2)
    assert shown in session.output_dict_per_obj[obj_idx]["cond_frame_outputs"]  # conditioned on the frame shown
    coords = session.point_inputs_per_obj[obj_idx][shown]["point_coords"].reshape(-1, 2).tolist()
    size = segmenter_model.image_size
    assert np.allclose(coords, [_square((40, 30), size), _square((120, 150), size)])
    assert session.point_inputs_per_obj[obj_idx][shown]["point_labels"].reshape(-1).tolist() == [2, 3]
    out = pipeline.apply(frames[6], None)  # the next step carries it
    assert object_id in out.detections.tracker_id.tolist()
    assert str(out.detections.data["class_name"][out.detections.tracker_id.tolist().index(object_id)]) == "object"


def test_clicks_add_refine_and_remove(segmenter_model) -> None:
    pipeline = _pipeline(segmenter_model)
    frames = _frames(10)
    for frame in frames[:3]:
        pipeline.apply(frame, None)
    added = pipeline.apply_prompt(Prompt("point", frame_index=2, points_xy=((80.0, 60.0),), labels=(1,)))
    (object_id,) = added.object_ids
    refined = pipeline.apply_prompt(Prompt("point", frame_index=2, points_xy=((90.0, 70.0),), labels=(0,),
                                           object_id=object_id))
    assert refined.object_ids == [object_id]
    session = pipeline.segmenter.session
    seg = pipeline.prompt_history[-1][1]
    labels = session.point_inputs_per_obj[session.obj_id_to_idx(object_id)][seg]["point_labels"]
    assert labels.reshape(-1).tolist() == [1, 0]  # the refining click joins the first on that frame
    for frame in frames[3:6]:
        out = pipeline.apply(frame, None)
        assert object_id in out.detections.tracker_id.tolist()
    # a keyframe whose detector sees nothing does not remove a person's object, however often
    for frame in frames[6:9]:
        out = pipeline.apply(frame, pipeline.detect(frame.image))
    assert object_id in pipeline.segmenter.objects
    removed = pipeline.apply_prompt(Prompt("remove", object_id=object_id))
    assert removed.removed == [object_id]
    out = pipeline.apply(frames[9], None)
    assert object_id not in (out.detections.tracker_id.tolist() if out.detections.tracker_id is not None else [])
    with pytest.raises(PromptError, match=rf"no object {object_id}"):
        pipeline.apply_prompt(Prompt("remove", object_id=object_id))


def test_a_frame_no_longer_kept_is_applied_on_the_oldest_kept(segmenter_model) -> None:
    pipeline = _pipeline(segmenter_model)
    frames = _frames(20)
    for frame in frames:
        pipeline.apply(frame, None)
    oldest = pipeline.prompt_history[0][0]
    result = pipeline.apply_prompt(Prompt("point", frame_index=1, points_xy=((50.0, 50.0),), labels=(1,)))
    assert result.frame_index == oldest and "no longer kept" in result.note


def test_limits_and_streams_that_take_no_prompts(segmenter_model) -> None:
    pipeline = _pipeline(segmenter_model)
    frame = _frames(1)[0]
    pipeline.apply(frame, None)
    for i in range(4):
        pipeline.apply_prompt(Prompt("point", points_xy=((10.0 + 20 * i, 20.0),), labels=(1,)))
    with pytest.raises(PromptError, match=r"4 objects are tracked already \(segmenter.max_objects\)"):
        pipeline.apply_prompt(Prompt("point", points_xy=((200.0, 20.0),), labels=(1,)))
    with pytest.raises(PromptError, match=r"no object 99"):
        pipeline.apply_prompt(Prompt("point", points_xy=((200.0, 20.0),), labels=(1,), object_id=99))
    plain = Pipeline(PipelineConfig(), Models(SeesNothing()))
    with pytest.raises(PromptError, match=r"no video segmenter to prompt"):
        plain.apply_prompt(Prompt("box", box_xyxy=(0.0, 0.0, 10.0, 10.0)))
    assert plain.grounder() is None  # no Florence-2: words cannot be grounded


def test_a_click_reaches_sam2_propagating_in_its_worker_under_a_budget(segmenter_model) -> None:
    """Under a latency budget SAM 2 propagates beside the frame loop (`live.propagation`); a click waits for the
    propagation in flight, joins the session, and the object is carried on the frames after it."""
    from streamvis.live.runner import LiveStream
    from streamvis.live.settings import LiveSettings

    config = PipelineConfig.model_validate({"segmenter": {"type": "sam2", "model": segmenter_model.name},
                                            "detector": {"every_n_frames": 1000}, "latency": {"budget_ms": 200},
                                            "motion": {"enabled": False}})
    stream = LiveStream("clicks", lambda: open_source("synthetic:?w=320&h=192&fps=15&frames=600&objects=2&realtime=1"),
                        config, Models(SeesNothing(), segmenter_model), LiveSettings())
    assert stream.pipeline.propagation_elsewhere
    stream.start()
    try:
        deadline = time.monotonic() + 20
        while len(stream.pipeline.prompt_history) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        result = stream.prompt(Prompt("point", points_xy=((80.0, 60.0),), labels=(1,))).result(timeout=20)
        (object_id,) = result.object_ids
        while time.monotonic() < deadline:
            latest = stream.latest
            ids = latest.detections.tracker_id if latest is not None else None
            if ids is not None and object_id in ids.tolist():
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"object {object_id} never carried")
    finally:
        stream.stop()
