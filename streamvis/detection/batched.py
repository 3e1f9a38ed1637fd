"""A detector whose calls from many streams are batched (`batching.Batcher`): what `serve` runs on a GPU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import supervision as sv

from streamvis.batching import Batcher
from streamvis.detection import BatchDetector, Detector, detect_crop


@dataclass(frozen=True, slots=True)
class Crop:
    """A part of a frame to detect on (motion-region detection), queued beside whole frames."""

    image_bgr: np.ndarray


def detect_many(detector: Detector, images_bgr: list[np.ndarray]) -> list[sv.Detections]:
    """One batched call when the detector has one (a `BatchDetector`), else one call per image."""
    if isinstance(detector, BatchDetector):
        return list(detector.detect_batch(images_bgr))
    return [detector.detect(image) for image in images_bgr]


def detect_queued(detector: Detector, items: list[np.ndarray | Crop]) -> list[sv.Detections]:
    """The whole frames of a batch together (`detect_many`), its crops one by one (`detect_crop`), in the batch's
    order."""
    wholes = [(i, item) for i, item in enumerate(items) if not isinstance(item, Crop)]
    found = dict(zip([i for i, _ in wholes], detect_many(detector, [image for _, image in wholes]), strict=True))
    for i, item in enumerate(items):
        if isinstance(item, Crop):
            found[i] = detect_crop(detector, item.image_bgr)
    return [found[i] for i in range(len(items))]


class BatchedDetector:
    """The `Detector` protocol over a shared detector: `detect` from any stream's thread joins the next batch."""

    def __init__(self, detector: Detector, max_batch: int, batch_wait_ms: float, workers: int = 1) -> None:
        self.inner = detector
        self.name = detector.name
        self.open_vocabulary = detector.open_vocabulary
        self.last_timings_ms: dict[str, float] = {}  # the batch's, in the batch's own thread
        self.batcher: Batcher[np.ndarray | Crop, sv.Detections] = Batcher(
            f"detect-{detector.name}", lambda items: detect_queued(detector, items), max_batch, batch_wait_ms,
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

    def detect_crop(self, crop_bgr: np.ndarray) -> sv.Detections:
        """A motion crop through the same queue: the shared detector's `detect_crop` where it has one."""
        detections = self.batcher(Crop(crop_bgr))
        self.last_timings_ms = dict(self.inner.last_timings_ms)
        return detections

    def close(self) -> None:
        self.batcher.close()
