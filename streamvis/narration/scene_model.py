"""What is around the listener, object by object: the tracker's tracks turned into entries and exits (debounced),
positions (left / ahead / right, near / far), motion over the last second (approaching, receding, crossing) and
counts per class; and the news since the last utterance. Fed every frame; pure logic on stream time.

A hazard is a hazard class that is near or approaching: a parked car far away is scenery, not a warning.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import supervision as sv

from streamvis.narration.scene import locate

Key = int | str  # a track id, or "<class>#<n>" when no tracker runs
EPSILON_S = 1e-6  # stream times are sums of frame steps: 0.8 s may come out as 0.7999999


@dataclass
class SceneSettings:
    enter_after_s: float = 0.8  # seen this long, in most frames, before it counts as arrived: no flicker news
    seen_share: float = 0.6  # ... in at least this share of the frames since it was first seen
    min_confidence: float = 0.5  # ... and detected this surely at least once (the detector may track lower)
    lost_after_s: float = 1.5  # unseen this long and it has left
    exit_after_s: float = 2.0  # a departure is news only for an object that was there at least this long
    same_object_share: float = 0.2  # a new track this close (share of the width) to a just-vanished one of its
    # class is that object again, under a new tracker id: neither its arrival nor the old one's departure is news
    motion_window_s: float = 1.0  # motion is measured over this much of the recent past
    approach_growth: float = 1.15  # box height grown this much over the window: approaching (shrunk: receding)
    crossing_share: float = 0.12  # centre moved this share of the frame width over the window: crossing
    classes: frozenset[str] | None = None  # the classes narrated (None: all)
    hazard_classes: frozenset[str] = frozenset()


@dataclass
class TrackedObject:
    """One object as the listener should know it."""

    key: Key
    name: str
    first_seen_s: float
    last_seen_s: float
    side: str = "ahead"  # left, ahead, right
    distance: str = "mid"  # near, mid, far
    motion: str = "still"  # still, approaching, receding, crossing
    frames: int = 0  # frames it was seen in
    missed: int = 0  # frames since its first in which it was not seen
    confidence: float = 0.0  # the highest detection score so far
    present: bool = False  # arrived (debounced)
    replaced: bool = False  # it came back under another tracker id: its departure is not news
    approached: bool = False  # its approach was news once (not again each time it pauses)
    hazard: bool = False  # a hazard class, near or approaching
    boxes: deque[tuple[float, np.ndarray]] = field(default_factory=lambda: deque(maxlen=120))


@dataclass(frozen=True, slots=True)
class Event:
    """News about one object: `enter`, `exit`, `approach` (started approaching), `hazard` (became one), or
    `text` (text read: `said`, on the object `name`, or on no object: "sign")."""

    kind: str
    key: Key
    name: str
    side: str
    distance: str
    motion: str
    t: float
    said: str = ""

    @property
    def priority(self) -> int:
        """Lower speaks first: hazards, then near arrivals, then text read, then the rest."""
        if self.kind == "hazard":
            return 0
        if self.kind == "enter" and self.distance == "near":
            return 1
        return {"text": 2, "approach": 3, "enter": 4, "exit": 5}.get(self.kind, 6)


def _motion(boxes: deque[tuple[float, np.ndarray]], t: float, settings: SceneSettings,
            frame_width: int) -> str:
    """Approaching / receding from the box height's growth over the window, crossing from its centre's travel."""
    window = [(s, box) for s, box in boxes if t - s <= settings.motion_window_s]
    if len(window) < 3 or window[-1][0] - window[0][0] < settings.motion_window_s * 0.6:
        return "still"
    (_, first), (_, last) = window[0], window[-1]
    height_then, height_now = float(first[3] - first[1]), float(last[3] - last[1])
    growth = height_now / max(height_then, 1.0)
    travel = abs((last[0] + last[2]) - (first[0] + first[2])) / 2 / max(frame_width, 1)
    if growth >= settings.approach_growth:
        return "approaching"
    if growth <= 1 / settings.approach_growth:
        return "receding"
    if travel >= settings.crossing_share:
        return "crossing"
    return "still"


class SceneModel:
    """The objects in view, updated every frame; `take_news()` hands over what happened since it was last called."""

    def __init__(self, settings: SceneSettings) -> None:
        self.settings = settings
        self.objects: dict[Key, TrackedObject] = {}
        self._news: list[Event] = []

    def _keys(self, detections: sv.Detections) -> list[tuple[int, Key, str]]:
        """(detection index, key, class) of the detections of narrated classes."""
        names = [str(n) for n in detections.data.get("class_name", [""] * len(detections))]
        wanted = self.settings.classes
        out: list[tuple[int, Key, str]] = []
        counts: dict[str, int] = {}
        for i, name in enumerate(names):
            if wanted is not None and name not in wanted and name not in self.settings.hazard_classes:
                continue
            track = detections.tracker_id[i] if detections.tracker_id is not None else None
            if track is not None and int(track) >= 0:
                out.append((i, int(track), name))
            else:
                counts[name] = counts.get(name, 0) + 1
                out.append((i, f"{name}#{counts[name]}", name))
        return out

    def _event(self, kind: str, obj: TrackedObject, t: float) -> None:
        self._news.append(Event(kind, obj.key, obj.name, obj.side, obj.distance, obj.motion, t))

    def update(self, t: float, detections: sv.Detections, resolution_wh: tuple[int, int]) -> None:
        s = self.settings
        seen: set[Key] = set()
        for i, key, name in self._keys(detections):
            seen.add(key)
            obj = self.objects.get(key)
            if obj is None or obj.name != name:
                obj = self.objects[key] = TrackedObject(key, name, t, t)
            box = np.asarray(detections.xyxy[i], dtype=np.float64)
            obj.last_seen_s, obj.frames = t, obj.frames + 1
            if detections.confidence is not None:
                obj.confidence = max(obj.confidence, float(detections.confidence[i]))
            obj.side, obj.distance = locate(box, resolution_wh)
            obj.boxes.append((t, box))
            motion = _motion(obj.boxes, t, s, resolution_wh[0])
            was_approaching, obj.motion = obj.motion == "approaching", motion
            hazard = name in s.hazard_classes and (obj.distance == "near" or motion == "approaching")
            if not obj.present:
                if t - obj.first_seen_s >= s.enter_after_s - EPSILON_S and obj.frames >= 2 \
                        and obj.frames >= s.seen_share * (obj.frames + obj.missed) \
                        and (detections.confidence is None or obj.confidence >= s.min_confidence):
                    obj.present, obj.hazard = True, hazard
                    earlier = self._same_object(obj, t, resolution_wh[0])
                    if earlier is not None:
                        earlier.replaced = True
                    elif hazard:
                        self._event("hazard", obj, t)
                    else:
                        self._event("enter", obj, t)
                continue
            if hazard and not obj.hazard:
                self._event("hazard", obj, t)
            elif motion == "approaching" and not was_approaching and not hazard and not obj.approached \
                    and t - obj.first_seen_s >= s.enter_after_s + s.motion_window_s - EPSILON_S:  # not the arrival
                obj.approached = True
                self._event("approach", obj, t)
            obj.hazard = hazard
        for key, obj in list(self.objects.items()):
            if key not in seen:
                obj.missed += 1
            if t - obj.last_seen_s > s.lost_after_s:
                del self.objects[key]
                if obj.present and not obj.replaced and obj.last_seen_s - obj.first_seen_s >= s.exit_after_s:
                    self._event("exit", obj, t)

    def _same_object(self, new: TrackedObject, t: float, frame_width: int) -> TrackedObject | None:
        """An object of `new`'s class that vanished just before `new` appeared, where `new` appeared: the same one
        under a new tracker id (ByteTrack gives one after a long occlusion)."""
        box = new.boxes[0][1]
        for old in self.objects.values():
            if old is new or not old.present or old.replaced or old.name != new.name or old.last_seen_s >= t:
                continue
            if old.last_seen_s > new.first_seen_s + 0.3:
                continue  # both were seen together: two objects
            last = old.boxes[-1][1]
            gap = abs((last[0] + last[2]) - (box[0] + box[2])) / 2 / max(frame_width, 1)
            if gap <= self.settings.same_object_share:
                return old
        return None

    def hear_text(self, t: float, text_id: int, text: str, on: str | None, side: str, distance: str) -> None:
        """Text read in view (`streamvis.reading`): news, said after hazards and near arrivals."""
        self._news.append(Event("text", f"text#{text_id}", on or "sign", side, distance, "still", t, said=text))

    def take_news(self) -> list[Event]:
        """The events since the last call, most important first (then in time order)."""
        news, self._news = sorted(self._news, key=lambda e: (e.priority, e.t)), []
        return news

    @property
    def has_news(self) -> bool:
        return bool(self._news)

    @property
    def has_hazard_news(self) -> bool:
        return any(e.kind == "hazard" for e in self._news)

    def present(self) -> list[TrackedObject]:
        """The objects in view now, hazards first, then nearest."""
        order = {"near": 0, "mid": 1, "far": 2}
        return sorted((o for o in self.objects.values() if o.present),
                      key=lambda o: (not o.hazard, order[o.distance], str(o.key)))
