"""The offline runner's threads: every frame in order, errors raised, Ctrl-C leaves a playable file."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import av
import pytest

from streamvis.config import PipelineConfig
from streamvis.errors import DecodeError
from streamvis.offline.runner import run_offline
from streamvis.pipeline.loading import Models
from streamvis.pipeline.step import Pipeline
from streamvis.sinks import EventsWriter, Sinks, VideoWriter
from streamvis.sources import open_source
from streamvis.testing.fakes import StandInDetector


def _decode_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.parametrize("every_n", [1, 4])
def test_every_frame_out_in_order_with_keyframes(tmp_path: Path, every_n: int) -> None:
    config = PipelineConfig.model_validate({"detector": {"every_n_frames": every_n}})
    detector = StandInDetector(confidence=0.9)
    source = open_source("synthetic:?frames=41&w=160&h=96")
    pipeline = Pipeline(config, Models(detector), source.fps)
    writer = VideoWriter(tmp_path / "out.mp4", source.fps)
    events = EventsWriter(tmp_path / "out.jsonl")
    outcome = run_offline(source, pipeline, Sinks([writer, events]))
    Sinks([writer, events]).close()
    assert outcome.frames == 41 and not outcome.interrupted
    assert detector.calls == len(range(0, 41, every_n))
    assert _decode_count(tmp_path / "out.mp4") == 41
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 41 and '"frame_index":40' in lines[-1]
    assert all('"xyxy":[10.0,10.0,50.0,50.0]' in line for line in lines)  # carried between keyframes


def test_ctrl_c_keeps_what_was_processed(tmp_path: Path) -> None:
    source = open_source("synthetic:?frames=500&w=160&h=96")
    pipeline = Pipeline(PipelineConfig(), Models(StandInDetector(confidence=0.9, interrupt_at=60)), source.fps)
    writer = VideoWriter(tmp_path / "out.mp4", source.fps)
    outcome = run_offline(source, pipeline, writer)
    writer.close(complete=False)
    assert outcome.interrupted and outcome.frames == 59
    assert _decode_count(tmp_path / "out.mp4") == 59


def test_decode_thread_error_is_raised_not_lost(tmp_path: Path) -> None:
    source = open_source("synthetic:?frames=100&w=160&h=96")
    original = source.frames

    def failing():
        for frame in original():
            if frame.index == 20:
                raise DecodeError("boom at 20")
            yield frame

    source.frames = failing  # type: ignore[method-assign]
    pipeline = Pipeline(PipelineConfig(), Models(StandInDetector(confidence=0.9)), source.fps)
    writer = VideoWriter(tmp_path / "out.mp4", source.fps)
    with pytest.raises(DecodeError, match="boom at 20"):
        run_offline(source, pipeline, writer)
    writer.close(complete=False)
    assert _decode_count(tmp_path / "out.mp4") == 20
    assert not [t for t in threading.enumerate() if t.name.startswith(("decode-", "encode-"))]


@pytest.mark.parametrize("every_n", [1, 3])
def test_frames_in_flight_change_nothing_in_the_output(person_video: Path, models_dir: Path, tmp_path: Path,
                                                       every_n: int) -> None:
    """The real YOLOX-nano and ByteTrack on 90 frames of the shared video: with 1 and with 4 frames in the
    detector at once, the JSONL (detections, track ids) and the decoded MP4 frames are identical."""
    from support import cut_clip, run_cli

    clip = cut_clip(person_video, tmp_path / "clip.mp4", 90)
    outputs = {}
    for depth in (1, 4):
        out, events = tmp_path / f"out-{depth}.mp4", tmp_path / f"out-{depth}.jsonl"
        result = run_cli("process", str(clip), "-o", str(out), "--events", str(events), "--in-flight", str(depth),
                         "--set", f"detector.every_n_frames={every_n}", "-q", "--models-dir", str(models_dir))
        assert result.returncode == 0, result.stderr
        with av.open(str(out)) as container:
            frames = [f.to_ndarray(format="rgb24").tobytes() for f in container.decode(video=0)]
        outputs[depth] = (events.read_text().splitlines(), frames)
    (events_1, frames_1), (events_4, frames_4) = outputs[1], outputs[4]
    assert len(events_1) == len(frames_1) == 90
    assert any(d["track_id"] is not None for line in events_1 for d in json.loads(line)["detections"]), \
        "the tracker ran"
    assert events_4 == events_1
    assert frames_4 == frames_1
