"""Every source yields strictly increasing pts in seconds, whatever the container's timestamps say."""

from __future__ import annotations

import itertools
import logging

import pytest

from streamvis.sources.timestamps import FrameClock, choose_clock

Stamps = list[tuple[float | None, float | None]]


def _frames(pts: list[float | None], dts: list[float | None] | None = None, rate: float = 25.0) -> Stamps:
    dts = dts if dts is not None else [None] * len(pts)
    return [(None if p is None else p / rate, None if d is None else d / rate) for p, d in zip(pts, dts, strict=True)]


# pts and dts in frame units at 25 fps: what PyAV decodes from each kind of file
AVI_WITH_B_FRAMES = _frames([1, 4, 3, 5, 2, 8, 7, 9, 6, 12], [2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
MP4_WITH_B_FRAMES = _frames([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [-2, -1, 0, 1, 2, 3, 4, 5, 6, 7])
VARIABLE_RATE = _frames([0, 1, 2, 5, 6, 7, 20, 21, 22, 23])
NO_TIMESTAMPS = _frames([None] * 10)
RTSP_FIRST_FRAME_UNTIMED = _frames([None, 1, 2, 3, 4, 5, 6, 7, 8, 9])
NOTHING_INCREASES = _frames([3, 1, 2, 0, 5, 4, 7, 6, 9, 8], [3, 1, 2, 0, 5, 4, 7, 6, 9, 8])


@pytest.mark.parametrize(("stamps", "clock"), [
    (MP4_WITH_B_FRAMES, "pts"),
    (VARIABLE_RATE, "pts"),
    (AVI_WITH_B_FRAMES, "dts"),
    (RTSP_FIRST_FRAME_UNTIMED, "pts"),
    (NO_TIMESTAMPS, "rate"),
    (NOTHING_INCREASES, "rate"),
    (_frames([7]), "pts"),
    ([], "rate"),
])
def test_the_clock_is_chosen_from_the_first_frames(stamps: Stamps, clock: str) -> None:
    assert choose_clock(stamps) == clock


def _run(stamps: Stamps, fps: float = 25.0) -> tuple[list[float], FrameClock]:
    clock = FrameClock("clip", fps)
    clock.start(stamps[:8])
    return [clock.stamp(p, d) for p, d in stamps], clock


def _frame_numbers(values: list[float], fps: float = 25.0) -> list[int]:
    return [round(v * fps) for v in values]


@pytest.mark.parametrize(("stamps", "expected_frames"), [
    (MP4_WITH_B_FRAMES, list(range(10))),
    (VARIABLE_RATE, [0, 1, 2, 5, 6, 7, 20, 21, 22, 23]),  # real gaps are kept
    (AVI_WITH_B_FRAMES, list(range(1, 11))),  # display starts at the earliest pts, one frame apart
    (NO_TIMESTAMPS, list(range(10))),
    (RTSP_FIRST_FRAME_UNTIMED, list(range(10))),
    (NOTHING_INCREASES, list(range(3, 13))),  # index / rate from the first frame's own pts
])
def test_pts_increase_and_keep_real_timing(stamps: Stamps, expected_frames: list[int]) -> None:
    values, clock = _run(stamps)
    assert _frame_numbers(values) == expected_frames
    assert clock.nudged == 0


def test_a_reconnect_continues_one_frame_after_the_last() -> None:
    clock = FrameClock("camera", 10.0)
    clock.start(_frames([100, 101, 102], rate=10))
    first = [clock.stamp(p, d) for p, d in _frames([100, 101, 102], rate=10)]
    clock.start(_frames([0, 1], rate=10))  # the camera restarted its clock
    second = [clock.stamp(p, d) for p, d in _frames([0, 1], rate=10)]
    assert first == pytest.approx([10.0, 10.1, 10.2])
    assert second == pytest.approx([10.3, 10.4])


def test_a_jump_back_mid_stream_is_a_discontinuity(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "streamvis")
    values, clock = _run(_frames([*range(100, 110), 0, 1, 2]))  # a playlist or camera restarting its clock
    assert _frame_numbers(values) == list(range(100, 113))
    assert clock.nudged == 0
    assert sum("jumped back" in r.getMessage() for r in caplog.records) == 1


def test_pts_that_keep_going_back_switch_to_frame_rate_and_say_so_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "streamvis")
    good_start = [0, 1, 2, 3, 4, 5, 6, 7]
    reordered_later = [10, 9, 8, 13, 12, 11, 16, 15, 14, 19, 18, 17]
    values, clock = _run(_frames(good_start + reordered_later))
    assert all(b > a for a, b in itertools.pairwise(values))
    assert clock.kind == "rate"
    assert _frame_numbers(values)[-1] == len(values) - 1 + 2  # one frame step each after the switch
    assert sum("frame index / frame rate" in r.getMessage() for r in caplog.records) == 1


def test_frames_without_dts_at_the_decoder_flush_follow_one_step_apart() -> None:
    stamps = AVI_WITH_B_FRAMES + _frames([10, 11], [None, None])
    values, clock = _run(stamps)
    assert _frame_numbers(values) == list(range(1, 13))
    assert clock.nudged == 0
