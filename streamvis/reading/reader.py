"""When and where one stream looks for text, and what it read: `StreamReader`. `LiveReader` runs its looks in a
worker, one at a time, never in the frame loop (live); offline the pipeline looks inline, on the same schedule in
stream time, so the output is the same on any machine.

A look happens at most every `every_s` of stream time. It reads the whole frame on the first look and every
`full_frame_every_s`; between, only what changed since the last look (a frame difference on a small grey copy)
and the detected objects likely to carry text (`text_classes`: a bus, a stop sign, a book) when they first
appear. Nothing changed and nothing new: no look at all. So a still scene costs nothing, and a sign walked past
is read while it is in view.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np
import supervision as sv

from streamvis.config import RapidOcrReaderConfig
from streamvis.frame import Frame, TextReading
from streamvis.reading.model import RawText, TextModel
from streamvis.reading.tracks import TextTracks

log = logging.getLogger(__name__)

SMALL_WIDTH_PX = 160  # the grey copy change is measured on
CHANGE_LEVEL = 25  # grey levels a pixel must change by
MIN_CHANGE_SHARE = 0.001  # a changed region smaller than this share of the frame is noise
REGION_MARGIN = 0.25  # around a changed region or an object, as a share of its size on each side (16 px at least)
WHOLE_FRAME_SHARE = 0.5  # regions covering more than this share of the frame: read the whole frame instead


def _small_grey(image_bgr: np.ndarray) -> np.ndarray:
    height, width = image_bgr.shape[:2]
    size = (SMALL_WIDTH_PX, max(1, round(height * SMALL_WIDTH_PX / width)))
    return cv2.GaussianBlur(cv2.cvtColor(cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA),
                                         cv2.COLOR_BGR2GRAY), (3, 3), 0)


def changed_regions(then: np.ndarray, now: np.ndarray, resolution_wh: tuple[int, int]) -> list[np.ndarray]:
    """Boxes (xyxy, the frame's pixels) around what differs between two small grey copies."""
    moved = cv2.dilate((cv2.absdiff(then, now) >= CHANGE_LEVEL).astype(np.uint8), np.ones((3, 3), np.uint8),
                       iterations=2)
    count, _, stats, _ = cv2.connectedComponentsWithStats(moved, connectivity=8)
    scale = resolution_wh[0] / now.shape[1]
    min_area = MIN_CHANGE_SHARE * now.shape[0] * now.shape[1]
    return [np.array([x, y, x + w, y + h], np.float32) * scale
            for x, y, w, h, area in stats[1:count] if area >= min_area]


def padded(xyxy: np.ndarray, resolution_wh: tuple[int, int], margin: float = REGION_MARGIN) -> np.ndarray:
    width, height = resolution_wh
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    mx, my = max(16.0, (x2 - x1) * margin), max(16.0, (y2 - y1) * margin)
    return np.array([max(0.0, x1 - mx), max(0.0, y1 - my), min(width, x2 + mx), min(height, y2 + my)], np.float32)


def merged(regions: list[np.ndarray]) -> list[np.ndarray]:
    """Overlapping boxes joined into their union, until none overlap: each pixel is read once."""
    boxes = [r.copy() for r in regions]
    joined = True
    while joined:
        joined = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])],
                                        np.float32)
                    del boxes[j]
                    joined = True
                    break
            if joined:
                break
    return boxes


