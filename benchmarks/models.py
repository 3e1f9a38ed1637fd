"""Per-stage latency of Florence-2-base `<OD>` and SAM 2.1 hiera-tiny at their real sizes (random weights).

    .venv/bin/python benchmarks/models.py [--repeats 5] [--device auto|cpu|cuda] [--tokens 20]

Random weights have the published architectures, so the time per stage is what the real checkpoints cost;
Florence-2 is made to write exactly `--tokens` tokens (a real `<OD>` answer is about 5 tokens per object).
Stages run through the same classes the pipelines use (Florence2Detector, VideoSegmenter) on a 1280x720 frame.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import supervision as sv
import torch
from results import save_table
from rich.console import Console
from rich.table import Table
from timing import timed

from streamvis.config import Florence2Config, Sam2Config
from streamvis.detection.florence2 import Florence2Detector, Florence2Model
from streamvis.segmentation.processing import preprocess_square
from streamvis.segmentation.video import VideoSegmenterModel
from streamvis.testing.models import build_florence2, build_sam2_video


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def frame_720p(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((720, 1280, 3), 90, np.uint8)
    for _ in range(12):
        x, y = int(rng.integers(0, 1100)), int(rng.integers(0, 560))
        image[y:y + 150, x:x + 170] = rng.integers(0, 255, 3)
    return image


def boxes(count: int) -> sv.Detections:
    xyxy = np.array([[40 + 150 * (i % 8), 60 + 300 * (i // 8), 170 + 150 * (i % 8), 300 + 300 * (i // 8)]
                     for i in range(count)], np.float32)
    return sv.Detections(xyxy=xyxy, confidence=np.ones(count, np.float32), class_id=np.zeros(count, int),
                         data={"class_name": np.array(["object"] * count)})


def florence_rows(folder: Path, args: argparse.Namespace, image: np.ndarray,
                  rows: list[tuple[str, list[float]]]) -> tuple[str, Callable[[], None]]:
    florence = Florence2Model(Florence2Config(model=str(folder), device=args.device, dtype=args.dtype))
    detector = Florence2Detector(florence, Florence2Config(model=str(folder), max_new_tokens=args.tokens))
    florence.model.generation_config.min_new_tokens = args.tokens
    device = florence.device

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    rgb = image[:, :, ::-1].copy()
    inputs = detector.processor(text=[detector.text], images=[rgb], return_tensors="pt")
    pixel_values = inputs["pixel_values"].to(device, florence.dtype)
    rows.append(("Florence-2-base preprocess (processor, 768x768)",
                 timed(lambda: detector.processor(text=[detector.text], images=[rgb], return_tensors="pt"),
                       args.repeats, sync)))
    rows.append(("Florence-2-base vision encoder",
                 timed(lambda: florence.model.get_image_features(pixel_values), args.repeats, sync)))
    rows.append((f"Florence-2-base <OD> generate, {args.tokens} tokens",
                 timed(lambda: detector.generate_text([image]), args.repeats, sync)))
    batch = 4
    samples = timed(lambda: detector.generate_text([image] * batch), max(2, args.repeats // 2), sync)
    rows.append((f"Florence-2-base <OD> generate, batch of {batch}, per frame", [s / batch for s in samples]))
    name = detector.provider + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else "")
    return name, sync


def sam2_rows(folder: Path, args: argparse.Namespace, image: np.ndarray, rows: list[tuple[str, list[float]]],
              sync: Callable[[], None]) -> None:
    model = VideoSegmenterModel(Sam2Config(model=str(folder), device=args.device, dtype=args.dtype))
    pixels = torch.from_numpy(preprocess_square(image, model.image_size))[None]
    pixels = pixels.to(model.device, model.dtype)
    rows.append(("SAM 2.1-tiny preprocess (720p -> 1024x1024)",
                 timed(lambda: preprocess_square(image, model.image_size), args.repeats, sync)))
    rows.append(("SAM 2.1-tiny image encoder (1024x1024)",
                 timed(lambda: model.model.get_image_features(pixels), args.repeats, sync)))
    for count in (1, 8):

        def keyframe(n: int = count) -> None:
            model.new_stream().update(image, boxes(n))

        rows.append((f"SAM 2.1-tiny keyframe: encode + {count} box prompt(s) -> masks",
                     timed(keyframe, args.repeats, sync)))
        segmenter = model.new_stream()
        segmenter.update(image, boxes(count))
        for _ in range(8):  # fill the memory window so each step reads a full memory
            segmenter.update(image, None)
        rows.append((f"SAM 2.1-tiny propagation step, {count} object(s) (whole frame)",
                     timed(functools.partial(segmenter.update, image, None), args.repeats, sync)))
        rows.append((f"  of which mask post-processing to 720p, {count} object(s)",
                     [segmenter.last_timings_ms["segment_post"]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    parser.add_argument("--tokens", type=int, default=20, help="tokens Florence-2 generates per call")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    rows: list[tuple[str, list[float]]] = []
    image = frame_720p()
    with tempfile.TemporaryDirectory() as tmp:
        name, sync = florence_rows(build_florence2(Path(tmp) / "florence2-base", preset="real"), args, image, rows)
        sam2_rows(build_sam2_video(Path(tmp) / "sam2.1-hiera-tiny", preset="real"), args, image, rows, sync)
    machine = platform.processor() or platform.machine()
    table = Table(title=f"streamvis model stages, random weights at real sizes, {name}, {os.cpu_count()} CPUs, "
                        f"{machine}, torch {torch.__version__}")
    for column in ("stage", "p50 ms", "p95 ms", "runs"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, samples in rows:
        p50, p95 = percentiles(samples)
        table.add_row(stage, f"{p50:.1f}", f"{p95:.1f}", str(len(samples)))
    Console(width=160).print(table)
    save_table("models", table)


if __name__ == "__main__":
    main()
