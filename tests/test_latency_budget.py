"""The latency budget (`streamvis.live.budget`): a stream over its budget gives up quality one step at a time in
the documented order, takes it back when load falls, never changes faster than its hold time or its limit a
minute, and stops probing a step up that does not hold. Then a live stream with a stand-in detector of known
cost holds a budget by itself, and shows its state in its stats and `/metrics`."""

from __future__ import annotations

import itertools
import time

import pytest

from streamvis.config import PipelineConfig
from streamvis.live.budget import LADDER, BudgetBoard, BudgetPlan, LatencyBudget, ladder_for
from streamvis.live.runner import LiveStream
from streamvis.live.settings import LiveSettings
from streamvis.live.stats import StreamStats, prometheus_text
from streamvis.pipeline.loading import Models
from streamvis.sources import open_source
from streamvis.testing.fakes import ResultList, StandInDetector, StandInVideoSegmenter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _second(budget: LatencyBudget, clock: Clock, ms: float, samples: int = 30) -> BudgetPlan | None:
    """One second of frames at `ms` each, then the controller's look."""
    for _ in range(samples):
        budget.stats.stage("frame_to_result", ms)
    clock.now += 1.0
    return budget.step()


def _budget(**kwargs: float) -> tuple[LatencyBudget, Clock]:
    clock = Clock()
    return LatencyBudget(50.0, StreamStats("s"), clock=clock, **kwargs), clock  # type: ignore[arg-type]


def test_over_budget_it_steps_down_once_per_hold_and_stops_at_the_last_step() -> None:
    budget, clock = _budget(hold_s=2.0)
    levels = []
    for _ in range(30):
        _second(budget, clock, 80.0)
        levels.append(budget.level)
    assert levels[:5] == [1, 1, 2, 2, 3]  # at once, then no faster than the hold time
    assert budget.level == len(LADDER) - 1 and "at the last step" in budget.reason
    assert budget.changes == len(LADDER) - 1


def test_the_ladder_moves_the_knobs_in_the_documented_order() -> None:
    assert LADDER[0] == BudgetPlan() and LADDER[0].describe() == "full quality"
    assert not LADDER[1].wait_for_detector and LADDER[1].detector_every == 1  # first: stop waiting
    order = []
    for before, after in itertools.pairwise(LADDER):
        changed = [name for name in ("wait_for_detector", "detector_every", "propagate_every", "narration_gap_s",
                                     "output_scale", "output_every") if getattr(before, name) != getattr(after, name)]
        order.append(changed[0])
    firsts = list(dict.fromkeys(order))
    assert firsts == ["wait_for_detector", "detector_every", "propagate_every", "narration_gap_s", "output_scale",
                      "output_every"]


def test_a_pipeline_without_a_segmenter_or_model_narrator_skips_their_steps() -> None:
    ladder = ladder_for(propagates=False, narrates=False)
    assert all(plan.propagate_every == 1 and plan.narration_gap_s == 0 for plan in ladder)
    assert len(set(ladder)) == len(ladder)  # every step changes something
    assert len(ladder) < len(LADDER)


def test_calm_for_recover_s_it_steps_back_up_and_between_the_lines_it_holds() -> None:
    budget, clock = _budget(hold_s=1.0, recover_s=5.0)
    for _ in range(3):
        _second(budget, clock, 80.0)
    level = budget.level
    assert level >= 2
    for _ in range(10):  # 40 ms: under the budget, over 0.6 of it: nothing to gain, nothing to fear
        assert _second(budget, clock, 40.0) is None
    assert budget.level == level
    ups = [_second(budget, clock, 10.0) for _ in range(12)]
    assert sum(plan is not None for plan in ups) == 2 and budget.level == level - 2  # one step per 5 calm s
    assert "under 0.6" in budget.reason


def test_a_step_up_that_does_not_hold_waits_twice_as_long_next_time() -> None:
    budget, clock = _budget(hold_s=0.0, recover_s=5.0)
    _second(budget, clock, 80.0)
    assert budget.level == 1

    def seconds_until_up() -> int:
        for waited in range(1, 100):
            if _second(budget, clock, 10.0) is not None:
                return waited
        raise AssertionError("never stepped up")

    first = seconds_until_up()
    _second(budget, clock, 80.0)  # the full quality does not hold: back down at once
    second = seconds_until_up()
    _second(budget, clock, 80.0)
    third = seconds_until_up()
    assert (first, second, third) == (6, 11, 21)  # 5 s, then 10 s, then 20 s of calm (plus the first look)


