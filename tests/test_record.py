"""Recording live streams: one sink protocol makes `serve --record DIR` an MP4 + JSONL per stream, rolled over by
stream time, written off the live pipeline's thread (frames it cannot keep up with are dropped and counted)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import av
import pytest

from streamvis.config import PipelineConfig
from streamvis.frame import Result
from streamvis.pipeline.loading import Models
from streamvis.pipeline.step import Pipeline
from streamvis.sinks.record import SegmentedRecorder, ThreadedSink
from streamvis.sources import open_source
from streamvis.testing.fakes import StandInDetector


def _results(frames: int, fps: int = 10, start_pts: float = 0.0) -> list[Result]:
    """Annotated results of a synthetic stream whose timestamps start at `start_pts` (joined mid-stream)."""
    import dataclasses

    source = open_source(f"synthetic:?frames={frames}&w=160&h=96&fps={fps}")
    pipeline = Pipeline(PipelineConfig(), Models(StandInDetector()), source.fps)
    return [pipeline.process(dataclasses.replace(f, pts=f.pts + start_pts)) for f in source.frames()]


def _video(path: Path) -> tuple[int, float, float]:
    """(frames, first pts s, last pts s) of an MP4, decoded."""
    with av.open(str(path)) as container:
        pts = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    return len(pts), pts[0], pts[-1]


def test_segments_roll_over_by_stream_time_and_each_plays_from_zero(tmp_path: Path) -> None:
    recorder = SegmentedRecorder(tmp_path, "cam", segment_s=2.0)
    for result in _results(50, start_pts=60.0):  # 5 s of a stream joined at minute 1
        recorder.write(result)
    recorder.close()
    assert [p.parent for p in recorder.segments] == [tmp_path / "cam"] * 3
    counts = []
    for mp4 in recorder.segments:
        frames, first, last = _video(mp4)
        lines = [json.loads(line) for line in mp4.with_suffix(".jsonl").read_text().splitlines()]
        assert len(lines) == frames and first == pytest.approx(0.0, abs=1e-3)  # plays on its own
        assert lines[0]["pts"] >= 60.0 and last == pytest.approx(lines[-1]["pts"] - lines[0]["pts"], abs=1e-3)
        counts.append(frames)
    assert counts == [20, 20, 10]
    indices = [json.loads(line)["frame_index"] for mp4 in recorder.segments
               for line in mp4.with_suffix(".jsonl").read_text().splitlines()]
    assert indices == list(range(50))  # nothing lost at the borders


def test_a_recorder_lists_only_its_newest_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streamvis.sinks.record.RECENT_SEGMENTS", 2)  # a recorder runs for months: its list is bounded
    recorder = SegmentedRecorder(tmp_path, "cam", segment_s=1.0)
    for result in _results(50):
        recorder.write(result)
    recorder.close()
    assert len(list((tmp_path / "cam").glob("*.mp4"))) == 5 and len(recorder.segments) == 2
    indices = [json.loads(line)["frame_index"] for mp4 in recorder.segments
               for line in mp4.with_suffix(".jsonl").read_text().splitlines()]
    assert indices == list(range(30, 50))  # the last two seconds' segments, in order


class SlowSink:
    """A sink slower than the stream (a slow disk)."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.closed = False
        self.release = threading.Event()

    def write(self, result: Result) -> None:
        self.release.wait(5)
        self.written.append(result.frame.index)

    def close(self) -> None:
        self.closed = True


def test_a_threaded_sink_never_blocks_the_stream_and_counts_what_it_drops() -> None:
    slow, drops = SlowSink(), []
    sink = ThreadedSink(slow, "record", "cam", capacity=4, on_drop=lambda where, n: drops.append((where, n)))
    start = time.monotonic()
    results = _results(20)
    for result in results:
        sink.write(result)
    assert time.monotonic() - start < 3  # the writer was never held up by the slow sink
    slow.release.set()
    sink.close()
    assert drops[0] == ("record", 0)  # listed (at 0) from the start, wherever drops are shown
    assert slow.closed and len(slow.written) + sum(n for _, n in drops) == 20
    assert {where for where, _ in drops} == {"record"} and sink.dropped == sum(n for _, n in drops) > 0
    assert slow.written == sorted(slow.written) and len(slow.written) >= 4


def test_serve_records_every_stream_in_segments(tmp_path: Path, person_video: Path, models_dir: Path) -> None:
    from streamvis_client import watch
    from support import cut_clip
    from test_serve import Server

    from streamvis.server.aiortc_compat import use_loopback_ice

    use_loopback_ice(only=True)
    clip = cut_clip(person_video, tmp_path / "short.mp4", 45)  # 4.5 s at 10 fps, served once
    folder = tmp_path / "recordings"
    # every frame detected (motion gating off): what is compared is what is recorded, whatever moves
    server = Server("--source", str(clip), "--models-dir", str(models_dir), "--record", str(folder),
                    "--record-segment-s", "2", "--set", "motion.enabled=false")
    try:
        server.wait_ready(stream="short")
        seen = asyncio.run(watch(server.url, "short", frames=1000, timeout_s=10))  # watch until the clip ends
        published = server.metric("frames_out_total")
        assert json.loads(server.get("/healthz")[1])["streams"]["short"] == "ended"
    finally:
        log = server.stop()
    segments = sorted((folder / "short").glob("*.mp4"))
    assert len(segments) == 3, log
    viewer = {m["frame_index"]: m["detections"] for m in seen.frame_messages}
    total, compared, recorded = 0, 0, []
    for mp4 in segments:
        frames, first, _ = _video(mp4)
        lines = [json.loads(line) for line in mp4.with_suffix(".jsonl").read_text().splitlines()]
        assert frames == len(lines) and first == pytest.approx(0.0, abs=1e-3)
        # each segment's records are what the viewer was sent for those frames (how many frames a segment
        # keeps, and so whether a short one shows anyone, depends on how many the live loop had to drop)
        for line in lines:
            if line["frame_index"] in viewer:
                assert line["detections"] == viewer[line["frame_index"]], line["frame_index"]
                compared += 1
        recorded += [d["class_name"] for line in lines for d in line["detections"]]
        total += frames
    assert total == published  # every published frame is in the recording
    assert compared >= published // 2, (compared, published)
    assert {"person", "tvmonitor"} & set(recorded), recorded
