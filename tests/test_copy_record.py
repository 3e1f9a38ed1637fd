"""Recording a live camera as it comes: a real RTSP camera (GStreamer's rtsp-server replaying the shared car video,
H.264 and AAC, without re-encoding) into segments of its own packets, each starting on a keyframe, with the JSONL
of its frames beside it, timed by the segment's video."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from support import CAR_VIDEO, need_rtsp_server, rtsp_camera

from streamvis.config import PipelineConfig
from streamvis.live.runner import LiveStream
from streamvis.pipeline.loading import Models
from streamvis.sinks.copy_record import CopyRecorder
from streamvis.sinks.record import SegmentedRecorder
from streamvis.sources import open_source
from streamvis.testing.fakes import StandInDetector

need_rtsp_server()


@pytest.fixture
def car_camera() -> Iterator[str]:
    """The shared car video (768x432, 12.5 fps, a keyframe every 4.8 s, AAC audio) as an RTSP camera."""
    with rtsp_camera("car", CAR_VIDEO, audio=True) as url:
        yield url


def _run(stream: LiveStream, seconds: float) -> None:
    stream.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and stream.status in ("starting", "live"):
        time.sleep(0.1)
    stream.stop()


def _keyframe_images(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0) if f.key_frame]


def test_a_camera_is_recorded_as_its_own_packets_in_segments_with_their_detections(car_camera: str,
                                                                                   tmp_path: Path) -> None:
    config = PipelineConfig.model_validate({"tracker": {"enabled": False}})
    stream = LiveStream("car", lambda: open_source(car_camera, config.source), config,
                        Models(StandInDetector(0.001)))
    recorder = CopyRecorder(tmp_path, "car", segment_s=3.0, on_drop=stream.stats.count_drop)
    stream.add_packet_tap(recorder)
    stream.add_sink(recorder, recorder.wants_annotated)
    _run(stream, 12.0)  # the camera's keyframes come every 4.8 s: two whole segments and the start of a third

    assert len(recorder.segments) >= 2 and recorder.dropped == 0 and stream.stats.drops["record"] == 0
    assert not recorder.wants_annotated()  # copying: nothing was drawn for the recording
    originals = _keyframe_images(CAR_VIDEO)
    for path in list(recorder.segments)[:2]:
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            assert [a.codec_context.name for a in container.streams.audio] == ["aac"]  # the audio kept
            frames = list(container.decode(video))
            first = frames[0]
            assert first.key_frame and first.pts == 0  # plays from its first frame, its time from 0
            pts_s = [float(f.pts * video.time_base) for f in frames]
        assert len(frames) >= 50  # 4.8 s at 12.5 fps, less the frames before the camera's first keyframe
        # the packets were copied: a segment's first frame is, to the bit, one of the camera's own keyframes
        assert any(np.array_equal(first.to_ndarray(format="bgr24"), image) for image in originals)
        records = [json.loads(line) for line in path.with_suffix(".jsonl").read_text().splitlines()]
        assert len(records) >= 10  # one per frame the live pipeline took (one it dropped at ingest has none)
        for record in records:  # each record names a frame of this segment's video, by its time in it
            assert min(abs(record["video_pts"] - t) for t in pts_s) < 1e-3
            assert record["detections"][0]["class_name"] == "thing"
        # the stream's clock and the segment's run together: a frame's pts is its time in the segment plus where
        # the segment began (the recording never shifts the times of the packets the stream decodes)
        starts = {round(r["pts"] - r["video_pts"], 3) for r in records}
        assert max(starts) - min(starts) < 0.01, starts
        indices = [r["frame_index"] for r in records]
        assert indices == sorted(indices)


def test_a_source_with_no_packets_to_copy_is_recorded_annotated(tmp_path: Path) -> None:
    config = PipelineConfig.model_validate({"tracker": {"enabled": False}})
    stream = LiveStream("pattern", lambda: open_source("synthetic:?w=160&h=96&fps=20&frames=40&realtime=1"),
                        config, Models(StandInDetector(0.001)))
    made: list[SegmentedRecorder] = []

    def annotated() -> SegmentedRecorder:
        made.append(SegmentedRecorder(tmp_path, "pattern", 60.0))
        return made[-1]

    recorder = CopyRecorder(tmp_path, "pattern", segment_s=60.0, fallback=annotated)
    stream.add_packet_tap(recorder)
    stream.add_sink(recorder, recorder.wants_annotated)
    _run(stream, 10.0)
    assert recorder.wants_annotated() and not recorder.segments  # nothing copied: a test pattern has no packets
    assert len(made) == 1 and made[0].segments
    with av.open(str(made[0].segments[0])) as container:
        assert sum(1 for _ in container.decode(video=0)) >= 20
