"""The detector path on real weights and real images: COCO mAP@0.5:0.95 on coco128 against its labels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamvis.config import YoloxConfig
from streamvis.detection import load_detector
from streamvis.testing.coco import coco_map


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
