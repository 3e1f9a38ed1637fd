"""YOLOX's input fitted to the frame (`detector.fit_input`, the CPU default) against the model's square input, in
one run, with the real YOLOX-nano:

    .venv/bin/python benchmarks/yolox_input.py [--models-dir ../shared/models] [--frames N]

1. **COCO ground truth** (`../shared/media/coco128`, 128 real photos and their labels): mAP@0.5:0.95 (confidence
   0.001, NMS IoU 0.65, as COCO evaluation does) and the mean milliseconds of a detector run, one onnxruntime
   thread, square against fitted.
2. **The shared videos** (768x432 and 640x360 cameras) through the offline detect pipeline, every keyframe
   detected (no gating), square against fitted: the input size, milliseconds a run (one thread, on 60 of the
   video's frames), detections a frame (all, and those of confidence 0.5 or more), and the tracks the square
   run follows for 1 s that the fitted run finds (missed; found more than one keyframe late), and the other way
   round.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import cv2
import numpy as np
from results import save_table
from rich.console import Console
from rich.table import Table

from streamvis import env
from streamvis.config import PipelineConfig, YoloxConfig
from streamvis.detection import load_detector
from streamvis.detection.yolox import YoloxDetector
from streamvis.frame import Result
from streamvis.pipeline.loading import load_models
from streamvis.pipeline.step import Pipeline
from streamvis.sources import open_source
from streamvis.testing.coco import coco_map
from streamvis.testing.tracks import followed_tracks, found_in

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
VIDEOS = ("intel_one-by-one-person-detection.mp4", "intel_car-detection.mp4", "intel_bottle-detection.mp4")
RUNS = {"square (before)": False, "fitted (default)": "auto"}
SURE = 0.5


def detector(models_dir: Path, fit: bool | str, threads: int | None = 1, **extra: float) -> YoloxDetector:
    loaded = load_detector(YoloxConfig(providers=["cpu"], fit_input=fit, threads=threads or 0, **extra), models_dir)
    assert isinstance(loaded, YoloxDetector)
    return loaded


def run_ms(model: YoloxDetector, images: list[np.ndarray]) -> float:
    model.detect(images[0])
    start = time.perf_counter()
    for image in images:
        model.detect(image)
    return (time.perf_counter() - start) / len(images) * 1e3


def coco_rows(models_dir: Path, coco128: Path) -> Table:
    images = [cv2.imread(str(p)) for p in sorted((coco128 / "images" / "train2017").glob("*.jpg"))]
    table = Table(title=f"YOLOX-nano on coco128 ({len(images)} photos, most 640x480): the square 416x416 input "
                        "against the input fitted to each photo")
    for column in ("input", "mAP@0.5:0.95", "vs square", "ms a run (1 thread)", "time vs square"):
        table.add_column(column, justify="left" if column == "input" else "right")
    measured = {label: (coco_map(coco128, detector(models_dir, fit, confidence=0.001, nms_iou=0.65)),
                        run_ms(detector(models_dir, fit), images)) for label, fit in RUNS.items()}
    base_map, base_ms = measured["square (before)"]
    for label, (score, ms) in measured.items():
        table.add_row(label, f"{score:.4f}", f"{score - base_map:+.4f}", f"{ms:.1f}", f"{ms / base_ms:.2f}")
    return table


def video_frames(video: Path, count: int) -> list[np.ndarray]:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        every = max(1, (stream.frames or 300) // count)
        frames = [f.to_ndarray(format="bgr24") for i, f in enumerate(container.decode(stream)) if i % every == 0]
    return frames[:count]


def run_video(video: Path, models_dir: Path, fit: bool | str, frames: int) -> tuple[list[Result], float]:
    config = PipelineConfig.model_validate({"motion": {"enabled": False}, "detector": {"fit_input": fit}})
    source = open_source(str(video))
    pipeline = Pipeline(config, load_models(config, models_dir), source.fps, annotate=False)
    results = [pipeline.process(frame) for frame, _ in zip(source, range(frames), strict=False)]
    source.close()
    return results, source.fps or 30.0


def video_rows(models_dir: Path, frames: int) -> Table:
    table = Table(title="The shared videos through the offline detect pipeline (YOLOX-nano, ByteTrack, every "
                        "keyframe detected): square input against fitted; tracks = followed for 1 s by the other run")
    for column in ("video", "input", "input w x h", "ms a run (1 thread)", "time vs square", "detections a frame",
                   "of them sure (>= 0.5)", "tracks followed", "the other run's tracks missed", "found late"):
        table.add_column(column, justify="left" if column in ("video", "input") else "right")
    for name in VIDEOS:
        video = SHARED / "media" / "videos" / name
        sample = video_frames(video, 60)
        runs = {label: run_video(video, models_dir, fit, frames) for label, fit in RUNS.items()}
        fps = next(iter(runs.values()))[1]
        followed = {label: followed_tracks(results, fps) for label, (results, _) in runs.items()}
        base_ms = 0.0
        for label, fit in RUNS.items():
            model = detector(models_dir, fit)
            ms = run_ms(model, sample)
            base_ms = base_ms or ms
            other_label = next(other for other in RUNS if other != label)
            found = found_in(followed[other_label], runs[label][0])
            missed = sum(f.first_found is None for f in found)
            late = sum(f.delay_frames is not None and f.delay_frames > 1 for f in found)
            results = runs[label][0]
            per_frame = sum(len(r.detections) for r in results) / max(1, len(results))
            sure = sum(int((r.detections.confidence >= SURE).sum()) for r in results
                       if r.detections.confidence is not None) / max(1, len(results))
            table.add_row(name.removeprefix("intel_").removesuffix(".mp4"), label,
                          "x".join(map(str, model.last_input_hw[::-1])), f"{ms:.1f}", f"{ms / base_ms:.2f}",
                          f"{per_frame:.2f}", f"{sure:.2f}", str(len(followed[label])),
                          f"{missed} of {len(followed[other_label])}", str(late))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path(env.models_dir() or SHARED / "models"))
    parser.add_argument("--coco128", type=Path, default=SHARED / "media" / "coco128")
    parser.add_argument("--frames", type=int, default=100_000, help="frames of each video at most")
    args = parser.parse_args()
    console = Console(width=170)
    coco = coco_rows(args.models_dir, args.coco128)
    console.print(coco)
    save_table("yolox_input_coco", coco)
    videos = video_rows(args.models_dir, args.frames)
    console.print(videos)
    save_table("yolox_input_videos", videos)


if __name__ == "__main__":
    main()
