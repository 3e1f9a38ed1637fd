"""The newest-wins slot (drops counted, thread and event-loop consumers, closing), frames that never change once
made, and the source wrappers live mode plays files with: paced at their frame rate, looped with indices and
timestamps that keep increasing."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamvis.frame import Frame
from streamvis.pipeline.keyframes import LiveKeyframes, OfflineKeyframes, offline_every_n
from streamvis.slot import NewestSlot
from streamvis.sources import Source, open_source
from streamvis.sources.wrappers import LoopedSource, PacedSource


def test_a_newer_item_replaces_an_untaken_one_and_counts_a_drop() -> None:
    drops: list[str] = []
    slot: NewestSlot[int] = NewestSlot("ingest", lambda where: drops.append(where))
    assert slot.put(1) is False and slot.put(2) is True and slot.put(3) is True
    assert slot.take() == 3 and slot.dropped == 2 and drops == ["ingest", "ingest"]
    assert slot.take(timeout=0.01) is None  # empty: waits, then gives up
    assert slot.put(4) is False and slot.take_nowait() == 4 and slot.dropped == 2


def test_closing_hands_over_the_last_item_then_ends() -> None:
    slot: NewestSlot[str] = NewestSlot("whip")
    slot.put("last")
    slot.close()
    assert slot.put("ignored") is False
    assert slot.take() == "last" and slot.take() is None and slot.closed


def test_a_waiting_thread_wakes_for_an_item_and_on_close() -> None:
    slot: NewestSlot[int] = NewestSlot("encoder")
    got: list[int | None] = []
    thread = threading.Thread(target=lambda: got.extend([slot.take(), slot.take()]))
    thread.start()
    time.sleep(0.05)
    slot.put(7)
    time.sleep(0.05)
    slot.close()
    thread.join(timeout=2)
    assert got == [7, None] and not thread.is_alive()


def test_an_event_loop_consumer_gets_items_put_from_threads() -> None:
    slot: NewestSlot[int] = NewestSlot("viewer")

    async def consume() -> list[int | None]:
        producer = threading.Thread(target=lambda: [slot.put(i) or time.sleep(0.02) for i in range(5)])
        producer.start()
        got = [await asyncio.wait_for(slot.take_async(), 2) for _ in range(3)]
        producer.join()
        slot.close()
        got.append(await asyncio.wait_for(slot.take_async(), 2))
        return got

    got = asyncio.run(consume())
    assert got[-1] is None or got[-1] == 4  # the last item may still be there when closing
    values = [g for g in got if g is not None]
    assert values == sorted(values) and len(set(values)) == len(values)


def test_a_cancelled_async_take_leaves_no_waiter_behind() -> None:
    slot: NewestSlot[int] = NewestSlot("viewer")

    async def scenario() -> int | None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(slot.take_async(), 0.05)
        slot.put(1)
        return await slot.take_async()

    assert asyncio.run(scenario()) == 1 and slot._async_waiters == []


def test_frames_are_frozen_and_carry_their_decode_time() -> None:
    before = time.monotonic()
    frame = Frame(np.zeros((2, 2, 3), np.uint8), 3, 0.1, "cam")
    assert before <= frame.decoded_at <= time.monotonic()
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.index = 4  # type: ignore[misc]
    moved = dataclasses.replace(frame, index=13, pts=1.1)
    assert (frame.index, moved.index, moved.image is frame.image) == (3, 13, True)


@pytest.mark.parametrize(("every", "indices", "expected"), [
    (1, [0, 1, 2], [True, True, True]),
    (3, [0, 1, 2, 3, 6, 7], [True, False, False, True, True, False]),
])
def test_offline_keyframes_by_index(every: int, indices: list[int], expected: list[bool]) -> None:
    policy = OfflineKeyframes(every)
    assert [policy.is_keyframe(i) for i in indices] == expected


def _start(policy: LiveKeyframes, index: int, detector_free: bool = True, pts: float = 0.0) -> bool:
    if policy.due(index, pts, detector_free):
        policy.started(index, pts)
        return True
    return False


def test_live_keyframes_wait_for_a_free_detector_and_n_frames() -> None:
    policy = LiveKeyframes(3)
    assert _start(policy, 0)
    assert not _start(policy, 1)  # fewer than 3 frames since the last run
    assert not _start(policy, 3, detector_free=False)  # due, but the detector is busy
    assert _start(policy, 5) and policy.last_started == 5
    with pytest.raises(ValueError, match="at least 1"):
        LiveKeyframes(0)


def test_live_keyframes_keep_to_the_detector_rate_whatever_the_frame_rate() -> None:
    policy = LiveKeyframes(1, min_interval_s=1 / 5)  # detector.fps: 5 on a 25 fps camera
    started = [i for i in range(50) if _start(policy, i, pts=i / 25)]
    assert started == list(range(0, 50, 5))


def test_live_keyframes_keep_the_detector_rate_on_average_when_frames_miss_the_interval() -> None:
    policy = LiveKeyframes(1, min_interval_s=1 / 5)  # detector.fps: 5 on a 12.5 fps camera (80 ms frames)
    started = [i for i in range(125) if _start(policy, i, pts=i * 0.08)]  # 10 s
    assert len(started) in (50, 51)  # 5 a second, not 4.2 (every 3rd frame)
    assert {b - a for a, b in itertools.pairwise(started)} == {2, 3}


def test_live_keyframes_do_not_make_up_for_a_busy_detector() -> None:
    policy = LiveKeyframes(1, min_interval_s=0.2)
    assert _start(policy, 0, pts=0.0)
    assert not _start(policy, 10, pts=1.0, detector_free=False)  # busy for a second
    assert _start(policy, 11, pts=1.1)
    assert not _start(policy, 12, pts=1.2)  # no burst to catch up: the slots start again from the late run
    assert _start(policy, 13, pts=1.3)


def test_offline_keyframe_interval_follows_the_detector_rate() -> None:
    assert offline_every_n(1, None, 25.0) == 1
    assert offline_every_n(1, 5.0, 25.0) == 5 and offline_every_n(1, 5.0, 12.5) == 2
    assert offline_every_n(4, 30.0, 25.0) == 4  # every_n_frames is the floor
    assert offline_every_n(1, 5.0, None) == 1  # a source without a frame rate: every_n_frames alone


def test_a_looped_file_keeps_indices_and_pts_increasing(tmp_path: Path) -> None:
    from support import make_clip

    clip = make_clip(tmp_path / "three.mp4", frames=3, fps=10)
    looped = LoopedSource(open_source(str(clip)), lambda: open_source(str(clip)))
    frames = list(itertools.islice(looped.frames(), 9))
    looped.close()
    assert [f.index for f in frames] == list(range(9)) and looped.plays >= 2
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert pts[3] == pytest.approx(pts[2] + 0.1)  # the next play starts one frame step later


class EmptySource(Source):
    """A file that turned out empty on a later play (replaced or truncated while being served)."""

    def __init__(self) -> None:
        super().__init__("empty.mp4", "empty", live=False)

    def frames(self) -> Iterator[Frame]:
        return iter(())


def test_an_empty_play_ends_a_loop_instead_of_spinning() -> None:
    looped = LoopedSource(open_source("synthetic:?frames=2&w=32&h=32"), EmptySource)
    assert [f.index for f in looped.frames()] == [0, 1] and looped.plays == 2


def test_a_paced_file_is_released_at_its_frame_rate() -> None:
    paced = PacedSource(open_source("synthetic:?frames=10&w=32&h=32&fps=50"))
    start = time.monotonic()
    frames = list(paced.frames())
    elapsed = time.monotonic() - start
    assert len(frames) == 10 and elapsed >= 9 / 50 * 0.9  # 10 frames at 50 fps span 0.18 s
    assert all(start <= f.decoded_at <= time.monotonic() for f in frames)  # stamped when released
    # never before its time on the stream's clock (a late frame is late by the load; the next one is not held back)
    first = frames[0]
    assert all(f.decoded_at - first.decoded_at >= f.pts - first.pts - 1e-3 for f in frames)


def test_closing_a_paced_source_stops_it_while_it_waits() -> None:
    paced = PacedSource(open_source("synthetic:?frames=100&w=32&h=32&fps=2"))
    frames = paced.frames()
    next(frames)
    threading.Timer(0.1, paced.close).start()
    start = time.monotonic()
    assert list(frames) == [] and time.monotonic() - start < 1.0 and paced.inner.closed