def test_a_step_up_known_not_to_fit_is_not_tried() -> None:
    """Frames stopped waiting for a detector that takes 45 ms of a 50 ms budget: however calm the frames are without
    waiting (10 ms), waiting again would add the detector's run, so the controller stays; once the detector is
    fast (5 ms), it steps up after its calm time."""
    budget, clock = _budget(hold_s=0.0, recover_s=5.0)
    _second(budget, clock, 80.0)
    assert budget.level == 1 and not budget.plan.wait_for_detector

    def calm_seconds(detect_ms: float, seconds: int) -> list[BudgetPlan | None]:
        plans = []
        for _ in range(seconds):
            for _ in range(30):
                budget.stats.stage("detect", detect_ms)
            plans.append(_second(budget, clock, 10.0))
        return plans

    assert calm_seconds(45.0, 30) == [None] * 30 and budget.level == 1
    assert "would add about 45 ms" in budget.reason
    assert any(plan is not None for plan in calm_seconds(5.0, 8)) and budget.level == 0


def test_a_larger_video_is_predicted_from_the_encoder_time_at_this_size() -> None:
    ladder = (BudgetPlan(), BudgetPlan(output_scale=0.5))
    clock = Clock()
    budget = LatencyBudget(50.0, StreamStats("s"), ladder=ladder, clock=clock, hold_s=0.0, recover_s=2.0)
    _second(budget, clock, 80.0)
    assert budget.level == 1
    for _ in range(30):
        budget.stats.stage("encode", 12.0)  # at half size: four times the pixels would take about 48 ms
    for _ in range(10):
        _second(budget, clock, 20.0)
    assert budget.level == 1 and "would add about 36 ms" in budget.reason


def test_no_more_changes_a_minute_than_allowed_and_nothing_on_too_few_samples() -> None:
    budget, clock = _budget(hold_s=0.0, max_changes_per_minute=3)
    for _ in range(20):
        _second(budget, clock, 80.0)
    assert budget.changes == 3
    quiet, quiet_clock = _budget()
    assert _second(quiet, quiet_clock, 500.0, samples=3) is None and quiet.level == 0


def test_the_video_latency_counts_while_it_is_encoded() -> None:
    budget, clock = _budget()
    for _ in range(30):
        budget.stats.stage("frame_to_result", 5.0)
        budget.stats.stage("server_latency", 90.0)
    clock.now += 1.0
    assert budget.step() is not None and budget.reason.startswith("server_latency p95 90 ms")


def test_a_watched_stream_over_budget_takes_steps_from_unwatched_ones_first() -> None:
    """One plan over the process: the watched stream keeps its quality while an unwatched one gives steps; only
    when that one has none left does the watched one step down. Pressure gone, the steps come back."""
    clock = Clock()
    board = BudgetBoard()
    watched = LatencyBudget(50.0, StreamStats("watched"), clock=clock, board=board, watched=lambda: True,
                            hold_s=0.0, recover_s=3.0)
    unwatched = LatencyBudget(50.0, StreamStats("idle"), clock=clock, board=board, watched=lambda: False,
                              hold_s=0.0, recover_s=3.0)
    applied: list[tuple[str, int]] = []

    def second(watched_ms: float) -> None:
        for budget, ms in ((watched, watched_ms), (unwatched, 10.0)):
            for _ in range(30):
                budget.stats.stage("frame_to_result", ms)
        clock.now += 1.0
        for budget in (watched, unwatched):
            if budget.step() is not None:  # each stream applies its own plan, in its own thread
                applied.append((budget.stats.stream, budget.level))

    second(80.0)
    assert (watched.level, unwatched.level, unwatched.given) == (0, 1, 1)
    assert "stream idle, unwatched, gave a step" in watched.reason and ("idle", 1) in applied
    for _ in range(len(LADDER)):
        second(80.0)
    assert unwatched.level == len(LADDER) - 1 and watched.level >= 1  # none left to give: it stepped down itself
    top = watched.level
    for _ in range(2):
        second(10.0)  # calm, but the pressure was just now: the given steps stay given
    assert unwatched.level == len(LADDER) - 1
    for _ in range(80):  # (the idle stream made its 10 changes a minute: it waits for that minute to pass)
        second(10.0)
    assert watched.level == 0 and unwatched.level == 0 and unwatched.given == 0
    assert top >= 1 and ("watched", 0) in applied and ("idle", 0) in applied
    watched.close()
    unwatched.close()


def test_a_still_unwatched_stream_gives_its_steps_before_one_where_something_moves() -> None:
    clock = Clock()
    board = BudgetBoard()
    watched = LatencyBudget(50.0, StreamStats("watched"), clock=clock, board=board, watched=lambda: True, hold_s=0.0)
    moving = LatencyBudget(50.0, StreamStats("street"), clock=clock, board=board, watched=lambda: False,
                           moving=lambda: True, hold_s=0.0)
    still = LatencyBudget(50.0, StreamStats("hallway"), clock=clock, board=board, watched=lambda: False,
                          moving=lambda: False, hold_s=0.0)
    for _ in range(3):  # three seconds over budget: three steps, all from the still stream
        for _ in range(30):
            watched.stats.stage("frame_to_result", 80.0)
        clock.now += 1.0
        watched.step()
    assert (watched.level, moving.level, still.level) == (0, 0, 3)
    for budget in (watched, moving, still):
        budget.close()


