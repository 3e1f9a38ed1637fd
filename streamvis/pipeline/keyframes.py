"""When the detector runs: the offline and the live keyframe rules, side by side.

Offline, every `every_n_frames`-th frame by index is a keyframe: the same frames whatever the machine's speed,
so the output is deterministic. Live, a detector run starts when the detector is free and at least
`every_n_frames` frames have passed since the last run started: a slow detector simply runs less often, and
the frames in between are carried by the tracker or SAM 2 propagation.
"""

from __future__ import annotations


class OfflineKeyframes:
    """Every `every_n`-th frame index (0, N, 2N, ...)."""

    def __init__(self, every_n: int) -> None:
        if every_n < 1:
            raise ValueError(f"every_n must be at least 1, got {every_n}")
        self.every_n = every_n

    def is_keyframe(self, index: int) -> bool:
        return index % self.every_n == 0


class LiveKeyframes:
    """A run is due when the detector is free and `every_n` frames have passed since the last run started."""

    def __init__(self, every_n: int) -> None:
        if every_n < 1:
            raise ValueError(f"every_n must be at least 1, got {every_n}")
        self.every_n = every_n
        self.last_started: int | None = None

    def start(self, index: int, detector_free: bool) -> bool:
        """Whether to start a detector run on frame `index` now; a started run is remembered."""
        due = self.last_started is None or index - self.last_started >= self.every_n
        if due and detector_free:
            self.last_started = index
            return True
        return False