class StreamReader:
    """One stream's text: the schedule, where to look, the text tracks. `look` from one thread at a time (the
    pipeline's offline, the worker's live); `in_view` from any."""

    def __init__(self, config: RapidOcrReaderConfig, model: TextModel) -> None:
        self.config = config
        self.model = model
        self.tracks = TextTracks(config.min_score, config.min_chars, config.repeat_after_s)
        self.looks = 0  # looks taken
        self.quiet = 0  # looks due that found nothing changed and nothing new: no model run
        self.read_ms = 0.0  # the model's time, all looks together
        self.last_ms = 0.0  # the model's time at the last look
        self._last_look_pts: float | None = None
        self._last_full_pts: float | None = None
        self._small_then: np.ndarray | None = None
        self._objects_read: set[int] = set()  # tracker ids of text-class objects already looked at
        self._lock = threading.Lock()
        self._unreported: list[TextReading] = []  # news not yet on a result

    def due(self, pts: float) -> bool:
        return self._last_look_pts is None or pts - self._last_look_pts >= self.config.every_s - 1e-6

    def regions(self, frame: Frame, detections: sv.Detections) -> list[np.ndarray]:
        """Where to read on this frame (xyxy, its pixels): the whole frame, or what changed and new text-class
        objects, or nothing."""
        resolution = frame.resolution_wh
        whole = [np.array([0, 0, *resolution], np.float32)]
        small = _small_grey(frame.image)
        then, self._small_then = self._small_then, small
        if then is None or then.shape != small.shape or self._last_full_pts is None \
                or frame.pts - self._last_full_pts >= self.config.full_frame_every_s - 1e-6:
            return whole
        regions = [padded(r, resolution) for r in changed_regions(then, small, resolution)]
        names = detections.data.get("class_name")
        if names is not None and detections.tracker_id is not None:
            wanted = set(self.config.text_classes)
            for i, (name, track) in enumerate(zip(names, detections.tracker_id, strict=True)):
                if str(name) in wanted and int(track) >= 0 and int(track) not in self._objects_read:
                    self._objects_read.add(int(track))
                    regions.append(padded(detections.xyxy[i], resolution, margin=0.1))
        regions = merged(regions)
        area = sum(float((r[2] - r[0]) * (r[3] - r[1])) for r in regions)
        if area > WHOLE_FRAME_SHARE * resolution[0] * resolution[1]:
            return whole
        return regions

    def look(self, frame: Frame, detections: sv.Detections) -> list[TextReading]:
        """Read what `regions` says on this frame; returns the text that is news."""
        self._last_look_pts = frame.pts
        regions = self.regions(frame, detections)
        whole = len(regions) == 1 and regions[0][2] - regions[0][0] >= frame.resolution_wh[0] \
            and regions[0][3] - regions[0][1] >= frame.resolution_wh[1]
        if whole:
            self._last_full_pts = frame.pts
        if not regions:
            self.quiet += 1
            return []
        start = time.perf_counter()
        found: list[RawText] = []
        for x1, y1, x2, y2 in (r.astype(int) for r in regions):
            crop = np.ascontiguousarray(frame.image[y1:y2, x1:x2])
            if crop.shape[0] < 8 or crop.shape[1] < 8:
                continue
            for raw in self.model.read(crop):
                found.append(RawText(raw.polygon_xy + np.array([x1, y1], np.float32), raw.text, raw.score))
        self.last_ms = (time.perf_counter() - start) * 1e3
        self.read_ms += self.last_ms
        self.looks += 1
        with self._lock:
            news = self.tracks.update(frame.pts, found, regions, frame.resolution_wh, detections)
            self._unreported.extend(news)
        if news:
            log.info("stream %s read at %.1f s: %s", frame.source_id, frame.pts, "; ".join(r.text for r in news))
        return news

    def in_sight(self) -> tuple[TextReading, ...]:
        """The text in view now (any thread; nothing flagged): what a question about the text is answered from."""
        with self._lock:
            return self.tracks.current()

    def in_view(self) -> tuple[TextReading, ...]:
        """The text in view, with the news since the last call flagged `new` (each once)."""
        with self._lock:
            fresh = {r.text_id for r in self._unreported}
            self._unreported.clear()
            current = self.tracks.current()
        return tuple(TextReading(r.text, r.score, r.polygon_xy, r.text_id, r.side, r.distance, r.first_pts,
                                 r.read_pts, r.object, r.object_track, new=r.text_id in fresh) for r in current)


class LiveReader:
    """Live: a stream's looks in a worker, one at a time; a look due while one runs waits for the next frame."""

    def __init__(self, reader: StreamReader) -> None:
        self.reader = reader
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="read")
        self._pending: Future[list[TextReading]] | None = None
        self.min_gap_s = 0.0  # looks start at least this far apart in stream time (a latency budget's knob)
        self._last_started_pts = -float("inf")

    def step(self, frame: Frame, detections: sv.Detections) -> Future[list[TextReading]] | None:
        if self._pending is not None and not self._pending.done():
            return None
        if not self.reader.due(frame.pts) or frame.pts - self._last_started_pts < self.min_gap_s:
            return None
        self._last_started_pts = frame.pts
        self._pending = self._worker.submit(self.reader.look, frame, detections)
        return self._pending

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
