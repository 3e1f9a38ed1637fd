"""A detector whose calls from many streams are batched (`batching.Batcher`): what `serve` runs on a GPU."""

from __future__ import annotations

import numpy as np
import supervision as sv

from streamvis.batching import Batcher
from streamvis.detection import BatchDetector, Detector


def detect_many(detector: Detector, images_bgr: list[np.ndarray]) -> list[sv.Detections]:
    """One batched call when the detector has one (a `BatchDetector`), else one call per image."""
    if isinstance(detector, BatchDetector):
        return list(detector.detect_batch(images_bgr))
    return [detector.detect(image) for image in images_bgr]


class BatchedDetector:
    """The `Detector` protocol over a shared detector: `detect` from any stream's thread joins the next batch."""

    def __init__(self, detector: Detector, max_batch: int, batch_wait_ms: float, workers: int = 1) -> None:
        self.inner = detector
        self.name = detector.name
        self.open_vocabulary = detector.open_vocabulary
        self.last_timings_ms: dict[str, float] = {}  # the batch's, in the batch's own thread
        self.batcher: Batcher[np.ndarray, sv.Detections] = Batcher(
            f"detect-{detector.name}", lambda images: detect_many(detector, images), max_batch, batch_wait_ms,
            workers=workers)

    @property
    def provider(self) -> str:
        return self.inner.provider

    @property
    def class_names(self) -> list[str]:
        return self.inner.class_names

    def prioritize(self, priority: int) -> None:
        self.batcher.set_priority(priority)

    def detect(self, image_bgr: np.ndarray) -> sv.Detections:
        detections = self.batcher(image_bgr)
        self.last_timings_ms = dict(self.inner.last_timings_ms)
        return detections

    def close(self) -> None:
        self.batcher.close()
