"""Motion-region detection (`motion.crop`): when a small part of the frame moves, the detector sees only that part;
boxes come back in the frame's pixels, the still objects elsewhere stay with their ids, and on real COCO photos a
small object that moves is found far more often than in the whole photo."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv

from streamvis.config import MotionConfig, PipelineConfig
from streamvis.frame import Frame
from streamvis.pipeline.loading import Models, load_models
from streamvis.pipeline.motion import MotionGate, detection_region
from streamvis.pipeline.step import Pipeline, with_still_objects
from streamvis.testing.fakes import StandInDetector

W, H = 640, 360


@pytest.mark.parametrize(("regions", "margin", "max_fraction", "expected"), [
    ([], 1.0, 0.4, None),  # nothing moves: nothing to crop to
    ([[300, 150, 340, 190]], 1.0, 0.4, [230, 80, 410, 260]),  # 40 px: 40 each side, then the 180 px minimum square
    ([[300, 150, 340, 190]], 0.0, 0.4, [230, 80, 410, 260]),  # no margin: still the minimum square
    ([[300, 150, 400, 190]], 1.0, 0.4, [200, 20, 500, 320]),  # 100 px wide: 300 x 300 around its centre
    ([[0, 0, 40, 40]], 1.0, 0.4, [0, 0, 180, 180]),  # at a corner: shifted inside the frame, same size
    ([[100, 100, 140, 140], [500, 200, 540, 240]], 1.0, 0.4, None),  # apart: their union is most of the frame
    ([[300, 150, 340, 190]], 1.0, 0.1, None),  # more than 10% of the frame: the whole frame instead
])
def test_the_region_is_the_moving_part_with_a_margin_squared_inside_the_frame(
        regions: list[list[float]], margin: float, max_fraction: float, expected: list[float] | None) -> None:
    region = detection_region(np.array(regions, np.float32).reshape(-1, 4), (W, H), margin, max_fraction)
    if expected is None:
        assert region is None
    else:
        assert region is not None and region.tolist() == expected


def _scene(square_x: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(7)
    image = (rng.integers(0, 30, (H, W, 3)) + 90).astype(np.uint8)
    if square_x is not None:
        image[150:190, square_x:square_x + 40] = 240
    return image


def test_runs_on_motion_see_the_moving_part_and_the_refresh_sees_the_whole_frame() -> None:
    gate = MotionGate(MotionConfig(refresh_s=1.0), crop=True)
    assert gate.decide(_scene(), 0.0, due=True) and gate.region_xyxy is None  # the first run: the whole frame
    assert not gate.decide(_scene(), 0.1, due=True)
    assert gate.decide(_scene(square_x=300), 0.2, due=True)
    assert gate.region_xyxy is not None
    x1, y1, x2, y2 = gate.region_xyxy
    assert x1 <= 300 and x2 >= 340 and y1 <= 150 and y2 >= 190 and (x2 - x1) * (y2 - y1) < 0.4 * W * H
    assert gate.decide(_scene(square_x=310), 1.0, due=True) and gate.region_xyxy is None  # 1 s since the whole
    assert gate.cropped == 1
    assert not gate.decide(_scene(square_x=320), 1.1, due=False) and gate.region_xyxy is None  # not due: no region
    whole = MotionGate(MotionConfig(refresh_s=1.0, crop=False), crop=True)  # motion.crop off: never a region
    whole.decide(_scene(), 0.0, due=True)
    assert whole.decide(_scene(square_x=300), 0.1, due=True) and whole.region_xyxy is None


def _detections(xyxy: list[list[float]], track_ids: list[int] | None = None) -> sv.Detections:
    n = len(xyxy)
    return sv.Detections(xyxy=np.array(xyxy, np.float32).reshape(-1, 4), confidence=np.full(n, 0.9, np.float32),
                         class_id=np.zeros(n, int), tracker_id=None if track_ids is None else np.array(track_ids),
                         data={"class_name": np.array(["thing"] * n)})


def test_still_objects_outside_the_region_are_kept_and_those_inside_are_replaced() -> None:
    carried = _detections([[10, 10, 50, 50], [300, 150, 340, 190], [500, 10, 540, 50]], [1, 2, 3])
    found = _detections([[305, 150, 345, 190], [400, 200, 420, 240]])  # object 2 moved a little; a new one
    merged = with_still_objects(found, carried, np.array([250, 100, 450, 300], np.float32))
    assert merged.xyxy.tolist() == [[305, 150, 345, 190], [400, 200, 420, 240], [10, 10, 50, 50], [500, 10, 540, 50]]
    assert merged.tracker_id is None  # the tracker assigns ids to all of them again
    # an object carried inside the region that the detector no longer finds is gone (it moved away or left)
    assert len(with_still_objects(_detections([]), carried, np.array([250, 100, 450, 300], np.float32))) == 2


def test_a_cropped_keyframe_maps_boxes_back_and_keeps_the_still_objects_ids() -> None:
    config = PipelineConfig.model_validate({"tracker": {"minimum_consecutive_frames": 1}})
    detector = StandInDetector()  # one box at 10,10-50,50 of whatever image it is given
    pipeline = Pipeline(config, Models(detector), fps=10, annotate=False)
    assert pipeline.crops()
    pipeline.apply(Frame(_scene(), 0, 0.0, "t"), pipeline.detect(_scene()))
    first = pipeline.apply(Frame(_scene(), 1, 0.1, "t"), pipeline.detect(_scene()))
    assert first.detections.xyxy.tolist() == [[10, 10, 50, 50]] and first.detections.tracker_id[0] >= 0
    region = np.array([200, 100, 400, 300], np.float32)
    cropped = pipeline.detect(_scene(), region)
    assert cropped.xyxy.tolist() == [[210, 110, 250, 150]]  # in the frame's pixels
    boxes: dict[tuple[float, ...], int] = {}
    for index in (2, 3):  # the new object is confirmed on its second keyframe
        result = pipeline.apply(Frame(_scene(), index, index / 10, "t"), cropped, region_xyxy=region)
        boxes = {tuple(b): int(t) for b, t in zip(result.detections.xyxy.tolist(), result.detections.tracker_id,
                                                   strict=True)}
    assert boxes[(10, 10, 50, 50)] == first.detections.tracker_id[0]  # the still object, same id
    assert boxes[(210, 110, 250, 150)] >= 0


def test_a_pipeline_with_a_video_segmenter_never_crops() -> None:
    config = PipelineConfig.model_validate({"tracker": {"enabled": False}})
    assert not Pipeline(config, Models(StandInDetector()), fps=10).crops()


def test_a_small_object_that_moves_is_found_far_more_often_in_its_crop(coco128: Path, models_dir: Path) -> None:
    """Real YOLOX-nano on the 128 real COCO photos: every labelled small object (< 32 x 32 px), as if it were what
    moves. benchmarks/motion_crops.py measured recall 0.125 in the whole photo, 0.368 in the crop (x86-64, AVX2)."""
    detector = load_models(PipelineConfig(), models_dir).detector
    defaults = MotionConfig()
    objects = whole_hits = crop_hits = 0
    for path in sorted((coco128 / "images" / "train2017").glob("*.jpg")):
        label = coco128 / "labels" / "train2017" / (path.stem + ".txt")
        if not label.is_file():
            continue
        image = cv2.imread(str(path))
        height, width = image.shape[:2]
        rows = np.loadtxt(label, ndmin=2)
        small = rows[rows[:, 3] * width * rows[:, 4] * height < 32 ** 2]
        if not len(small):
            continue
        whole = detector.detect(image)
        for class_id, cx, cy, w, h in small:
            box = np.array([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height],
                           np.float32)
            region = detection_region(box[None], (width, height), defaults.crop_margin, defaults.crop_max_fraction)
            assert region is not None  # a small object's region is always small enough
            x1, y1, x2, y2 = (int(v) for v in region)
            crop = detector.detect(np.ascontiguousarray(image[y1:y2, x1:x2]))
            crop.xyxy = crop.xyxy + np.array([x1, y1, x1, y1], np.float32)
            objects += 1
            whole_hits += _hit(whole, box, int(class_id))
            crop_hits += _hit(crop, box, int(class_id))
    print(f"{objects} small objects: recall {whole_hits / objects:.3f} whole, {crop_hits / objects:.3f} cropped")
    assert objects > 300
    assert crop_hits >= 2 * whole_hits and crop_hits - whole_hits >= 0.12 * objects


def _hit(found: sv.Detections, box: np.ndarray, class_id: int) -> bool:
    if not len(found) or found.class_id is None:
        return False
    same = found.class_id == class_id
    return bool(same.any() and sv.box_iou_batch(box[None], found.xyxy[same]).max() >= 0.5)
