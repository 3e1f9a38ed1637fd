"""Strictly increasing pts (seconds) from whatever timestamps a container gives its frames.

Timestamps lie: H.264 with B-frames in AVI (and other containers without presentation timestamps) decodes with
pts out of order (1, 4, 3, 5, 2, ...); variable frame rate files have gaps; a reconnecting camera or a looping
playlist steps back. Anything keyed on time (the tracker, pacing, muxing, narration) needs strictly increasing
pts, so every source stamps its frames with a `FrameClock`:

- each connection (a file, or one connection of a live stream) starts with a probe of its first frames' (pts,
  dts), and `choose_clock` picks what to trust: the container's pts when they increase, else the decode
  timestamps when those do, else frame index / rate;
- a frame whose time would not be after the previous one is placed one frame step later (counted); a jump back
  of more than `DISCONTINUITY_S` is a discontinuity (the timeline continues one step after the last frame), and
  pts that keep going backwards switch the clock to frame index / rate;
- a new connection continues one frame step after the last frame of the previous one.

Each switch is logged once per source, saying which clock is used from which frame.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Literal

log = logging.getLogger(__name__)

ClockKind = Literal["pts", "dts", "rate"]

#: frames decoded before choosing the clock (B-frame reordering shows within a GOP's first few frames)
PROBE_FRAMES = 8
#: a step back larger than this is a discontinuity (a reconnect, a loop, a timestamp wrap), not reordering
DISCONTINUITY_S = 1.0
#: backward steps (pts clock) after which the container's pts are given up for frame index / rate
MAX_PTS_FAULTS = 3

CLOCK_WORDS: dict[ClockKind, str] = {
    "pts": "the container's presentation timestamps",
    "dts": "decode timestamps (presentation timestamps out of order: B-frames in a container without them, "
           "such as AVI)",
    "rate": "frame index / frame rate (the container's timestamps are missing or out of order)",
}


def _increasing(values: Sequence[float | None]) -> bool:
    if not values or any(v is None for v in values):
        return False
    return all(b > a for a, b in itertools.pairwise(values))  # type: ignore[operator]


def choose_clock(stamps: Sequence[tuple[float | None, float | None]]) -> ClockKind:
    """Which timestamps of a connection's first frames, as (pts, dts) in seconds, give their display times. A
    few frames without pts (an RTSP stream's first, before its timing is known) do not rule the pts out."""
    pts = [p for p, _ in stamps if p is not None]
    dts = [d for _, d in stamps]
    if pts and len(pts) * 2 > len(stamps) and _increasing(pts):
        return "pts"
    if len(stamps) > 1 and _increasing(dts):
        return "dts"
    return "rate"


class FrameClock:
    """Stamps the frames of one source, connection after connection, with strictly increasing pts in seconds."""

    def __init__(self, source_id: str, fps: float | None) -> None:
        self.source_id = source_id
        self.step_s = 1.0 / (fps if fps and fps > 0 else 30.0)
        self.kind: ClockKind = "pts"
        self.last_s: float | None = None
        self.nudged = 0  # frames placed one step after the previous because their own time was not later
        self._offset_s = 0.0
        self._missing_pts_start = 0.0
        self._frame_in_connection = 0
        self._pts_faults = 0
        self._said: set[str] = set()

    def start(self, probe: Sequence[tuple[float | None, float | None]]) -> None:
        """Begin a connection whose first frames carry `probe` (pts, dts): choose its clock and align it so that
        the first connection keeps its own times and a later one continues one step after the last frame."""
        kind = choose_clock(probe)
        self._frame_in_connection = 0
        self._pts_faults = 0
        if kind != "pts":
            self._say(kind, f"{self.source_id}: timing frames by {CLOCK_WORDS[kind]}", logging.INFO)
        self.kind = kind
        self._missing_pts_start = 0.0
        if kind == "pts":  # frames before the first pts (if any) are placed one step apart before it
            first = next(((i, p) for i, (p, _) in enumerate(probe) if p is not None), (0, 0.0))
            probe = [(first[1] - first[0] * self.step_s, None), *probe[1:]]
            self._missing_pts_start = probe[0][0] or 0.0
        first_raw = self._raw(*probe[0]) if probe else 0.0
        if self.last_s is not None:
            self._offset_s = self.last_s + self.step_s - first_raw
        elif kind == "dts":  # the earliest pts is when display starts; decode times run ahead of it by the delay
            known = [p for p, _ in probe if p is not None]
            self._offset_s = (min(known) if known else 0.0) - first_raw
        elif kind == "rate":
            self._offset_s = probe[0][0] if probe and probe[0][0] is not None else 0.0
        else:
            self._offset_s = 0.0

    def resume_at(self, frame_in_connection: int) -> None:
        """Continue this connection at its frame `frame_in_connection` (after a seek to a keyframe), as if the
        frames before it had been stamped; the next frame's own time is taken as it is."""
        self._frame_in_connection = frame_in_connection
        self.last_s = None

    def _raw(self, pts_s: float | None, dts_s: float | None) -> float:
        if self.kind == "pts" and pts_s is not None:
            return pts_s
        if self.kind == "dts" and dts_s is not None:
            return dts_s
        return self._frame_in_connection * self.step_s

    def stamp(self, pts_s: float | None, dts_s: float | None) -> float:
        """The pts for the next frame of this connection, given its container pts and dts (seconds or None)."""
        last = self.last_s
        if self.kind == "pts" and pts_s is None:  # a frame without pts: one step after the previous
            self.last_s = last + self.step_s if last is not None else self._missing_pts_start + self._offset_s
            self._frame_in_connection += 1
            return self.last_s
        if self.kind == "dts" and dts_s is None and last is not None:  # the decoder's flush: frames without dts
            self.last_s = last + self.step_s
            self._frame_in_connection += 1
            return self.last_s
        value = self._raw(pts_s, dts_s) + self._offset_s
        if last is not None and value <= last:
            if last - value > DISCONTINUITY_S:
                self._say("jump", f"{self.source_id}: timestamps jumped back {last - value:.1f} s "
                                  "(a discontinuity); the timeline continues", logging.INFO)
                self._offset_s += last + self.step_s - value
                value = last + self.step_s
            else:
                self.nudged += 1
                if self.kind == "pts":
                    self._pts_faults += 1
                    if self._pts_faults >= MAX_PTS_FAULTS:
                        self._switch_to_rate("timestamps out of order")
                value = max(self._raw(pts_s, dts_s) + self._offset_s, last + self.step_s)
        self.last_s = value
        self._frame_in_connection += 1
        return value

    def _switch_to_rate(self, why: str) -> None:
        """From this frame on, time by frame index / rate, continuing one step after the last frame."""
        self.kind = "rate"
        resume = (self.last_s + self.step_s) if self.last_s is not None else 0.0
        self._offset_s = resume - self._frame_in_connection * self.step_s
        self._say("rate", f"{self.source_id}: {why} from frame {self._frame_in_connection}; timing frames by "
                          f"{CLOCK_WORDS['rate']}")

    def _say(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        if kind not in self._said:
            self._said.add(kind)
            log.log(level, "%s", message)
