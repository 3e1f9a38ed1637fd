"""Resident memory of streaming SAM 2 segmentation over a long stream: pruned (as shipped) against unpruned.

    .venv/bin/python benchmarks/session_memory.py [--minutes 10] [--fps 10] [--preset tiny|real] [--device cpu]

A synthetic stream (moving shapes, one entering later) feeds a VideoSegmenter frame by frame, with keyframe
detections from the source's ground truth every `--every` frames. Each simulated minute the process's resident
memory and the session's tensor bytes are sampled. The unpruned session (transformers' default behaviour) runs
for `--unpruned-minutes` for comparison. The tiny preset keeps a 10-minute stream to minutes of CPU time; the
real preset (SAM 2.1 hiera-tiny at 1024) needs a GPU for that.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

from results import save_table
from rich.console import Console
from rich.table import Table

from streamvis.config import Sam2Config
from streamvis.segmentation.video import VideoSegmenter, VideoSegmenterModel
from streamvis.sources import open_source
from streamvis.testing.models import build_sam2_video


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(segmenter: VideoSegmenter, minutes: float, fps: int, every: int, label: str, table: Table,
        sample_s: float = 60.0) -> list[tuple[float, float]]:
    """Returns (RSS MB, session MB) every `sample_s` seconds of stream."""
    frames = int(minutes * 60 * fps)
    source = open_source(f"synthetic:?w=640&h=360&fps={fps}&frames={frames}&objects=4&enter={fps * 30}&seed=1")
    per_sample = max(1, int(sample_s * fps))
    start = time.perf_counter()
    samples = []
    for frame in source.frames():
        gt = source.boxes_at(frame.index) if frame.index % every == 0 else None
        segmenter.update(frame.image, gt)
        if (frame.index + 1) % per_sample == 0 or frame.index + 1 == frames:
            samples.append((rss_mb(), segmenter.session_bytes / 2**20))
            table.add_row(label, f"{(frame.index + 1) / (60 * fps):.2f}", str(frame.index + 1),
                          f"{samples[-1][0]:.0f}", f"{samples[-1][1]:.1f}", str(len(segmenter.objects)),
                          f"{(frame.index + 1) / (time.perf_counter() - start):.1f}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--unpruned-minutes", type=float, default=1.0)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--every", type=int, default=5, help="keyframe interval in frames")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "real"])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    table = Table(title=f"streaming SAM 2 session memory, {args.preset} model, {args.fps} fps stream, keyframe every "
                        f"{args.every} frames")
    for column in ("session", "minute", "frames", "RSS MB", "session MB", "objects", "fps"):
        table.add_column(column, justify="left" if column == "session" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_sam2_video(Path(tmp) / "sam2", preset=args.preset)
        model = VideoSegmenterModel(Sam2Config(model=str(folder), device=args.device))
        pruned = run(model.new_stream(), args.minutes, args.fps, args.every, "pruned", table)
        with mock.patch("streamvis.segmentation.video.prune_session", lambda *a, **k: None):
            unpruned = run(model.new_stream(), args.unpruned_minutes, args.fps, args.every, "unpruned", table,
                           sample_s=15.0)
    console = Console(width=140)
    console.print(table)
    save_table("session_memory", table)
    console.print(f"pruned: RSS last / first sample = {pruned[-1][0] / pruned[0][0]:.3f} "
                  f"({pruned[-1][0] - pruned[0][0]:+.0f} MB over {args.minutes:g} min), session "
                  f"{pruned[0][1]:.1f} -> {pruned[-1][1]:.1f} MB; unpruned session {unpruned[0][1]:.1f} -> "
                  f"{unpruned[-1][1]:.1f} MB in {args.unpruned_minutes:g} min, "
                  f"RSS {unpruned[-1][0] - unpruned[0][0]:+.0f} MB")


if __name__ == "__main__":
    main()
