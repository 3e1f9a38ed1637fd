"""Tracks one run followed, and whether another run found them too (motion gating's "nothing missed" check in
`tests/test_motion_real.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import supervision as sv

from streamvis.frame import Result


@dataclass(slots=True)
class Track:
    track_id: int
    boxes: dict[int, np.ndarray] = field(default_factory=dict)  # frame index -> xyxy

    @property
    def first(self) -> int:
        return min(self.boxes)


def followed_tracks(results: list[Result], fps: float, min_s: float = 1.0) -> list[Track]:
    """The confirmed tracks (tracker id >= 0) present on frames spanning at least `min_s` seconds."""
    tracks: dict[int, Track] = {}
    for result in results:
        detections = result.detections
        if detections.tracker_id is None:
            continue
        for track_id, box in zip(detections.tracker_id.tolist(), detections.xyxy, strict=True):
            if track_id >= 0:
                tracks.setdefault(track_id, Track(track_id)).boxes[result.frame.index] = box
    return [t for t in tracks.values() if (max(t.boxes) - t.first + 1) / fps >= min_s]


@dataclass(slots=True)
class Found:
    track: Track
    first_found: int | None  # the first frame the other run had a box on the track (IoU >= iou), or None

    @property
    def delay_frames(self) -> int | None:
        return None if self.first_found is None else self.first_found - self.track.first


def found_in(tracks: list[Track], results: list[Result], iou: float = 0.5) -> list[Found]:
    """For each track, the first frame on which `results` hold a box overlapping the track's box by `iou`."""
    by_index = {r.frame.index: r.detections for r in results}
    found: list[Found] = []
    for track in tracks:
        first = None
        for index in sorted(track.boxes):
            detections: sv.Detections | None = by_index.get(index)
            if detections is None or not len(detections):
                continue
            overlaps = sv.box_iou_batch(track.boxes[index][None], detections.xyxy)[0]
            if overlaps.max() >= iou:
                first = index
                break
        found.append(Found(track, first))
    return found
