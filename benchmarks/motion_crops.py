"""Motion-region detection (`motion.crop`): what the detector finds when it sees only the moving part of a frame.

    .venv/bin/python benchmarks/motion_crops.py [--models-dir ../shared/models] [--frames N]

Two measurements, each against its baseline in the same run, with the real YOLOX-nano:

1. **COCO ground truth** (`../shared/media/coco128`, 128 real photos with their labelled boxes). For every labelled
   object, suppose it is what moves: the detector sees the region `detection_region` makes around its box
   (margin, squared, at least half the shorter side) instead of the whole photo. Recall at IoU 0.5 with the
   right class, by COCO's size classes (small < 32 x 32 px, medium < 96 x 96, large), whole photo against crop,
   the crop enlarged at most `detector.max_upscale` (the default) and enlarged to fill the detector's input (as
   before it), with the milliseconds of a crop run of each. This isolates what the crop does for an object that
   moves; where motion is found is measured by 2.
2. **The shared videos** through the offline pipeline with motion gating on, whole frames against crops: detector
   runs and how many of them were cropped, the tracks the ungated pipeline follows for 1 s that each run finds
   (missed, found more than one keyframe late), tracks followed, and boxes smaller than 32 x 32 px per 100 frames.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import supervision as sv
from results import save_table
from rich.console import Console
from rich.table import Table

from streamvis.config import PipelineConfig, YoloxConfig
from streamvis.detection import load_detector
from streamvis.detection.yolox import YoloxDetector
from streamvis.frame import Result
from streamvis.pipeline.loading import load_models
from streamvis.pipeline.motion import detection_region
from streamvis.pipeline.step import Pipeline
from streamvis.sources import open_source
from streamvis.testing.tracks import followed_tracks, found_in

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SIZES = (("small", 0, 32 ** 2), ("medium", 32 ** 2, 96 ** 2), ("large", 96 ** 2, float("inf")))


def coco_labels(image: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The YOLO-format labels of a coco128 image as (xyxy in pixels, class ids)."""
    label = image.parent.parent.parent / "labels" / image.parent.name / (image.stem + ".txt")
    if not label.is_file():
        return np.zeros((0, 4), np.float32), np.zeros(0, int)
    rows = np.loadtxt(label, ndmin=2)
    cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32), rows[:, 0].astype(int)


def hit(found: sv.Detections, box: np.ndarray, class_id: int) -> bool:
    if not len(found) or found.class_id is None:
        return False
    same = found.class_id == class_id
    return bool(same.any() and sv.box_iou_batch(box[None], found.xyxy[same]).max() >= 0.5)


def coco_recall(detectors: dict[str, YoloxDetector], margin: float, max_fraction: float) -> Table:
    """Recall of each labelled object on the whole photo (by the first detector) and with the crop around it, by
    each detector (the same model, enlarging a crop more or less), with the mean milliseconds of a crop run."""
    whole_by = next(iter(detectors.values()))
    objects = {name: 0 for name, *_ in SIZES}
    found_whole = dict.fromkeys(objects, 0)
    cropped = dict.fromkeys(objects, 0)
    found_crop = {label: dict.fromkeys(objects, 0) for label in detectors}
    crop_ms: dict[str, list[float]] = {label: [] for label in detectors}
    images = sorted((SHARED / "media" / "coco128" / "images" / "train2017").glob("*.jpg"))
    for path in images:
        image = cv2.imread(str(path))
        height, width = image.shape[:2]
        boxes, classes = coco_labels(path, width, height)
        whole = whole_by.detect(image)
        for box, class_id in zip(boxes, classes, strict=True):
            area = float((box[2] - box[0]) * (box[3] - box[1]))
            size = next(name for name, low, high in SIZES if low <= area < high)
            objects[size] += 1
            found_whole[size] += hit(whole, box, class_id)
            region = detection_region(box[None], (width, height), margin, max_fraction)
            if region is None:  # too big to crop: the pipeline runs on the whole photo
                for label in detectors:
                    found_crop[label][size] += hit(whole, box, class_id)
                continue
            cropped[size] += 1
            x1, y1, x2, y2 = (int(v) for v in region)
            for label, detector in detectors.items():
                start = time.perf_counter()
                crop = detector.detect_crop(np.ascontiguousarray(image[y1:y2, x1:x2]))
                crop_ms[label].append((time.perf_counter() - start) * 1e3)
                crop.xyxy = crop.xyxy + np.array([x1, y1, x1, y1], np.float32)
                found_crop[label][size] += hit(crop, box, class_id)
    table = Table(title=f"COCO128 ground truth: recall of an object that moves, whole photo vs motion crop "
                        f"({len(images)} photos, YOLOX-nano, input fitted to the picture, IoU 0.5, class must match)")
    for header in ("objects", "count", "cropped", "recall whole photo",
                   *(f"recall with crop, {label}" for label in detectors), "gain (default)"):
        table.add_column(header, justify="right")
    for name, count in objects.items():
        recalls = [found_crop[label][name] / count for label in detectors]
        table.add_row(name, str(count), str(cropped[name]), f"{found_whole[name] / count:.3f}",
                      *(f"{r:.3f}" for r in recalls), f"{recalls[0] - found_whole[name] / count:+.3f}")
    table.add_row("ms a crop run (1 thread)", "", "", "", *(f"{np.mean(ms):.1f}" for ms in crop_ms.values()), "")
    return table


