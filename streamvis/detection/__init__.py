"""The detector protocol and the factory that builds one from the pipeline configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import supervision as sv

from streamvis.config import DetectorConfig
from streamvis.weights.registry import resolve_model


class Detector(Protocol):
    """Maps a BGR image to detections with `data["class_name"]`."""

    name: str
    provider: str
    last_timings_ms: dict[str, float]

    @property
    def class_names(self) -> list[str]: ...

    def detect(self, image_bgr: np.ndarray) -> sv.Detections: ...


def build_detector(config: DetectorConfig, models_dir: str | Path | None = None) -> Detector:
    """Resolve the model (path, models folder, cache or download) and load it."""
    if config.type == "florence2":
        from streamvis.detection.florence2 import Florence2Detector

        return Florence2Detector(config)
    weights, entry = resolve_model(config.model_id, models_dir)
    classes: Path | None = Path(config.classes) if config.classes else None
    if classes is None:
        sibling = weights.parent / (entry.classes_file if entry and entry.classes_file else "classes.txt")
        classes = sibling if sibling.is_file() else None
    from streamvis.detection.yolox import YoloxDetector

    return YoloxDetector(weights, list(config.providers), config.confidence, config.nms_iou, classes,
                         name=entry.name if entry else weights.stem)
