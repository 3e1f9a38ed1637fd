"""Multi-object tracking with the `trackers` library: stable ids across frames."""

from __future__ import annotations

import inspect
from typing import Any

import supervision as sv

from streamvis.config import TrackerConfig


def _build(config: TrackerConfig, fps: float) -> Any:
    import trackers

    cls = {"bytetrack": trackers.ByteTrackTracker, "sort": trackers.SORTTracker,
           "ocsort": trackers.OCSORTTracker}[config.type]
    wanted = {
        "lost_track_buffer": config.lost_track_buffer,
        "frame_rate": fps,
        "track_activation_threshold": config.track_activation_threshold,
        "minimum_consecutive_frames": config.minimum_consecutive_frames,
        "minimum_iou_threshold": config.minimum_iou_threshold,
    }
    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in wanted.items() if k in accepted})


class Tracker:
    """Assigns `tracker_id` (-1 while a track is not yet confirmed); keeps class ids and names."""

    def __init__(self, config: TrackerConfig, fps: float) -> None:
        self.config = config
        self._tracker = _build(config, fps)

    def update(self, detections: sv.Detections, pts: float | None = None) -> sv.Detections:
        """Associate `detections` with tracks; `pts` (seconds) lets gaps between updates count as time."""
        return self._tracker.update(detections, timestamp=pts)

    def reset(self) -> None:
        self._tracker.reset()
