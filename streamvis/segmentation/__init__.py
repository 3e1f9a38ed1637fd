"""Segmenters: add masks to detections. Video ones (SAM 2.1, EdgeTAM) also carry them between keyframes; SAM 3
finds the objects itself, from words.

A `SegmenterModel` is loaded once per process; each stream takes its own `Segmenter` (its objects and, for
video models, its streaming session) with `new_stream()`. What else a segmenter can do is a typed capability,
a protocol its class declares (checked by mypy, asked with `isinstance`, never by probing attributes):

- `Promptable`: clicks, boxes and removals mid-stream (SAM 2.1, EdgeTAM);
- `ConceptSegmenter`: finds every instance of what words name, by itself (SAM 3; no detector runs);
- `Batchable` (a model): image encoding batched across streams (SAM 2.1, EdgeTAM on a GPU).
"""

from __future__ import annotations

from streamvis.config import AnySegmenterConfig, EdgeTamConfig, Sam2Config, Sam3Config, SamConfig
from streamvis.segmentation.base import Batchable, ConceptSegmenter, Promptable, Segmenter, SegmenterModel

__all__ = ["Batchable", "ConceptSegmenter", "Promptable", "Segmenter", "SegmenterModel", "load_segmenter"]


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
