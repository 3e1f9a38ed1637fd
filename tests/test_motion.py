"""Motion gating: the estimate on frames whose motion is known, the gate's rule, the tracker clock held while a
scene is still, the counts live streams report, and, with the real YOLOX on the shared video, that gating misses
no object the ungated pipeline follows."""

from __future__ import annotations

import time

import numpy as np
import pytest
import supervision as sv

from streamvis.config import MotionConfig, PipelineConfig
from streamvis.frame import Frame
from streamvis.live.runner import LiveStream
from streamvis.live.settings import LiveSettings
from streamvis.live.stats import prometheus_text
from streamvis.pipeline.loading import Models
from streamvis.pipeline.motion import MotionEstimator, MotionGate
from streamvis.pipeline.step import Pipeline
from streamvis.sources import open_source
from streamvis.testing.fakes import ResultList, StandInDetector

W, H = 640, 360


def _scene(square_x: int | None = None, brightness: int = 90) -> np.ndarray:
    """A textured still background, with a 40 px square at (square_x, 150) when given."""
    rng = np.random.default_rng(7)
    image = (rng.integers(0, 30, (H, W, 3)) + brightness).astype(np.uint8)
    if square_x is not None:
        image[150:190, square_x:square_x + 40] = 240
    return image


def test_a_still_scene_has_no_motion_and_a_moving_square_is_found_where_it_is() -> None:
    estimator = MotionEstimator(MotionConfig())
    assert not estimator.update(_scene(), 0.0).moving  # the first frame starts the background
    assert not estimator.update(_scene(), 0.1).moving
    motion = estimator.update(_scene(square_x=300), 0.2)
    assert len(motion.regions_xyxy) == 1
    x1, y1, x2, y2 = motion.regions_xyxy[0]
    assert x1 <= 300 and x2 >= 340 and y1 <= 150 and y2 >= 190  # covers the square...
    assert x2 - x1 < 100 and y2 - y1 < 100  # ...and not much more


def test_motion_inside_an_ignore_polygon_does_not_count() -> None:
    estimator = MotionEstimator(MotionConfig(ignore=[[(280, 130), (360, 130), (360, 210), (280, 210)]]))
    estimator.update(_scene(), 0.0)
    assert not estimator.update(_scene(square_x=300), 0.1).moving
    other = estimator.update(_scene(square_x=100), 0.2)  # outside the polygon: counted
    assert other.moving and other.regions_xyxy[0][2] < 280


def test_regions_smaller_than_min_area_are_noise() -> None:
    estimator = MotionEstimator(MotionConfig(min_area=0.05))  # 5% of the frame; the square is 0.7%
    estimator.update(_scene(), 0.0)
    motion = estimator.update(_scene(square_x=300), 0.1)
    assert not motion.moving and motion.moving_fraction > 0


def test_a_change_over_the_whole_frame_is_motion_and_the_background_starts_again() -> None:
    estimator = MotionEstimator(MotionConfig())
    estimator.update(_scene(), 0.0)
    lights_on = estimator.update(_scene(brightness=200), 0.1)
    assert lights_on.moving and lights_on.moving_fraction > 0.5
    assert not estimator.update(_scene(brightness=200), 0.2).moving  # the lit scene is the background now


def test_a_still_object_becomes_background_after_background_s() -> None:
    estimator = MotionEstimator(MotionConfig(background_s=0.5))
    estimator.update(_scene(), 0.0)
    pts = [0.1 * i for i in range(1, 40)]
    moving = [estimator.update(_scene(square_x=300), t).moving for t in pts]  # put down, then left there
    assert moving[0] and not moving[-1]


def test_the_gate_runs_on_motion_and_on_refresh_and_counts_the_rest() -> None:
    gate = MotionGate(MotionConfig(refresh_s=1.0))
    still, moved = _scene(), _scene(square_x=300)
    decisions = [gate.decide(still, i / 10, due=True) for i in range(12)]  # 1.1 s of a still scene
    assert decisions == [True] + [False] * 9 + [True, False]  # the first frame, then the 1 s refresh
    assert gate.gated == 10 and gate.still
    assert gate.decide(moved, 1.2, due=True) and not gate.still
    assert not gate.decide(moved, 1.3, due=False)  # not due: never runs, never counted
    assert gate.gated == 10


def test_a_moving_track_keeps_the_detector_running_when_the_picture_shows_no_motion() -> None:
    gate = MotionGate(MotionConfig(refresh_s=100))
    still = _scene()

    def tracked(x: float) -> sv.Detections:
        return sv.Detections(xyxy=np.array([[x, 100, x + 40, 140]], np.float32), tracker_id=np.array([3]))

    assert gate.decide(still, 0.0, due=True)
    gate.saw(tracked(100))
    assert not gate.decide(still, 0.1, due=True)
    gate.saw(tracked(130))  # the track moved 30 px (> 1% of the diagonal) between two runs
    assert gate.decide(still, 0.2, due=True)
    gate.saw(tracked(130))
    assert not gate.decide(still, 0.3, due=True)


