"""Detectors: the protocol every detector follows, and `load_detector`, which loads one from its config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import supervision as sv

from streamvis.config import AnyDetectorConfig, Florence2Config, YoloxConfig
from streamvis.weights.registry import resolve_model

if TYPE_CHECKING:
    from streamvis.detection.florence2 import Florence2Model
    from streamvis.detection.yolox import YoloxDetector


class Detector(Protocol):
    """Maps a BGR image to detections with `data["class_name"]`. One detector serves every stream of a process,
    so `detect` may be called from several threads (one per stream) at once."""

    name: str
    open_vocabulary: bool  # class names come from the model's answers (a class filter cannot be checked ahead)
    last_timings_ms: dict[str, float]

    @property
    def provider(self) -> str:
        """The runtime really in use, e.g. `cpu` (onnxruntime's provider) or `torch:cuda:bfloat16`."""

    @property
    def class_names(self) -> list[str]: ...

    def detect(self, image_bgr: np.ndarray) -> sv.Detections: ...


@runtime_checkable
class BatchDetector(Detector, Protocol):
    """A detector that runs several images in one call (YOLOX, Florence-2): what cross-stream batching uses."""

    def detect_batch(self, images_bgr: list[np.ndarray]) -> list[sv.Detections]: ...


@runtime_checkable
class CropDetector(Detector, Protocol):
    """A detector with a cheaper way to see a part of a frame (motion-region detection): YOLOX with its input
    fitted to the picture enlarges a crop at most `detector.max_upscale` times instead of to fill its input."""

    def detect_crop(self, crop_bgr: np.ndarray) -> sv.Detections: ...


def detect_crop(detector: Detector, crop_bgr: np.ndarray) -> sv.Detections:
    """A part of a frame (a motion crop): through the detector's cheaper way where it has one (`CropDetector`),
    else as any picture."""
    return detector.detect_crop(crop_bgr) if isinstance(detector, CropDetector) else detector.detect(crop_bgr)


@runtime_checkable
class Prioritized(Detector, Protocol):
    """A detector shared by streams through a queue (`BatchedDetector`): a stream can say how much its next
    requests matter (a watched stream before an unwatched one when the queue is full)."""

    def prioritize(self, priority: int) -> None:
        """The calling stream's requests from now on: higher goes first (none is starved)."""


class NoDetector:
    """The detector of a pipeline whose segmenter finds objects itself (SAM 3): it finds nothing and loads
    nothing."""

    name = "none"
    provider = "none"
    open_vocabulary = True  # class names come from the segmenter's concepts
    class_names: list[str] = []  # noqa: RUF012 (never changed)

    def __init__(self) -> None:
        self.last_timings_ms: dict[str, float] = {}

    def detect(self, image_bgr: np.ndarray) -> sv.Detections:
        from streamvis.serialize import empty_detections

        return empty_detections()


def load_yolox(config: YoloxConfig, models_dir: str | Path | None = None,
               threads: int | None = None) -> YoloxDetector:
    """Resolve the weights (path, models folder, cache or download) and its class names, and load them.
    `threads`: onnxruntime intra-op threads when the config leaves them automatic (`detector.threads: 0`; None:
    one per physical core)."""
    from streamvis.detection.yolox import YoloxDetector

    weights, entry = resolve_model(config.model, models_dir)
    classes: Path | None = Path(config.classes) if config.classes else None
    if classes is None:
        sibling = weights.parent / (entry.classes_file if entry and entry.classes_file else "classes.txt")
        classes = sibling if sibling.is_file() else None
    return YoloxDetector(weights, list(config.providers), config.confidence, config.nms_iou, classes,
                         name=entry.name if entry else weights.stem, threads=config.threads or threads,
                         spin_wait=config.spin_wait, fit_input=config.fit_input, max_upscale=config.max_upscale)


def load_detector(config: AnyDetectorConfig, models_dir: str | Path | None = None,
                  florence: Florence2Model | None = None, threads: int | None = None) -> Detector:
    """The configured detector, loaded; a Florence-2 detector runs on `florence` when one is given (shared)."""
    if isinstance(config, Florence2Config):
        from streamvis.detection.florence2 import Florence2Detector, Florence2Model

        return Florence2Detector(florence or Florence2Model(config), config)
    return load_yolox(config, models_dir, threads)
