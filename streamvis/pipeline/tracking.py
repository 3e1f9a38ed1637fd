"""Multi-object tracking with the `trackers` library: stable ids across frames (ByteTrack, SORT, OC-SORT, BoT-SORT
and McByte with camera-motion compensation; `streamvis eval` compares them on a labelled clip)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import supervision as sv

from streamvis.config import TrackerConfig

FRAME_TRACKERS = frozenset({"botsort", "mcbyte"})  # they compensate camera motion on the frames


def _build(config: TrackerConfig, fps: float) -> Any:
    import trackers

    cls = {"bytetrack": trackers.ByteTrackTracker, "sort": trackers.SORTTracker, "ocsort": trackers.OCSORTTracker,
           "botsort": trackers.BoTSORTTracker, "mcbyte": trackers.McByteTracker}[config.type]
    wanted = {
        "lost_track_buffer": round(config.lost_track_s * 30),  # `trackers` counts it in frames at 30 fps
        "frame_rate": fps,
        "track_activation_threshold": config.track_activation_threshold,
        "minimum_consecutive_frames": config.minimum_consecutive_frames,
        "minimum_iou_threshold": config.minimum_iou_threshold,
    }
    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in wanted.items() if k in accepted})


@dataclass(slots=True)
class _Votes:
    by_name: dict[str, float] = field(default_factory=dict)  # score summed per class name
    class_ids: dict[str, int] = field(default_factory=dict)
    winner: str = ""
    last_update: int = 0


class ClassVotes:
    """Keeps each track's class stable: a track is labelled with the class it was detected as most (scores
    summed over its life), so one id does not flip between cat, dog and person as the detector hesitates. A class
    takes over only when its sum passes the current one's. Tracks unseen for `forget_after` updates are dropped."""

    def __init__(self, forget_after: int) -> None:
        self.forget_after = forget_after
        self._tracks: dict[int, _Votes] = {}
        self._updates = 0

    def apply(self, detections: sv.Detections) -> sv.Detections:
        self._updates += 1
        if len(detections) and detections.tracker_id is not None and detections.class_id is not None:
            names = detections.data.get("class_name")
            labels = [str(n) for n in names] if names is not None else [str(c) for c in detections.class_id]
            class_ids = detections.class_id.copy()
            scores = detections.confidence if detections.confidence is not None else np.ones(len(detections))
            for i, track_id in enumerate(detections.tracker_id.tolist()):
                if track_id < 0:
                    continue
                votes = self._tracks.setdefault(track_id, _Votes())
                votes.by_name[labels[i]] = votes.by_name.get(labels[i], 0.0) + float(scores[i])
                votes.class_ids.setdefault(labels[i], int(class_ids[i]))
                if not votes.winner or votes.by_name[labels[i]] > votes.by_name[votes.winner]:
                    votes.winner = labels[i]
                votes.last_update = self._updates
                labels[i], class_ids[i] = votes.winner, votes.class_ids[votes.winner]
            detections.class_id = class_ids
            if names is not None:
                detections.data["class_name"] = np.array(labels, dtype=str)
        stale = [t for t, v in self._tracks.items() if self._updates - v.last_update > self.forget_after]
        for track_id in stale:
            del self._tracks[track_id]
        return detections

    def reset(self) -> None:
        self._tracks.clear()


class Tracker:
    """Assigns `tracker_id` (-1 while a track is not yet confirmed); keeps class ids and names, each track's
    class stable over its life (`ClassVotes`) unless `tracker.stable_class` is off."""

    def __init__(self, config: TrackerConfig, fps: float) -> None:
        self.config = config
        self._tracker = _build(config, fps)
        self._votes = ClassVotes(forget_after=4 * max(round(config.lost_track_s * fps), 30)) \
            if config.stable_class else None

    def update(self, detections: sv.Detections, pts: float | None = None,
               image_bgr: np.ndarray | None = None) -> sv.Detections:
        """Associate `detections` with tracks; `pts` (seconds) lets gaps between updates count as time; the frame
        lets BoT-SORT and McByte compensate the camera's own motion (the others ignore it)."""
        frame = image_bgr if self.config.type in FRAME_TRACKERS else None  # the others warn when given one
        tracked = self._tracker.update(detections, frame=frame, timestamp=pts)
        return self._votes.apply(tracked) if self._votes is not None else tracked

    def reset(self) -> None:
        self._tracker.reset()
        if self._votes is not None:
            self._votes.reset()