def test_a_still_scene_does_not_age_its_tracks_out() -> None:
    config = PipelineConfig.model_validate({"tracker": {"lost_track_s": 0.33, "minimum_consecutive_frames": 1}})
    boxes = sv.Detections(xyxy=np.array([[100, 100, 160, 200]], np.float32), confidence=np.array([0.9], np.float32),
                          class_id=np.zeros(1, int), data={"class_name": np.array(["person"])})

    def ids_after_a_gap(held: bool) -> tuple[int, int]:
        pipeline = Pipeline(config, Models(StandInDetector(0)), fps=10)
        frame = _scene()
        pipeline.apply(Frame(frame, 0, 0.0, "t"), boxes)
        first = pipeline.apply(Frame(frame, 1, 0.1, "t"), boxes).detections.tracker_id[0]  # confirmed
        for i in range(2, 52):  # five seconds without a detector run, far past the 1 s lost-track buffer
            pipeline.apply(Frame(frame, i, i / 10, "t"), None, still=held)
        after = pipeline.apply(Frame(frame, 52, 5.2, "t"), boxes).detections.tracker_id[0]
        return int(first), int(after)

    first, after = ids_after_a_gap(held=True)
    assert first == after  # the same person, still there
    first, after = ids_after_a_gap(held=False)
    assert first != after  # without gating the gap is time lost, and the track is gone


def test_a_live_stream_with_nothing_moving_is_gated_and_counted() -> None:
    # the only object enters at frame 60: before it the picture is still
    config = PipelineConfig.model_validate({"tracker": {"enabled": False}, "motion": {"refresh_s": 100}})
    detector = StandInDetector(0.001)
    stream = LiveStream("quiet", lambda: open_source("synthetic:?w=320&h=180&fps=30&frames=90&objects=1"
                                                     "&enter=60&realtime=1"),
                        config, Models(detector), LiveSettings())
    results = ResultList()
    stream.add_sink(results)
    stream.start()
    deadline = time.monotonic() + 20
    while stream.status in ("starting", "live") and time.monotonic() < deadline:
        time.sleep(0.05)
    stream.stop()
    assert stream.status == "ended" and stream.stats.motion_gating
    before = [r for r in results if r.frame.index < 60]
    after = [r for r in results if r.frame.index >= 60]
    assert sum(r.keyframe for r in before) == 1  # the first frame only
    assert sum(r.keyframe for r in after) >= 3  # the object moves: detected again
    # every still frame after the first run came back was a due keyframe, gated (how soon it came back, and how
    # many frames a loaded machine drops, vary: half of them is the floor)
    assert stream.stats.gated_keyframes >= len(before) // 2
    snapshot = stream.stats.snapshot()
    assert snapshot["gated_keyframes"] == stream.stats.gated_keyframes and snapshot["motion_gating"] is True
    assert f'streamvis_gated_keyframes_total{{stream="quiet"}} {stream.stats.gated_keyframes}' \
        in prometheus_text([stream.stats])
    # the frames with motion are counted: none while the picture is still, most once the object moves (the
    # background learns it a little, and a loaded machine drops frames)
    assert 0 < stream.stats.moving_frames <= len(after) and stream.stats.moving_frames >= len(after) // 2
    assert snapshot["moving_frames"] == stream.stats.moving_frames
    assert f'streamvis_moving_frames_total{{stream="quiet"}} {stream.stats.moving_frames}' \
        in prometheus_text([stream.stats])


def test_gating_is_on_live_and_off_offline_unless_asked() -> None:
    assert not MotionConfig().on(live=False) and MotionConfig().on(live=True)
    assert MotionConfig(enabled=True).on(live=False) and not MotionConfig(enabled=False).on(live=True)
    with pytest.raises(ValueError, match="at least 3 points"):
        MotionConfig(ignore=[[(0, 0), (10, 10)]])


def test_offline_gating_gives_the_same_keyframes_whatever_the_frames_in_flight() -> None:
    from streamvis.offline.runner import run_offline

    config = PipelineConfig.model_validate({"motion": {"enabled": True, "refresh_s": 100}})

    def keyframes(in_flight: int) -> tuple[list[int], int, int]:
        source = open_source("synthetic:?w=320&h=180&fps=30&frames=90&objects=1&enter=45")
        results = ResultList()
        outcome = run_offline(source, Pipeline(config, Models(StandInDetector(0.002)), source.fps), results,
                              in_flight=in_flight)
        return [r.frame.index for r in results if r.keyframe], outcome.detector_runs, outcome.gated_keyframes

    one, runs, gated = keyframes(1)
    assert keyframes(3) == (one, runs, gated)
    assert one[0] == 0 and all(i >= 45 for i in one[1:])  # nothing moves before the object enters
    assert runs == len(one) and runs + gated == 90
