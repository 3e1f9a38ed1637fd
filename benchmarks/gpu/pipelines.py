"""Whole pipelines on the GPU: `process` of a 1080p30 clip with the `segment` pipeline, and density: N live 1080p30
streams, each with SAM 2.1-tiny masks on every frame and Florence-2-base keyframes, with cross-stream batching on
and off (per-stream fps, p95 latency from a frame's arrival to its annotated result, GPU memory).

Florence-2 runs at full cost, but its random weights answer nothing useful, so its answer is replaced by four
fixed boxes: SAM 2 then tracks four objects in every stream, as it would four people. Frames are rendered once and
paced at 30 fps like a camera; what is measured is the pipeline (keyframe detection, SAM 2 propagation,
annotation burnt in), not decoding or encoding.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
import torch
from latency import Context, boxes, frame
from report import Report, p50_p95

from streamvis.batching import BatcherStats
from streamvis.config import Florence2Config, PipelineConfig, Sam2Config, load_pipeline
from streamvis.detection.batched import BatchedDetector
from streamvis.detection.florence2 import Florence2Detector, Florence2Model
from streamvis.frame import Frame, Result
from streamvis.live.runner import LiveStream
from streamvis.offline.process import process_input
from streamvis.pipeline.loading import Models
from streamvis.segmentation.video import VideoSegmenterModel
from streamvis.sources.base import Source
from streamvis.testing.models import build_florence2, build_sam2_video


class FixedBoxes:
    """Florence-2 at full cost, answering four fixed boxes (its random weights find nothing)."""

    open_vocabulary = True

    def __init__(self, florence: Florence2Detector, width: int, height: int) -> None:
        self.inner = florence
        self.name = florence.name
        self.boxes = boxes(4, width, height)
        self.last_timings_ms: dict[str, float] = {}

    @property
    def provider(self) -> str:
        return self.inner.provider

    @property
    def class_names(self) -> list[str]:
        return ["object"]

    def detect(self, image_bgr: np.ndarray) -> sv.Detections:
        return self.detect_batch([image_bgr])[0]

    def detect_batch(self, images_bgr: list[np.ndarray]) -> list[sv.Detections]:
        self.inner.detect_batch(images_bgr)
        self.last_timings_ms = dict(self.inner.last_timings_ms)
        return [self.boxes for _ in images_bgr]


class Rendered(Source):
    """Pre-rendered frames played over and over (the live runner paces them at `fps`)."""

    def __init__(self, images: list[np.ndarray], fps: float, name: str) -> None:
        super().__init__(f"rendered:{name}", name, live=False)
        self.images, self.fps = images, fps

    def frames(self) -> Iterator[Frame]:
        index = 0
        while not self.closed:
            yield Frame(self.images[index % len(self.images)], index, index / float(self.fps or 30), self.source_id)
            index += 1


class LatencySink:
    """Arrival (the frame's paced release) to annotated result, and results per second after a warm-up."""

    def __init__(self, warmup_s: float) -> None:
        self.after = time.monotonic() + warmup_s
        self.latencies_ms: list[float] = []
        self.results = 0
        self._lock = threading.Lock()

    def write(self, result: Result) -> None:
        now = time.monotonic()
        if now >= self.after:
            with self._lock:
                self.latencies_ms.append((now - result.frame.decoded_at) * 1e3)
                self.results += 1

    def close(self) -> None:
        pass


def _models(ctx: Context, folders: dict[str, Path], batching: bool, size_wh: tuple[int, int]) -> Models:
    dtype = "float32" if ctx.quick else "bfloat16"
    florence_config = Florence2Config(model=str(folders["florence"]), device=ctx.device, dtype=dtype,
                                      max_new_tokens=8 if ctx.quick else 50, every_n_frames=30)
    florence = Florence2Detector(Florence2Model(florence_config), florence_config)
    florence.model.model.generation_config.min_new_tokens = florence_config.max_new_tokens
    detector: Any = FixedBoxes(florence, *size_wh)
    segmenter = VideoSegmenterModel(Sam2Config(model=str(folders["sam2"]), device=ctx.device, dtype=dtype,
                                               max_objects=4))
    if batching:
        detector = BatchedDetector(detector, max_batch=8, batch_wait_ms=5)
        segmenter.batch_across_streams(max_batch=16, batch_wait_ms=3)
    return Models(detector, segmenter)


def _pipeline_config(folders: dict[str, Path]) -> PipelineConfig:
    return load_pipeline("segment", [f"detector.model={folders['florence']}", f"segmenter.model={folders['sam2']}",
                                     "segmenter.max_objects=4"])


def process_fps(report: Report, ctx: Context, folders: dict[str, Path]) -> None:
    models_note = " (tiny test models)" if ctx.quick else ""
    table = report.table("streamvis process, segment pipeline (Florence-2-base keyframes every 30 frames, SAM 2.1-"
                         f"tiny masks on every frame, H.264 out){models_note}", ["input", "frames", "seconds", "fps"])
    width, height, frames = (160, 96, 20) if ctx.quick else (1920, 1080, 150)
    models = _models(ctx, folders, batching=False, size_wh=(width, height))
    config = _pipeline_config(folders)
    uri = f"synthetic:?w={width}&h={height}&fps=30&frames={frames}&objects=4"
    with tempfile.TemporaryDirectory() as tmp:
        process_input(uri, Path(tmp) / "warm.mp4", None, config, models, show_progress=False)  # compile, caches
        report_ = process_input(uri, Path(tmp) / "out.mp4", Path(tmp) / "out.jsonl", config, models,
                                show_progress=False)
    if report_.status != "ok":
        table.notes.append(f"process reported {report_.status}: {report_.message}")
    table.add(f"synthetic {width}x{height} 30 fps", report_.frames, report_.seconds,
              report_.frames / max(report_.seconds, 1e-9))
    report.write()


def density(report: Report, ctx: Context, folders: dict[str, Path]) -> None:
    width, height, fps = (160, 96, 10) if ctx.quick else (1920, 1080, 30)
    table = report.table(f"Density: N live {width}x{height} streams at {fps} fps, SAM 2.1-tiny masks (4 objects) "
                         "every frame, Florence-2-base keyframes every 30 frames"
                         + (" (tiny test models)" if ctx.quick else ""),
                         ["streams", "cross-stream batching", "fps per stream (median / min)", "p95 latency ms",
                          "GPU memory GiB", "mean batch (encoder / detector)"])
    counts = [1, 2] if ctx.quick else [1, 4, 8, 16, 32]
    seconds, warmup = (3.0, 1.0) if ctx.quick else (8.0, 3.0)
    images = [frame(height, width, seed) for seed in range(8)]
    for batching in (False, True):
        models = _models(ctx, folders, batching, (width, height))
        config = _pipeline_config(folders)
        for count in counts:
            if not ctx.deadline.allows(seconds + 30):
                table.notes.append(f"stopped before {count} streams (batching {batching}): time budget")
                break
            if ctx.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            batchers = [getattr(models.segmenter, "encoder_batcher", None), getattr(models.detector, "batcher", None)]
            for batcher in batchers:
                if batcher is not None:
                    batcher.stats = BatcherStats()
            streams, sinks = [], []
            for k in range(count):
                stream = LiveStream(f"s{k}", lambda k=k: Rendered(images, fps, f"s{k}"), config, models)
                sink = LatencySink(warmup)
                stream.add_sink(sink)
                streams.append(stream)
                sinks.append(sink)
            for stream in streams:
                stream.start()
            time.sleep(seconds)
            for stream in streams:
                stream.stop()
            rates = [s.results / (seconds - warmup) for s in sinks]
            latencies = [ms for s in sinks for ms in s.latencies_ms]
            memory = torch.cuda.max_memory_allocated() / 2**30 if ctx.device == "cuda" else None
            mean_batch = " / ".join(f"{b.stats.mean_batch:.1f}" if b is not None else "-" for b in batchers)
            table.add(count, "on" if batching else "off", f"{np.median(rates):.1f} / {min(rates):.1f}",
                      p50_p95(latencies)[1], memory, mean_batch)
            report.write()
    table.notes.append("targets on an H100/H200: >= 16 streams with masks at p95 <= 100 ms (30 fps each)")


def run(report: Report, ctx: Context) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folders = {"florence": build_florence2(Path(tmp) / "florence2-base", preset=ctx.preset),
                   "sam2": build_sam2_video(Path(tmp) / "sam2.1-tiny", preset=ctx.preset)}
        process_fps(report, ctx, folders)
        density(report, ctx, folders)
