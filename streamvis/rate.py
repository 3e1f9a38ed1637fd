"""Slots of stream time at a set rate: which frames of a stream fall on them.

Slots are `interval_s` apart, counted from the slot the last taken frame filled, not from that frame's time, so a
stream whose frames do not fall on the interval still gets 1 / `interval_s` frames a second on average (a 12.5 fps
camera at 5 a second: frames 3, 2, 3, 2 apart, not always 3, which gives 4.2). A frame taken late (half an interval
or more past its slot) is not made up for: the slots start again from it. One rule for the detector's keyframes
(`pipeline.keyframes.LiveKeyframes`) and for the frames a live source passes on while nothing needs every frame
(`Source.max_fps`), so that the frames a source passes land on the keyframe slots.
"""

from __future__ import annotations

TOLERANCE_S = 1e-6  # stream times a rounding apart are the same time


class RateSlots:
    """The slots of one stream at `interval_s` (0: every frame is on a slot)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        # a frame this much before a slot falls on it: set where the frames come already spaced out by slots of
        # their own (a source passing frames under `max_fps`), half their interval, so that two sets of slots a
        # frame apart do not miss each other's frames
        self.early_s = 0.0
        self._next_s: float | None = None  # the next slot (stream time); None: none taken yet

    def due(self, pts: float) -> bool:
        """Whether a frame at `pts` falls on a slot."""
        return self._next_s is None or pts >= self._next_s - self.early_s - TOLERANCE_S

    def fill(self, pts: float) -> None:
        """A frame at `pts` was taken: the next slot is one interval on."""
        interval = self.interval_s
        slot = (self._next_s if self._next_s is not None else pts) + interval
        self._next_s = pts + interval if self._next_s is None or slot < pts + interval / 2 else slot

    def take(self, pts: float) -> bool:
        """Take a frame at `pts` if it falls on a slot."""
        if not self.due(pts):
            return False
        self.fill(pts)
        return True
