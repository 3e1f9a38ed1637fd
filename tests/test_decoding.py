"""Decoding only what is processed: while nothing needs every frame of a live camera (nobody watches, no annotated
recording, `detector.fps` set), the source passes on only `detector.fps` frames a second, on the detector's slots,
and the decoder leaves out the frames no other frame refers to, as long as the frames left keep up with
`detector.fps`; a viewer gets every frame again. First the source on the shared videos (H.264 with and without
B-frames), then the keyframes such frames get, then the rule on a stand-in source, then a real RTSP camera."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import numpy as np
import pytest
from support import CAR_VIDEO, PERSON_VIDEO, need, need_rtsp_server, rtsp_camera

from streamvis.config import PipelineConfig
from streamvis.frame import Frame
from streamvis.live.budget import BudgetPlan
from streamvis.live.decoding import LiveDecoding
from streamvis.live.keyframing import LiveDetection
from streamvis.live.runner import LiveStream
from streamvis.live.settings import LiveSettings
from streamvis.live.stats import StreamStats, prometheus_text
from streamvis.pipeline.keyframes import LiveKeyframes
from streamvis.pipeline.loading import Models
from streamvis.pipeline.step import Pipeline
from streamvis.rate import RateSlots
from streamvis.sources import open_source
from streamvis.sources.base import Source
from streamvis.testing.fakes import StandInDetector


def test_the_source_leaves_out_the_frames_nothing_refers_to_and_keeps_their_times() -> None:
    need(PERSON_VIDEO)
    whole = [round(frame.pts, 6) for frame in itertools.islice(open_source(str(PERSON_VIDEO)), 600)]
    source = open_source(str(PERSON_VIDEO))
    kept = []
    for frame in source:
        kept.append(round(frame.pts, 6))
        if len(kept) == 100:  # 100 frames decoded whole: the share of frames others refer to is known
            assert source.reference_fps is not None and source.fps is not None
            assert 0.2 * source.fps < source.reference_fps < 0.7 * source.fps  # IBBP: about 4 of 10 a second
            source.references_only = True
        if kept[-1] >= whole[-1]:
            break
    source.close()
    assert kept[:100] == whole[:100]
    assert set(kept) <= set(whole)  # each frame kept at its own time
    assert len(kept) < 0.7 * len(whole)  # most frames after the 100th left out
    assert source.report.skipped_frames == len(whole) - len(kept)


@pytest.mark.parametrize(("video", "max_fps", "gaps"), [
    (CAR_VIDEO, 5.0, {2, 3}),  # 12.5 fps: frames 3, 2, 3, 2 apart, 5 a second on average
    (PERSON_VIDEO, 2.5, {4}),  # 10 fps: every fourth frame
])
def test_past_max_fps_frames_are_decoded_but_not_passed_on(video, max_fps, gaps) -> None:
    need(video)
    whole = [round(frame.pts, 6) for frame in itertools.islice(open_source(str(video)), 200)]
    source = open_source(str(video))
    source.max_fps = max_fps
    kept = [round(frame.pts, 6) for frame in itertools.islice(source, 40)]  # within the 200 frames
    source.close()
    assert kept[0] == whole[0] and set(kept) <= set(whole)  # each frame passed on at its own time
    positions = [whole.index(pts) for pts in kept]
    assert {b - a for a, b in itertools.pairwise(positions)} == gaps
    assert len(kept) / (kept[-1] - kept[0]) == pytest.approx(max_fps, rel=0.05)
    assert source.report.past_rate_frames == positions[-1] + 1 - len(kept)  # the others: decoded, not passed on
    source.max_fps = None  # every frame again
    assert source._past_rate(0.0) is False


def test_only_the_frames_others_refer_to_still_give_max_fps_when_they_come_a_little_more_often() -> None:
    """The person video's reference frames come 0.3 s apart (IBBP at 10 fps): at 3 a second each slot takes the
    reference frame nearest it, a little early or late, not every other one (2 a second before)."""
    need(PERSON_VIDEO)
    source = open_source(str(PERSON_VIDEO))
    kept = []
    for frame in source:
        if frame.index == 100:  # the share of frames others refer to is known
            source.references_only, source.max_fps = True, 3.0
        if frame.index >= 100:
            kept.append(frame.pts)
        if len(kept) == 60:
            break
    source.close()
    assert len(kept) / (kept[-1] - kept[0]) == pytest.approx(3.0, rel=0.1)


def test_a_keyframe_the_busy_detector_missed_gets_the_next_frame_not_the_next_slot() -> None:
    need(CAR_VIDEO)
    whole = [round(frame.pts, 6) for frame in itertools.islice(open_source(str(CAR_VIDEO)), 60)]
    source = open_source(str(CAR_VIDEO))
    source.max_fps = 5.0
    kept = []
    for frame in itertools.islice(source, 8):
        kept.append(whole.index(round(frame.pts, 6)))
        if len(kept) == 3:
            source.pass_next_frame = True  # the third found the detector busy
    source.close()
    assert kept[3] == kept[2] + 1  # the very next frame
    assert kept[:3] + kept[4:] == [0, 3, 5, 8, 10, 13, 15]  # the slots as planned, 5 a second at 12.5 fps
    assert not source.pass_next_frame


def test_a_request_left_from_before_the_cap_passes_no_extra_frame() -> None:
    need(CAR_VIDEO)
    whole = [round(frame.pts, 6) for frame in itertools.islice(open_source(str(CAR_VIDEO)), 60)]
    source = open_source(str(CAR_VIDEO))
    frames = iter(source)
    source.pass_next_frame = True  # asked while every frame was passed on anyway
    first = whole.index(round(next(frames).pts, 6))
    source.max_fps = 5.0  # capping begins: the slots alone decide
    kept = [whole.index(round(frame.pts, 6)) for frame in itertools.islice(frames, 6)]
    source.close()
    assert (first, kept[0]) == (0, 1)  # the cap's slots begin at the first frame it sees
    assert [b - a for a, b in itertools.pairwise(kept)] in ([3, 2, 3, 2, 3], [2, 3, 2, 3, 2])  # no frame between


def test_frames_passed_at_the_detector_rate_each_get_a_run() -> None:
    # a run slower than the inline wait (60 against 40 ms) but done before the next frame: the detector is free
    # again on every frame, as the source passes them under max_fps
    config = PipelineConfig.model_validate({"detector": {"fps": 5}, "tracker": {"enabled": False},
                                            "motion": {"enabled": False}})
    detector = StandInDetector(0.06)
    pipeline = Pipeline(config, Models(detector), narration="worker", interactive=True)
    stats = StreamStats("cam")
    detection = LiveDetection("cam", pipeline, config, stats, LiveSettings(), lambda: 0)
    image = np.zeros((64, 64, 3), np.uint8)
    try:
        for i in range(7):
            if i:
                time.sleep(0.2)
            detection.step(Frame(image, i, 0.2 * i, "cam"), BudgetPlan())
            assert not detection.missed
        detection.step(Frame(image, 7, 1.4, "cam"), BudgetPlan())  # at once: the detector is still busy
        assert detection.missed  # the source then passes the next frame too
        time.sleep(0.1)
    finally:
        detection.close()
    assert detector.calls == 7  # one run a frame
    assert stats.keyframes == 6  # each applied on the next frame, the last one's still to come


def test_the_keyframe_slots_take_every_frame_the_source_passes_even_a_frame_out_of_step() -> None:
    # a 12.5 fps camera at detector.fps 5, passed on under max_fps from its 8th frame: the keyframes ran before,
    # and miss a slot once while the detector is busy, so their slots and the source's stand a frame apart
    config = PipelineConfig.model_validate({"detector": {"fps": 5}})
    keyframes = LiveKeyframes(1, 1 / 5)
    LiveDecoding("cam", config, StreamStats("cam"), lambda: False, keyframes.slots).step(
        StandInSource(12.5, 12.5), now=0.0)
    assert keyframes.slots.early_s == pytest.approx(0.1)  # half the source's interval
    source_slots = RateSlots(1 / 5)
    runs = passed = 0
    for i in range(60 * 25 // 2):  # 60 s
        pts = i / 12.5
        if i >= 7 and not source_slots.take(pts):
            continue
        passed += 1
        if keyframes.due(i, pts, detector_free=passed != 20):
            keyframes.started(i, pts)
            runs += 1
    assert runs / 60 == pytest.approx(5, rel=0.02)  # the busy slot alone lost (without early_s: 2.5 a second)


class StandInSource(Source):
    """A live source whose share of frames others refer to the test sets."""

    skips_frames = True

    def __init__(self, fps: float, references_fps: float | None) -> None:
        super().__init__("stand-in", "stand-in", live=True)
        self.fps = fps
        self.references = references_fps

    @property
    def reference_fps(self) -> float | None:
        return self.references

    def frames(self) -> Iterator[Frame]:
        return iter(())


@pytest.mark.parametrize(("detector_fps", "references_fps", "needed", "skips"), [
    (5.0, 10.0, False, True),  # a 30 fps camera sending IBB: 10 frames a second others refer to, 5 needed
    (5.0, 4.0, False, False),  # what is left would not keep up with the detector
    (5.0, 10.0, True, False),  # someone watches
    (None, 10.0, False, False),  # no rate: the detector runs whenever it is free and may use every frame
    (5.0, 30.0, False, False),  # no B-frames: nothing to leave out
    (5.0, None, False, False),  # not measured yet
])
def test_only_what_is_processed_is_decoded_when_nothing_needs_every_frame(detector_fps, references_fps, needed,
                                                                          skips) -> None:
    config = PipelineConfig.model_validate({"detector": {"fps": detector_fps}})
    stats = StreamStats("cam")
    decoding = LiveDecoding("cam", config, stats, lambda: needed)
    source = StandInSource(30.0, references_fps)
    decoding.step(source, now=0.0)
    assert source.references_only is skips and stats.references_only is skips
    # whatever the decoder can leave out, only detector.fps frames a second are processed while nothing needs more
    assert source.max_fps == (detector_fps if detector_fps is not None and not needed else None)


def test_a_viewer_gets_every_frame_again_and_the_setting_turns_it_off() -> None:
    needed = [False]
    config = PipelineConfig.model_validate({"detector": {"fps": 5}})
    decoding = LiveDecoding("cam", config, StreamStats("cam"), lambda: needed[0])
    source = StandInSource(30.0, 10.0)
    decoding.step(source, now=0.0)
    assert source.references_only
    needed[0] = True
    decoding.step(source, now=0.5)  # looked at once a second
    assert source.references_only
    decoding.step(source, now=1.0)
    assert not source.references_only and source.max_fps is None
    off = PipelineConfig.model_validate({"detector": {"fps": 5}, "source": {"skip_unneeded_frames": False}})
    untouched = StandInSource(30.0, 10.0)
    LiveDecoding("cam", off, StreamStats("cam"), lambda: False).step(untouched, now=0.0)
    assert not untouched.references_only and untouched.max_fps is None


def test_a_real_rtsp_camera_nobody_watches_is_decoded_in_part_until_a_sink_wants_every_frame() -> None:
    need_rtsp_server()
    need(PERSON_VIDEO)
    # the person video: 10 fps, IBBP (about 4 frames a second others refer to); detected at most twice a second
    config = PipelineConfig.model_validate({"detector": {"fps": 2}, "tracker": {"enabled": False}})
    with rtsp_camera("person", PERSON_VIDEO) as url:
        stream = LiveStream("person", lambda: open_source(url, config.source), config,
                            Models(StandInDetector(0.001)), None)
        stream.start()
        try:
            deadline = time.monotonic() + 30
            while not stream.stats.references_only and time.monotonic() < deadline:
                time.sleep(0.2)
            assert stream.stats.references_only, stream.status
            counted = stream.stats.frames_in
            runs = stream.stats.keyframes + stream.stats.gated_keyframes
            time.sleep(4.0)
            processed_per_s = (stream.stats.frames_in - counted) / 4.0
            assert 1.0 < processed_per_s < 3.0  # about 2 a second (detector.fps), not 10
            # each of them a keyframe: detected, or gated when nothing moved
            assert (stream.stats.keyframes + stream.stats.gated_keyframes - runs) / 4.0 > 1.0
            assert stream.stats.skipped_frames > 0 and stream.stats.past_rate_frames > 0
            snapshot = stream.stats.snapshot()
            assert snapshot["references_only"] is True and snapshot["past_rate_frames"] > 0
            metrics = prometheus_text([stream.stats])
            assert 'streamvis_skipped_frames_total{stream="person"}' in metrics
            assert 'streamvis_past_rate_frames_total{stream="person"}' in metrics

            class Drawn:  # a sink that wants every frame drawn (an annotated recording would)
                def write(self, result: object) -> None:
                    pass

                def close(self) -> None:
                    pass

            stream.add_sink(Drawn())  # type: ignore[arg-type]
            deadline = time.monotonic() + 10
            while stream.stats.references_only and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not stream.stats.references_only
            time.sleep(1.0)
            counted = stream.stats.frames_in
            time.sleep(3.0)
            assert (stream.stats.frames_in - counted) / 3.0 > 8.0  # every frame again
        finally:
            stream.stop()
