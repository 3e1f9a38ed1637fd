"""What the pipeline may ask of a segmenter: the protocols every segmenter class declares (`streamvis.segmentation`
says which does what)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import supervision as sv


class Segmenter(Protocol):
    """One stream's segmentation. `update` is called on every frame, in order: with the keyframe's
    detections, or None between keyframes."""

    name: str
    provider: str
    propagates: bool
    last_timings_ms: dict[str, float]

    def update(self, image_bgr: np.ndarray, detections: sv.Detections | None = None) -> sv.Detections: ...


@runtime_checkable
class Promptable(Segmenter, Protocol):
    """A video segmenter that takes clicks, boxes and removals between frames, on a frame it has seen."""

    frame_idx: int  # the segmenter's own index of the newest frame it took

    def prompt(self, image_bgr: np.ndarray, frame_idx: int, points_xy: np.ndarray | None = None,
               labels: list[int] | None = None, box_xyxy: np.ndarray | None = None, object_id: int | None = None,
               class_name: str = "object", class_id: int = -1) -> int:
        """Add or refine an object on frame `frame_idx` (`image_bgr`); returns its id."""

    def remove(self, object_id: int) -> None: ...


@runtime_checkable
class ConceptSegmenter(Segmenter, Protocol):
    """A segmenter that finds its own objects from words: the pipeline runs no detector for it."""

    def add_concept(self, text: str) -> list[int]:
        """Find and track what `text` names from the next frame on; the ids known now (maybe none)."""


class SegmenterModel(Protocol):
    """The loaded weights, shared by every stream."""

    name: str
    provider: str
    propagates: bool  # masks are carried between keyframes by the model (no tracker needed)

    def new_stream(self) -> Segmenter: ...


@runtime_checkable
class Batchable(SegmenterModel, Protocol):
    """A segmenter model whose image encoding can join one batch across streams."""

    def batch_across_streams(self, max_batch: int, batch_wait_ms: float) -> None: ...
