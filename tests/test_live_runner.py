"""The live scheduler with a stand-in detector of controlled speed (it tests scheduling, not a model):
newest frame wins with drops counted, detector results applied when they arrive or dropped when stale,
one detector run at a time, status on end, and the Prometheus text."""

from __future__ import annotations

import re
import time

from streamvis.config import PipelineConfig
from streamvis.live.runner import LiveStream
from streamvis.live.settings import LiveSettings
from streamvis.live.stats import Latency, RateMeter, StreamStats, prometheus_text
from streamvis.pipeline.loading import Models
from streamvis.sources import open_source
from streamvis.testing.fakes import ResultList, StandInDetector


def _run(delay_s: float, settings: LiveSettings, fps: int = 60, frames: int = 90):
    config = PipelineConfig.model_validate({"tracker": {"enabled": False}})
    detector = StandInDetector(delay_s)
    stream = LiveStream("t", lambda: open_source(f"synthetic:?w=160&h=96&fps={fps}&frames={frames}&realtime=1"),
                        config, Models(detector), settings)
    results = ResultList()
    statuses = []
    stream.add_sink(results)
    stream.on_status(statuses.append)
    stream.start()
    deadline = time.monotonic() + 30
    while stream.status in ("starting", "live") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    stream.stop()
    assert results.closed  # a stopped stream closes its sinks
    return stream, detector, results, statuses


def test_fast_detector_applies_to_the_frame_it_ran_on() -> None:
    stream, detector, results, statuses = _run(0.002, LiveSettings())
    assert statuses == ["live", "ended"]
    assert stream.stats.frames_out == len(results) and stream.stats.dropped + len(results) == stream.stats.frames_in
    keyframes = [r for r in results if r.keyframe]
    assert len(keyframes) >= 0.8 * len(results)  # nearly every frame gets its own detections
    assert all(len(r.detections) == 1 for r in keyframes)
    assert detector.max_active == 1


def test_newest_frame_wins_and_drops_are_counted() -> None:
    # the detector takes 50 ms and the pipeline waits for it inline: ~20 fps out of a 60 fps source
    stream, detector, results, _ = _run(0.05, LiveSettings(inline_wait_ms=200), fps=60, frames=120)
    indices = [r.frame.index for r in results]
    assert indices == sorted(set(indices))  # never an older frame after a newer one
    assert stream.stats.dropped > 30 and stream.stats.dropped + len(results) == stream.stats.frames_in
    assert detector.max_active == 1 and detector.calls <= len(results) + 1


def test_slow_results_are_applied_late_and_carried_between() -> None:
    stream, detector, results, _ = _run(0.1, LiveSettings(inline_wait_ms=0, staleness_s=1.0), fps=60, frames=120)
    keyframes = [r for r in results if r.keyframe]
    assert 3 <= len(keyframes) < len(results) / 2  # a result every ~100 ms, applied when it arrives, not awaited
    first = next(i for i, r in enumerate(results) if r.keyframe)
    assert all(len(r.detections) == 1 for r in results[first:])  # carried on the frames in between
    assert stream.stats.stale_results == 0 and detector.max_active == 1


def test_stale_results_are_dropped() -> None:
    stream, _, results, _ = _run(0.3, LiveSettings(inline_wait_ms=0, staleness_s=0.05), fps=60, frames=90)
    assert stream.stats.stale_results >= 2 and not any(r.keyframe for r in results)


def test_failing_source_reports_status() -> None:
    config = PipelineConfig.model_validate({"tracker": {"enabled": False}})
    stream = LiveStream("bad", lambda: open_source("/no/such/file.mp4"), config, Models(StandInDetector(0)))
    statuses = []
    stream.on_status(statuses.append)
    stream.start()
    time.sleep(1)
    stream.stop()
    assert statuses and statuses[-1].startswith("failed: ") and "/no/such/file.mp4" in statuses[-1]


