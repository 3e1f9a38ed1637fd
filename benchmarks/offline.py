"""Offline throughput on the shared videos: decode-only, detector-only and full `process` fps, in one run.

    .venv/bin/python benchmarks/offline.py [--models-dir ../shared/models] [--videos DIR]

The ratio full / min(decode, detector) says how much of the slower stage's speed the whole pipeline
keeps (decode, inference and encode overlap in threads; 1.0 would mean encode and annotation are free).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from streamvis import env
from streamvis.batch import process_input
from streamvis.config import load_pipeline
from streamvis.models import load_models
from streamvis.sources import open_source

ROOT = Path(__file__).resolve().parent.parent


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", default=env.models_dir() or ROOT.parent / "shared/models")
    parser.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "media" / "videos")
    parser.add_argument("--pipeline", default="detect")
    args = parser.parse_args()
    config = load_pipeline(args.pipeline)
    models = load_models(config, args.models_dir)
    detector = models.detector
    table = Table(title=f"streamvis offline, pipeline '{config.name}', {detector.name} on {detector.provider}, "
                        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    for column in ("video", "frames", "decode fps", "detector fps", "process fps", "full / min(decode, det)"):
        table.add_column(column, justify="right" if column != "video" else "left")
    with tempfile.TemporaryDirectory() as tmp:
        for video in sorted(args.videos.glob("*.mp4")):
            dec, frames = decode_fps(video)
            det = detector_fps(video, detector)
            report = process_input(str(video), Path(tmp) / f"{video.stem}.mp4", Path(tmp) / f"{video.stem}.jsonl",
                                   config, models, show_progress=False)
            if report.status != "ok":
                raise SystemExit(f"{video.name}: {report.status}: {report.message}")
            full = report.fps
            table.add_row(video.name, str(frames), f"{dec:.0f}", f"{det:.0f}", f"{full:.1f}",
                          f"{full / min(dec, det):.2f}")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