def run_video(video: Path, models_dir: Path, motion: dict[str, object], frames: int) -> tuple[list[Result], float,
                                                                                                float, Pipeline]:
    config = PipelineConfig.model_validate({"motion": motion})
    source = open_source(str(video))
    pipeline = Pipeline(config, load_models(config, models_dir), source.fps, annotate=False)
    start = time.perf_counter()
    results = [pipeline.process(frame) for frame, _ in zip(source, range(frames), strict=False)]
    seconds = time.perf_counter() - start
    source.close()
    return results, source.fps or 30.0, seconds, pipeline


def video_rows(models_dir: Path, frames: int) -> Table:
    table = Table(title="The shared videos, offline, motion gating on: whole frames vs motion crops (YOLOX-nano, "
                        "ByteTrack; 'tracks' = followed for 1 s by the ungated run)")
    for header in ("video", "run", "detector runs", "cropped", "tracks missed", "found late", "tracks followed",
                   "small boxes / 100 frames", "s"):
        table.add_column(header, justify="right")
    for name in ("intel_one-by-one-person-detection.mp4", "intel_car-detection.mp4", "intel_bottle-detection.mp4"):
        video = SHARED / "media" / "videos" / name
        ungated, fps, seconds, _ = run_video(video, models_dir, {"enabled": False}, frames)
        reference = followed_tracks(ungated, fps)
        short = name.removeprefix("intel_").removesuffix(".mp4")
        table.add_row(short, "ungated", str(len(ungated)), "-", "-", "-", str(len(reference)),
                      f"{small_per_100(ungated):.1f}", f"{seconds:.0f}")
        for label, crop in (("gated, whole", False), ("gated, crop", True)):
            results, _, seconds, pipeline = run_video(video, models_dir, {"enabled": True, "crop": crop}, frames)
            found = found_in(reference, results)
            missed = sum(f.first_found is None for f in found)
            late = sum(f.delay_frames is not None and f.delay_frames > 1 for f in found)
            gate = pipeline.motion_gate
            cropped = gate.cropped if gate is not None else 0
            table.add_row(short, label, str(sum(r.keyframe for r in results)), str(cropped),
                          f"{missed} of {len(reference)}", str(late), str(len(followed_tracks(results, fps))),
                          f"{small_per_100(results):.1f}", f"{seconds:.0f}")
    return table


def defaults_upscale() -> float | None:
    return YoloxConfig().max_upscale


def small_per_100(results: list[Result]) -> float:
    small = 0
    for result in results:
        xyxy = result.detections.xyxy
        small += int(((xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]) < 32 ** 2).sum())
    return 100 * small / max(1, len(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=SHARED / "models")
    parser.add_argument("--frames", type=int, default=100_000, help="frames of each video at most")
    args = parser.parse_args()
    console = Console(width=160)
    defaults = PipelineConfig().motion
    detectors = {}
    for label, upscale in ((f"enlarged at most {defaults_upscale():g}x (default)", defaults_upscale()),
                           ("enlarged to fill the input (before)", None)):
        config = YoloxConfig(providers=["cpu"], threads=1, max_upscale=upscale)
        detector = load_detector(config, args.models_dir)
        assert isinstance(detector, YoloxDetector)
        detectors[label] = detector
    coco = coco_recall(detectors, defaults.crop_margin, defaults.crop_max_fraction)
    console.print(coco)
    save_table("motion_crops_coco", coco)
    videos = video_rows(args.models_dir, args.frames)
    console.print(videos)
    save_table("motion_crops_videos", videos)


if __name__ == "__main__":
    main()