def test_rates_latency_and_prometheus_text() -> None:
    meter = RateMeter(window_s=1.0)
    for i in range(11):
        meter.tick(100.0 + i * 0.1)
    assert abs(meter.rate(101.0) - 10.0) < 0.6
    latency = Latency()
    for ms in (1, 2, 3, 4, 100):
        latency.add(ms)
    p50, p95 = latency.percentiles()
    assert p50 == 3 and 70 < p95 <= 100
    stats = StreamStats("cam")
    stats.frames_in = 10
    stats.count_drop("ingest", 2)
    stats.count_drop("encoder")
    stats.stage("detect", 4.0)
    stats.stage("detect", 40.0)
    text = prometheus_text([stats])
    assert 'streamvis_dropped_frames_total{stream="cam"} 2' in text
    assert 'streamvis_slot_dropped_frames_total{stream="cam",slot="encoder"} 1' in text
    assert 'streamvis_stage_latency_ms_bucket{stream="cam",stage="detect",le="5"} 1' in text
    assert 'streamvis_stage_latency_ms_bucket{stream="cam",stage="detect",le="50"} 2' in text
    assert 'streamvis_stage_latency_ms_count{stream="cam",stage="detect"} 2' in text
    assert text.endswith("\n") and stats.snapshot()["latency_ms"]["detect"]["p50"] == 22.0


def test_a_failing_detector_run_does_not_end_the_stream(caplog) -> None:
    config = PipelineConfig.model_validate({"tracker": {"enabled": False}})
    detector = StandInDetector(0.001, fail_every=3)
    stream = LiveStream("t", lambda: open_source("synthetic:?w=160&h=96&fps=60&frames=60&realtime=1"),
                        config, Models(detector), LiveSettings())
    results = ResultList()
    stream.add_sink(results)
    with caplog.at_level("ERROR", logger="streamvis.live.runner"):
        stream.start()
        deadline = time.monotonic() + 20
        while stream.status in ("starting", "live") and time.monotonic() < deadline:
            time.sleep(0.05)
        stream.stop()
    failed_on = [int(m.group(1)) for r in caplog.records
                 if (m := re.search(r"detector failed on frame (\d+)", r.getMessage()))]
    # how many frames a loaded machine drops on the way is not the point: the stream reads to its end,
    # and detections keep landing after a run has failed
    assert stream.status == "ended" and results[-1].frame.index == 59
    assert failed_on and any(r.keyframe and r.frame.index > failed_on[0] for r in results)


def test_looped_file_keeps_indices_and_detection_going(tmp_path) -> None:
    from support import make_clip

    clip = make_clip(tmp_path / "short.mp4", frames=10, fps=50)
    config = PipelineConfig.model_validate({"tracker": {"enabled": False}})
    detector = StandInDetector(0.001)
    stream = LiveStream("loop", lambda: open_source(str(clip)), config, Models(detector),
                        LiveSettings(loop_files=True))
    results = ResultList()
    stream.add_sink(results)
    stream.start()
    time.sleep(1.5)  # about seven plays of a 0.2 s clip
    stream.stop()
    indices = [r.frame.index for r in results]
    pts = [r.frame.pts for r in results]
    assert max(indices) >= 30 and indices == sorted(indices) and pts == sorted(pts)
    assert sum(r.keyframe for r in results[-10:]) >= 5  # still detecting after several loops


def test_frames_no_sink_wants_drawn_are_not_annotated() -> None:
    config = PipelineConfig.model_validate({"tracker": {"enabled": False}})
    stream = LiveStream("t", lambda: open_source("synthetic:?w=160&h=96&fps=30&frames=40&realtime=1"),
                        config, Models(StandInDetector(0.001)), LiveSettings())
    results = ResultList()
    stream.add_sink(results, wants_annotated=lambda: len(results) >= 15)  # a viewer arrives after 15 frames
    stream.start()
    deadline = time.monotonic() + 20
    while stream.status in ("starting", "live") and time.monotonic() < deadline:
        time.sleep(0.05)
    stream.stop()
    assert len(results) > 15
    assert all(r.annotated is None for r in results[:15])  # nobody watching: nothing drawn
    assert all(r.annotated is not None for r in results[15:])
