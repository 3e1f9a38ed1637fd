"""Decoding only what is processed: while nothing needs every frame of a live camera (nobody watches, no annotated
recording, `detector.fps` set), the decoder leaves out the frames no other frame refers to, as long as the frames
left keep up with `detector.fps`; a viewer gets every frame again. First the source on the shared person video
(H.264 with B-frames), then the rule on a stand-in source, then a real RTSP camera."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
from support import PERSON_VIDEO, need, need_rtsp_server, rtsp_camera

from streamvis.config import PipelineConfig
from streamvis.frame import Frame
from streamvis.live.decoding import LiveDecoding
from streamvis.live.runner import LiveStream
from streamvis.live.stats import StreamStats, prometheus_text
from streamvis.pipeline.loading import Models
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
    assert not source.references_only
    off = PipelineConfig.model_validate({"detector": {"fps": 5}, "source": {"skip_unneeded_frames": False}})
    untouched = StandInSource(30.0, 10.0)
    LiveDecoding("cam", off, StreamStats("cam"), lambda: False).step(untouched, now=0.0)
    assert not untouched.references_only


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
            time.sleep(3.0)
            rate_in_part = (stream.stats.frames_in - counted) / 3.0
            assert 1.5 < rate_in_part < 7.0  # about 4 a second, not 10
            assert stream.stats.skipped_frames > 0 and stream.stats.keyframes > 0
            snapshot = stream.stats.snapshot()
            assert snapshot["references_only"] is True
            assert 'streamvis_skipped_frames_total{stream="person"}' in prometheus_text([stream.stats])

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
