"""Segmenters: add masks to detections. Video ones (SAM 2.1, EdgeTAM) also carry them between keyframes; SAM 3
finds the objects itself, from words.

A `SegmenterModel` is loaded once per process; each stream takes its own `Segmenter` (its objects and, for
video models, its streaming session) with `new_stream()`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import supervision as sv

from streamvis.config import AnySegmenterConfig, EdgeTamConfig, Sam2Config, Sam3Config, SamConfig


class Segmenter(Protocol):
    """One stream's segmentation. `update` is called on every frame, in order: with the keyframe's
    detections, or None between keyframes."""

    name: str
    provider: str
    propagates: bool
    last_timings_ms: dict[str, float]

    def update(self, image_bgr: np.ndarray, detections: sv.Detections | None = None) -> sv.Detections: ...


class SegmenterModel(Protocol):
    """The loaded weights, shared by every stream."""

    name: str
    provider: str
    propagates: bool  # masks are carried between keyframes by the model (no tracker needed)

    def new_stream(self) -> Segmenter: ...


def load_segmenter(config: AnySegmenterConfig) -> SegmenterModel | None:
    """The configured segmenter model, loaded (hub id, local folder or cache), or None when `type: none`."""
    if isinstance(config, SamConfig):
        from streamvis.segmentation.image import ImageSegmenter

        return ImageSegmenter(config)
    if isinstance(config, Sam2Config | EdgeTamConfig):
        from streamvis.segmentation.video import VideoSegmenterModel

        return VideoSegmenterModel(config)
    if isinstance(config, Sam3Config):
        from streamvis.segmentation.sam3 import Sam3SegmenterModel

        return Sam3SegmenterModel(config)
    return None
