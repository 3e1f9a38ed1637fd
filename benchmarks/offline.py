"""Offline throughput on the shared videos, against the loop a user would write, in one run.

    .venv/bin/python benchmarks/offline.py [--models-dir ../shared/models] [--videos DIR]

Per video:
- decode-only fps;
- detector fps one frame at a time (onnxruntime's default threads), and its best throughput (`process`'s frames
  in flight, one thread each);
- the peer: the plain loop a user writes (`peer_loop`: PyAV decode, the same YOLOX-nano ONNX through onnxruntime,
  ByteTrack from `trackers`, supervision's box and label annotators, libx264 veryfast crf 23, one frame at a
  time; no streamvis code);
- `streamvis process` with the same model, tracker, annotation and encoder settings (its output also has the
  JSONL events).
CPU is process CPU time over wall time (2.0 = both of 2 cores). "x peer" is streamvis fps / peer fps; the last
column is streamvis fps / min(decode fps, best detector fps), the share of the slower stage's speed the whole
pipeline keeps.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from results import save_table
from rich.console import Console
from rich.table import Table

from streamvis import env
from streamvis.config import load_pipeline
from streamvis.offline.process import process_input
from streamvis.offline.runner import default_in_flight
from streamvis.pipeline.loading import load_models
from streamvis.sources import open_source

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def decode_fps(video: Path) -> tuple[float, int]:
    source = open_source(str(video))
    start = time.perf_counter()
    frames = sum(1 for _ in source)
    return frames / (time.perf_counter() - start), frames


def detector_fps(video: Path, detector, limit: int = 300) -> float:
    images = []
    for frame in open_source(str(video)):
        images.append(frame.image)
        if len(images) == limit:
            break
    detector.detect(images[0])  # warm-up
    start = time.perf_counter()
    for image in images:
        detector.detect(image)
    return len(images) / (time.perf_counter() - start)


# -- the peer: the loop a user writes in ten minutes (supervision + trackers + PyAV + onnxruntime; no streamvis) --
def peer_loop(video: Path, model_dir: Path, out_path: Path) -> tuple[int, float]:
    """One frame at a time: decode, YOLOX-nano (letterbox, onnxruntime, grid decode, NMS), ByteTrack, box and label
    annotators, libx264 veryfast crf 23. Returns (frames, seconds)."""
    import av
    import cv2
    import numpy as np
    import onnxruntime as ort
    import supervision as sv
    import trackers

    session = ort.InferenceSession(str(model_dir / "yolox_nano.onnx"), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    ih, iw = session.get_inputs()[0].shape[2:]
    names = [n.strip() for n in (model_dir / "coco_classes.txt").read_text().splitlines() if n.strip()]
    grids, strides = [], []
    for stride in (8, 16, 32):
        ys, xs = np.meshgrid(np.arange(ih // stride), np.arange(iw // stride), indexing="ij")
        grids.append(np.stack((xs, ys), 2).reshape(-1, 2))
        strides.append(np.full((grids[-1].shape[0], 1), stride))
    grid, stride_col = np.concatenate(grids), np.concatenate(strides)
    tracker = trackers.ByteTrackTracker()
    boxes_annotator, labels_annotator = sv.BoxAnnotator(), sv.LabelAnnotator()
    frames = 0
    start = time.perf_counter()
    with av.open(str(video)) as source, av.open(str(out_path), "w") as sink:
        decoded = source.streams.video[0]
        decoded.thread_type = "AUTO"
        encoded = sink.add_stream("libx264", rate=decoded.average_rate)
        encoded.width, encoded.height, encoded.pix_fmt = decoded.width, decoded.height, "yuv420p"
        encoded.options = {"crf": "23", "preset": "veryfast"}
        for frame in source.decode(decoded):
            image = frame.to_ndarray(format="bgr24")
            h, w = image.shape[:2]
            ratio = min(ih / h, iw / w)
            canvas = np.full((ih, iw, 3), 114, np.uint8)
            canvas[:int(h * ratio), :int(w * ratio)] = cv2.resize(image, (int(w * ratio), int(h * ratio)))
            blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
            out = session.run(None, {input_name: blob})[0][0]
            scores_all = out[:, 5:] * out[:, 4:5]
            class_id = scores_all.argmax(1)
            score = scores_all[np.arange(len(class_id)), class_id]
            keep = score > 0.35
            xy = (out[keep, :2] + grid[keep]) * stride_col[keep]
            wh = np.exp(out[keep, 2:4]) * stride_col[keep]
            xyxy = np.concatenate([xy - wh / 2, xy + wh / 2], 1) / ratio
            detections = sv.Detections(xyxy=xyxy, confidence=score[keep], class_id=class_id[keep])
            detections = detections.with_nms(threshold=0.45, class_agnostic=False)
            detections = tracker.update(detections)
            labels = [f"#{t} {names[c]}" for t, c in zip(detections.tracker_id, detections.class_id, strict=True)]
            annotated = boxes_annotator.annotate(image.copy(), detections)
            annotated = labels_annotator.annotate(annotated, detections, labels)
            for packet in encoded.encode(av.VideoFrame.from_ndarray(annotated, format="bgr24")):
                sink.mux(packet)
            frames += 1
        for packet in encoded.encode(None):
            sink.mux(packet)
    return frames, time.perf_counter() - start


def detector_best_fps(video: Path, detector, limit: int = 300) -> float:
    """The detector's throughput with `process`'s frames in flight (one thread each): what the pipeline may
    reach at most."""
    from concurrent.futures import ThreadPoolExecutor

    images = [frame.image for _, frame in zip(range(limit), open_source(str(video)), strict=False)]
    detector.detect(images[0])
    with ThreadPoolExecutor(default_in_flight()) as pool:
        start = time.perf_counter()
        list(pool.map(detector.detect, images))
        return len(images) / (time.perf_counter() - start)


def timed(run: Callable[[], T]) -> tuple[T, float, float]:
    """(result, wall seconds, CPU seconds of this process, all threads)."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = run()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", type=Path, default=Path(env.models_dir() or ROOT.parent / "shared/models"))
    parser.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "media" / "videos")
    parser.add_argument("--pipeline", default="detect")
    args = parser.parse_args()
    config = load_pipeline(args.pipeline)
    one_at_a_time = load_models(config, args.models_dir).detector  # onnxruntime's default threads, as live
    models = load_models(config, args.models_dir, detector_threads=1)  # as `process` loads them
    detector = models.detector
    cores = os.cpu_count() or 1
    table = Table(title=f"offline: pipeline '{config.name}', {detector.name} on {detector.provider}, {cores} CPUs, "
                        f"{platform.processor() or platform.machine()}; CPU = cores busy on average")
    for column in ("video", "frames", "decode fps", "detector fps (1 / best)", "peer fps", "peer CPU",
                   "streamvis fps", "streamvis CPU", "x peer", "/ min(decode, best det)"):
        table.add_column(column, justify="right" if column != "video" else "left")
    with tempfile.TemporaryDirectory() as tmp:
        for video in sorted(args.videos.glob("*.mp4")):
            dec, frames = decode_fps(video)
            det, best = detector_fps(video, one_at_a_time), detector_best_fps(video, detector)
            (peer_frames, _), peer_s, peer_cpu = timed(lambda v=video: peer_loop(
                v, args.models_dir / "yolox-nano", Path(tmp) / f"peer-{v.stem}.mp4"))
            report, ours_s, ours_cpu = timed(lambda v=video: process_input(
                str(v), Path(tmp) / f"{v.stem}.mp4", Path(tmp) / f"{v.stem}.jsonl", config, models,
                show_progress=False))
            if report.status != "ok":
                raise SystemExit(f"{video.name}: {report.status}: {report.message}")
            peer, ours = peer_frames / peer_s, report.frames / ours_s
            table.add_row(video.name, str(frames), f"{dec:.0f}", f"{det:.0f} / {best:.0f}", f"{peer:.1f}",
                          f"{peer_cpu / peer_s:.2f}", f"{ours:.1f}", f"{ours_cpu / ours_s:.2f}", f"{ours / peer:.2f}",
                          f"{ours / min(dec, best):.2f}")
    Console(width=160).print(table)
    save_table("offline", table)


if __name__ == "__main__":
    main()
