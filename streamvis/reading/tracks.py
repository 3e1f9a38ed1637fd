"""Text as objects: a sign seen on many frames is read once, tracked by position, and said again only when it
changes or comes back after a while. Pure logic on stream time, fed with what each look read.

A look reads some regions of the frame (`looked_xyxy`). A reading that overlaps a kept text (box IoU, or most of it
inside the kept one's box) is that text seen again: the better-scored reading is kept, a part of it (the rest
hidden behind someone) changes nothing, and different words there are a change (news). A kept text inside
a looked region that was not read there twice running is gone. What is news is said once: the same words are
news again only `repeat_after_s` later.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np
import supervision as sv

from streamvis.frame import TextReading
from streamvis.narration.scene import locate
from streamvis.reading.model import RawText

TEXT_NEAR_SHARE = 0.06  # a text line this tall (share of the frame's height) is close: a sign at arm's length
TEXT_FAR_SHARE = 0.025  # ... and below this, far away


def normalized(text: str) -> str:
    """The letters and digits of `text`, upper case: what "the same words" compares."""
    return "".join(ch for ch in text.upper() if ch.isalnum())


def similarity(a: str, b: str) -> float:
    """0..1: how alike two readings are, letter by letter (one misread letter in STOP is still STOP)."""
    a, b = normalized(a), normalized(b)
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b).ratio()


def place(xyxy: np.ndarray, resolution_wh: tuple[int, int]) -> tuple[str, str]:
    """(side, distance) of a text line: thirds of the width by its centre, as for objects; near / far by its
    height's share of the frame, on its own scale (text is small: a line 6% of the frame tall is close)."""
    side, _ = locate(xyxy, resolution_wh)  # the same thirds as every object the narrator places
    share = float(xyxy[3] - xyxy[1]) / max(resolution_wh[1], 1)
    distance = "near" if share >= TEXT_NEAR_SHARE else "far" if share < TEXT_FAR_SHARE else "mid"
    return side, distance


def _xyxy(polygon_xy: np.ndarray) -> np.ndarray:
    return np.array([polygon_xy[:, 0].min(), polygon_xy[:, 1].min(), polygon_xy[:, 0].max(),
                     polygon_xy[:, 1].max()], np.float32)


def _inside(point_xy: np.ndarray, xyxy: np.ndarray) -> bool:
    return bool(xyxy[0] <= point_xy[0] < xyxy[2] and xyxy[1] <= point_xy[1] < xyxy[3])


@dataclass
class TextTrack:
    text_id: int
    text: str
    score: float
    polygon_xy: np.ndarray
    first_pts: float
    read_pts: float  # when its text was last read as new (first, or changed)
    seen_pts: float
    misses: int = 0
    object: str | None = None
    object_track: int | None = None

    @property
    def xyxy(self) -> np.ndarray:
        return _xyxy(self.polygon_xy)


