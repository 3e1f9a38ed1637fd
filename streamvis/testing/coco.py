"""COCO box mAP of a detector on a YOLO-format dataset folder (coco128's layout), for tests and benchmarks."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streamvis.detection import Detector


def coco_map(dataset: Path, detector: Detector, split: str = "train2017") -> float:
    """mAP@0.5:0.95 (pycocotools) of `detector` on `dataset/images/<split>/*.jpg` against the YOLO labels in
    `dataset/labels/<split>/` (class cx cy w h, relative); class ids are the detector's."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    image_paths = sorted((dataset / "images" / split).glob("*.jpg"))
    for image_id, path in enumerate(image_paths):
        image = cv2.imread(str(path))
        if image is None:
            raise ValueError(f"cannot read {path}")
        height, width = image.shape[:2]
        images.append({"id": image_id, "width": width, "height": height})
        label = dataset / "labels" / split / f"{path.stem}.txt"
        if label.exists():
            for line in label.read_text().split("\n"):
                if not line.strip():
                    continue
                cls, cx, cy, w, h = (float(v) for v in line.split())
                box_w, box_h = w * width, h * height
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls),
                                    "bbox": [cx * width - box_w / 2, cy * height - box_h / 2, box_w, box_h],
                                    "area": box_w * box_h, "iscrowd": 0})
        found = detector.detect(image)
        scores = found.confidence if found.confidence is not None else np.ones(len(found))
        class_ids = found.class_id if found.class_id is not None else np.zeros(len(found), int)
        for (x1, y1, x2, y2), score, cls in zip(found.xyxy, scores, class_ids, strict=True):
            results.append({"image_id": image_id, "category_id": int(cls),
                            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(score)})
    ground_truth = COCO()
    ground_truth.dataset = {"images": images, "annotations": annotations,
                            "categories": [{"id": i} for i in range(len(detector.class_names))]}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])
