"""When the detector runs: the offline and the live keyframe rules, side by side.

Offline, every `every_n_frames`-th frame by index is a keyframe (with `detector.fps`, every
round(source fps / fps)-th): the same frames whatever the machine's speed, so the output is deterministic. Live, a
detector run starts when the detector is free, at least `every_n_frames` frames have passed since the last run
started and, with `detector.fps`, at least 1 / fps seconds of stream time: a slow detector simply runs less often,
and the frames in between are carried by the tracker or SAM 2 propagation. With motion gating
(`streamvis.pipeline.motion`) a due keyframe runs the detector only when something moves.
"""

from __future__ import annotations

from streamvis.rate import RateSlots


def offline_every_n(every_n_frames: int, detector_fps: float | None, source_fps: float | None) -> int:
    """The keyframe interval offline: `every_n_frames`, widened to round(source fps / detector fps) when set."""
    if detector_fps is None or not source_fps:
        return every_n_frames
    return max(every_n_frames, round(source_fps / detector_fps))


class OfflineKeyframes:
    """Every `every_n`-th frame index (0, N, 2N, ...)."""

    def __init__(self, every_n: int) -> None:
        if every_n < 1:
            raise ValueError(f"every_n must be at least 1, got {every_n}")
        self.every_n = every_n

    def is_keyframe(self, index: int) -> bool:
        return index % self.every_n == 0


class LiveKeyframes:
    """A run is due when `every_n` frames have passed since the last run started, the detector is free and, with
    `min_interval_s`, the stream time has reached the next run's slot (`streamvis.rate.RateSlots`: a camera whose
    frames do not fall on the interval still gets 1 / `min_interval_s` runs a second on average; a run that started
    late, on a busy detector, is not made up for)."""

    def __init__(self, every_n: int, min_interval_s: float = 0.0) -> None:
        if every_n < 1:
            raise ValueError(f"every_n must be at least 1, got {every_n}")
        self.every_n = every_n
        self.slots = RateSlots(min_interval_s)
        self.last_started: int | None = None

    @property
    def min_interval_s(self) -> float:
        return self.slots.interval_s

    @min_interval_s.setter
    def min_interval_s(self, interval_s: float) -> None:
        self.slots.interval_s = interval_s

    def due(self, index: int, pts: float, detector_free: bool) -> bool:
        """Whether a run may start on frame `index` (at `pts`) now."""
        if not detector_free:
            return False
        return self.last_started is None or (index - self.last_started >= self.every_n and self.slots.due(pts))

    def started(self, index: int, pts: float) -> None:
        """A run started on frame `index`."""
        self.slots.fill(pts)
        self.last_started = index
