"""Stand-ins for testing schedulers (offline runner, live scheduler): they never show that a model works."""

from __future__ import annotations

import threading
import time

import numpy as np
import supervision as sv

from streamvis.frame import Result


class StandInDetector:
    """Returns one fixed box (`thing` at 10,10-50,50) after `delay_s`, and counts its calls and how many ran at
    once. It can fail every `fail_every`-th call (RuntimeError) or be interrupted at call `interrupt_at` (as if
    the user pressed Ctrl-C)."""

    name = "stand-in"
    provider = "test"
    open_vocabulary = False

    def __init__(self, delay_s: float = 0.0, confidence: float = 1.0, fail_every: int | None = None,
                 interrupt_at: int | None = None) -> None:
        self.delay_s = delay_s
        self.confidence = confidence
        self.fail_every = fail_every
        self.interrupt_at = interrupt_at
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.last_timings_ms: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def class_names(self) -> list[str]:
        return ["thing"]

    def detect(self, image_bgr: np.ndarray) -> sv.Detections:
        with self._lock:
            self.calls += 1
            call = self.calls
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if call == self.interrupt_at:
                raise KeyboardInterrupt
            time.sleep(self.delay_s)
            if self.fail_every and call % self.fail_every == 0:
                raise RuntimeError("stand-in detector hiccup")
        finally:
            with self._lock:
                self.active -= 1
        return sv.Detections(xyxy=np.array([[10, 10, 50, 50]], np.float32),
                             confidence=np.array([self.confidence], np.float32), class_id=np.zeros(1, int),
                             data={"class_name": np.array(["thing"])})


class ResultList(list[Result]):
    """A sink that keeps every result it is given, in order (for tests that look at what a stream produced)."""

    closed = False

    def write(self, result: Result) -> None:
        self.append(result)

    def close(self) -> None:
        self.closed = True


class StandInVideoSegmenter:
    """A video segmenter model of known cost (a `SegmenterModel`): each stream's `update` takes `delay_s`, then
    gives the last keyframe's boxes with a box-shaped mask each and fixed object ids, as SAM 2 would carry them.
    It counts updates and notes how many ran at once."""

    name = "stand-in-video-segmenter"
    provider = "test"
    propagates = True

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.updates = 0
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def new_stream(self) -> _StandInSegmenterStream:
        return _StandInSegmenterStream(self)


class _StandInSegmenterStream:
    name = "stand-in-video-segmenter"
    provider = "test"
    propagates = True

    def __init__(self, model: StandInVideoSegmenter) -> None:
        self.model = model
        self.last_timings_ms: dict[str, float] = {}
        self._objects: sv.Detections | None = None

    def update(self, image_bgr: np.ndarray, detections: sv.Detections | None = None) -> sv.Detections:
        model = self.model
        with model._lock:
            model.updates += 1
            model.active += 1
            model.max_active = max(model.max_active, model.active)
        try:
            time.sleep(model.delay_s)
        finally:
            with model._lock:
                model.active -= 1
        if detections is not None and len(detections):
            height, width = image_bgr.shape[:2]
            masks = np.zeros((len(detections), height, width), bool)
            for i, (x1, y1, x2, y2) in enumerate(detections.xyxy.astype(int)):
                masks[i, y1:y2, x1:x2] = True
            self._objects = sv.Detections(xyxy=detections.xyxy.copy(), mask=masks,
                                          confidence=detections.confidence, class_id=detections.class_id,
                                          tracker_id=np.arange(1, len(detections) + 1),
                                          data=dict(detections.data))
        if self._objects is None:
            return sv.Detections.empty()
        return self._objects
