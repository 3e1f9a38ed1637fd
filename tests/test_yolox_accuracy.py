"""The detector path on real weights and real images: COCO mAP@0.5:0.95 on coco128 against its labels."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamvis.config import YoloxConfig
from streamvis.detection import load_detector


def coco_map(coco128: Path, detector) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    image_paths = sorted((coco128 / "images" / "train2017").glob("*.jpg"))
    for image_id, path in enumerate(image_paths):
        image = cv2.imread(str(path))
        height, width = image.shape[:2]
        images.append({"id": image_id, "width": width, "height": height})
        label = coco128 / "labels" / "train2017" / f"{path.stem}.txt"
        if label.exists():
            for line in label.read_text().split("\n"):
                if not line.strip():
                    continue
                cls, cx, cy, w, h = (float(v) for v in line.split())
                bw, bh = w * width, h * height
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls),
                                    "bbox": [cx * width - bw / 2, cy * height - bh / 2, bw, bh],
                                    "area": bw * bh, "iscrowd": 0})
        found = detector.detect(image)
        for (x1, y1, x2, y2), score, cls in zip(found.xyxy, found.confidence, found.class_id, strict=True):
            results.append({"image_id": image_id, "category_id": int(cls),
                            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(score)})
    ground_truth = COCO()
    ground_truth.dataset = {"images": images, "annotations": annotations,
                            "categories": [{"id": i} for i in range(80)]}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def test_yolox_nano_map_on_coco128(coco128: Path, models_dir: Path) -> None:
    # COCO evaluation practice: keep everything above 0.001 and let AP rank it; YOLOX's NMS IoU 0.65.
    # Loaded by registry name, the path a user takes.
    config = YoloxConfig(model="yolox-nano", confidence=0.001, nms_iou=0.65, providers=["cpu"])
    detector = load_detector(config, models_dir=models_dir)
    assert detector.class_names[0] == "person" and len(detector.class_names) == 80
    score = coco_map(coco128, detector)
    print(f"YOLOX-nano mAP@0.5:0.95 on coco128: {score:.4f}")
    assert score >= 0.33, f"mAP@0.5:0.95 {score:.4f} is below the 0.33 an independent implementation reaches"


def test_no_detections_on_blank_image(models_dir: Path) -> None:
    detector = load_detector(YoloxConfig(providers=["cpu"]), models_dir=models_dir)
    found = detector.detect(np.full((360, 640, 3), 114, np.uint8))
    assert len(found) == 0
    assert found.xyxy.shape == (0, 4)


@pytest.mark.parametrize("size_wh", [(640, 360), (360, 640), (1920, 1080), (100, 50)])
def test_boxes_land_in_image_pixels(models_dir: Path, coco128: Path, size_wh: tuple[int, int]) -> None:
    """The same image at several sizes: boxes scale with it (the letterbox ratio is undone)."""
    image = cv2.imread(str(coco128 / "images" / "train2017" / "000000000009.jpg"))
    detector = load_detector(YoloxConfig(providers=["cpu"]), models_dir=models_dir)
    base = detector.detect(cv2.resize(image, (640, 360)))
    scaled = detector.detect(cv2.resize(image, size_wh))
    assert len(scaled) > 0
    width, height = size_wh
    assert (scaled.xyxy[:, [0, 2]] <= width).all() and (scaled.xyxy[:, [1, 3]] <= height).all()
    if size_wh == (1920, 1080):  # same aspect ratio: the top box scales by 3
        np.testing.assert_allclose(scaled.xyxy[0], base.xyxy[0] * 3, atol=12)
