"""Models behind small protocols: detectors map an image to detections."""

from __future__ import annotations

from streamvis.models.detector import Detector, build_detector

__all__ = ["Detector", "build_detector"]
