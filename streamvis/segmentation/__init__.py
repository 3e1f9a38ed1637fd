"""Segmenters: add masks to detections. Video ones (SAM 2.1, EdgeTAM) also carry them between keyframes."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import supervision as sv

from streamvis.config import SegmenterConfig


class Segmenter(Protocol):
    """`update` is called on every frame, in order: with the keyframe's detections, or None between keyframes."""

    name: str
    provider: str
    propagates: bool
    last_timings_ms: dict[str, float]

    def update(self, image_bgr: np.ndarray, detections: sv.Detections | None = None) -> sv.Detections: ...

    def reset(self) -> None:
        """Forget all objects (a new stream); the loaded model is kept."""


def build_segmenter(config: SegmenterConfig) -> Segmenter | None:
    """The configured segmenter, loaded (hub id, local folder or cache), or None when `type: none`."""
    if not config.enabled:
        return None
    if config.type == "sam":
        from streamvis.segmentation.image import ImageSegmenter

        return ImageSegmenter(config)
    from streamvis.segmentation.video import VideoSegmenter

    return VideoSegmenter(config)