class TextTracks:
    """The text in view of one stream, and what of it is news."""

    def __init__(self, min_score: float = 0.75, min_chars: int = 2, repeat_after_s: float = 60.0,
                 forget_s: float = 30.0, same_iou: float = 0.3, same_text: float = 0.7, gone_after: int = 2) -> None:
        self.min_score, self.min_chars, self.repeat_after_s = min_score, min_chars, repeat_after_s
        self.forget_s, self.same_iou, self.same_text, self.gone_after = forget_s, same_iou, same_text, gone_after
        self.tracks: dict[int, TextTrack] = {}
        self._said: dict[str, float] = {}  # normalized text -> when it was last news
        self._next_id = 1
        self._resolution_wh = (1, 1)

    def legible(self, found: RawText) -> bool:
        return found.score >= self.min_score and len(normalized(found.text)) >= self.min_chars

    def _news(self, text: str, t: float) -> bool:
        key = normalized(text)
        last = self._said.get(key)
        if last is not None and t - last < self.repeat_after_s:
            return False
        self._said[key] = t
        return True

    def update(self, t: float, found: list[RawText], looked_xyxy: list[np.ndarray], resolution_wh: tuple[int, int],
               detections: sv.Detections | None = None) -> list[TextReading]:
        """Fold one look's readings in; returns the texts that are news (new, changed, or back after a while)."""
        self._resolution_wh = resolution_wh
        news: list[TextReading] = []
        matched: set[int] = set()
        for reading in sorted((f for f in found if self.legible(f)), key=lambda f: -f.score):
            box = _xyxy(reading.polygon_xy)
            track = self._same_place(box, [k for k in self.tracks if k not in matched])
            part, whole = normalized(reading.text), normalized(track.text) if track is not None else ""
            if track is None:
                track = TextTrack(self._next_id, reading.text, reading.score, reading.polygon_xy, t, t, t)
                self.tracks[track.text_id] = track
                self._next_id += 1
                fresh = True
            elif part in whole:  # a part of it (someone walks in front of a sign): what was read stands
                fresh = False
                if len(part) == len(whole) and reading.score > track.score:
                    track.text, track.score, track.polygon_xy = reading.text, reading.score, reading.polygon_xy
            elif similarity(track.text, reading.text) >= self.same_text:  # read again, a letter apart
                fresh = False
                if reading.score > track.score:
                    track.text, track.score, track.polygon_xy = reading.text, reading.score, reading.polygon_xy
            else:  # the same place, other words: a changed sign (or more of it than before)
                track.text, track.score, track.read_pts = reading.text, reading.score, t
                track.polygon_xy = reading.polygon_xy
                fresh = True
            track.seen_pts, track.misses = t, 0
            matched.add(track.text_id)
            self._attach(track, detections)
            if fresh and self._news(track.text, t):
                news.append(self._reading(track, new=True))
        for key, track in list(self.tracks.items()):
            if key in matched:
                continue
            centre = (track.xyxy[:2] + track.xyxy[2:]) / 2
            if any(_inside(centre, region) for region in looked_xyxy):
                track.misses += 1
            if track.misses >= self.gone_after or t - track.seen_pts > self.forget_s:
                del self.tracks[key]
        return news

    def _same_place(self, box: np.ndarray, keys: list[int]) -> TextTrack | None:
        """The kept text at `box`: the best box overlap (IoU at least `same_iou`), or the one holding most of
        `box` (a part of a line, read while the rest was hidden)."""
        if not keys:
            return None
        boxes = np.stack([self.tracks[k].xyxy for k in keys])
        ious = sv.box_iou_batch(box[None], boxes)[0]
        best = int(np.argmax(ious))
        if ious[best] >= self.same_iou:
            return self.tracks[keys[best]]
        width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
        height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
        held = width * height / max(1e-6, float((box[2] - box[0]) * (box[3] - box[1])))
        best = int(np.argmax(held))
        return self.tracks[keys[best]] if held[best] >= 0.6 else None

    def _attach(self, track: TextTrack, detections: sv.Detections | None) -> None:
        """The detected object the text is on (the smallest box holding its centre): a bus, a stop sign."""
        track.object, track.object_track = None, None
        if detections is None or not len(detections):
            return
        centre = (track.xyxy[:2] + track.xyxy[2:]) / 2
        holding = [i for i in range(len(detections)) if _inside(centre, detections.xyxy[i])]
        if not holding:
            return
        i = min(holding, key=lambda j: float(np.prod(detections.xyxy[j, 2:] - detections.xyxy[j, :2])))
        names = detections.data.get("class_name")
        track.object = str(names[i]) if names is not None and len(names) > i else None
        if detections.tracker_id is not None and int(detections.tracker_id[i]) >= 0:
            track.object_track = int(detections.tracker_id[i])

    def _reading(self, track: TextTrack, new: bool = False) -> TextReading:
        side, distance = place(track.xyxy, self._resolution_wh)
        return TextReading(track.text, round(track.score, 4),
                           tuple((round(float(x), 1), round(float(y), 1)) for x, y in track.polygon_xy),
                           track.text_id, side, distance, track.first_pts, track.read_pts, track.object,
                           track.object_track, new)

    def current(self) -> tuple[TextReading, ...]:
        """The text in view now, top to bottom, left to right (reading order)."""
        ordered = sorted(self.tracks.values(), key=lambda k: (round(float(k.xyxy[1]) / 20), float(k.xyxy[0])))
        return tuple(self._reading(track) for track in ordered)