def _frames_until(stream: LiveStream, condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.timeout(120)
def test_a_live_stream_holds_its_budget_when_the_detector_turns_slow_and_recovers() -> None:
    """A 30 fps stream whose detector (a stand-in of known cost) takes 35 ms: each frame it runs on waits for it,
    so frames take 35 ms, over a 20 ms budget. The stream stops waiting (and spaces runs) within a couple of
    seconds, its frames then take a few ms; when the detector is fast again, quality comes back."""
    config = PipelineConfig.model_validate({"latency": {"budget_ms": 20, "recover_s": 2, "hold_s": 0.5},
                                            "motion": {"enabled": False}})
    detector = StandInDetector(delay_s=0.035)
    stream = LiveStream("budget", lambda: open_source("synthetic:?w=640&h=360&fps=30&frames=1800&realtime=1"), config,
                        Models(detector), LiveSettings(inline_wait_ms=60))
    stream.start()
    try:
        assert stream.budget is not None
        assert _frames_until(stream, lambda: stream.budget is not None and stream.budget.level >= 1, 15)
        assert not stream.plan.wait_for_detector
        detector.delay_s = 0.0
        assert _frames_until(stream, lambda: stream.budget is not None and stream.budget.level == 0, 30)
        snapshot = stream.stats.snapshot()["latency_budget"]
        assert isinstance(snapshot, dict) and snapshot["budget_ms"] == 20 and snapshot["level"] == 0
        assert snapshot["changes"] >= 2 and snapshot["plan"] == "full quality"
        assert 'streamvis_latency_budget_level{stream="budget"} 0' in prometheus_text([stream.stats])
    finally:
        stream.stop()


def test_without_a_budget_nothing_changes() -> None:
    stream = LiveStream("plain", lambda: open_source("synthetic:?w=64&h=64&frames=3"), PipelineConfig(),
                        Models(StandInDetector()))
    assert stream.budget is None and stream.plan == BudgetPlan()
    assert "latency_budget" not in stream.stats.snapshot()
    assert "latency_budget" not in prometheus_text([stream.stats])



def _run_for(stream: LiveStream, seconds: float) -> dict:
    stream.start()
    try:
        time.sleep(seconds)
        return stream.stats.snapshot()
    finally:
        stream.stop()


@pytest.mark.timeout(120)
def test_a_slow_video_segmenter_propagates_beside_the_frames_under_a_budget() -> None:
    """A video segmenter (a stand-in of known cost) that takes 300 ms a frame, on a 20 fps stream. Without a budget
    every frame waits for it: 300 ms or more from decode to result. Under a 50 ms budget it propagates in a worker
    of its own, one frame at a time: frames go on with the masks carried, the p95 stays within twice the budget,
    and masks still come (lagging), with the keyframes' objects in them."""
    source = "synthetic:?w=320&h=240&fps=20&frames=400&realtime=1"
    plain = StandInVideoSegmenter(delay_s=0.3)
    without = _run_for(LiveStream("plain", lambda: open_source(source), PipelineConfig.model_validate(
        {"motion": {"enabled": False}}), Models(StandInDetector(), plain)), 5)
    assert without["latency_ms"]["frame_to_result"]["p50"] >= 300

    segmenter = StandInVideoSegmenter(delay_s=0.3)
    config = PipelineConfig.model_validate({"latency": {"budget_ms": 50, "hold_s": 0.5},
                                            "motion": {"enabled": False}})
    stream = LiveStream("budgeted", lambda: open_source(source), config, Models(StandInDetector(), segmenter),
                        LiveSettings(inline_wait_ms=20))
    masked: list[bool] = []
    stream.add_sink(ResultList(), None)
    stream.start()
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            latest = stream.latest
            if latest is not None:
                masked.append(latest.detections.mask is not None and len(latest.detections) > 0)
            time.sleep(0.05)
        stats = stream.stats.snapshot()
    finally:
        stream.stop()
    assert stats["latency_ms"]["frame_to_result"]["p95"] <= 100  # twice the budget, on a loaded CI machine too
    assert stats["frames_out"] >= 5 * 20 * 0.8  # the frames kept coming at the source's rate
    assert segmenter.max_active == 1 and 5 <= segmenter.updates <= 6 / 0.3 + 2  # one propagation at a time
    assert sum(masked) >= len(masked) * 0.8  # the keyframes' objects carried, with their masks


def test_in_a_shared_detector_queue_watched_streams_then_those_over_budget_go_first() -> None:
    config = PipelineConfig.model_validate({"latency": {"budget_ms": 50}})
    stream = LiveStream("cam", lambda: open_source("synthetic:?w=64&h=64&frames=3"), config,
                        Models(StandInDetector()))
    assert stream.budget is not None and stream.priority() == 0
    stream.budget.measured_p95_ms = 80.0  # its last second's p95, over its 50 ms budget
    assert stream.priority() == 1
    stream.stats.viewers = 1
    assert stream.priority() == 3
    stream.budget.measured_p95_ms = 30.0
    assert stream.priority() == 2
    stream.stop()
