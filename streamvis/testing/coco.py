"""COCO box mAP of a detector on a YOLO-format dataset folder (coco128's layout), for tests and benchmarks: the
scoring `streamvis eval` does (`streamvis.evaluation.detection_map`)."""

from __future__ import annotations

from pathlib import Path

from streamvis.detection import Detector
from streamvis.evaluation import detection_map


def coco_map(dataset: Path, detector: Detector, split: str = "train2017") -> float:
    """mAP@0.5:0.95 of `detector` on `dataset/images/<split>/*.jpg` against `dataset/labels/<split>/`."""
    return detection_map(dataset / "images" / split, dataset / "labels" / split, detector)["mAP"]
