"""`process --ray` against a local `process` of the same inputs, in one run: how many frames get the same boxes,
how many detections the same track id, and how many people are tracked at all.

    .venv/bin/python benchmarks/ray_vs_local.py [--models-dir ../shared/models] [--frames 300] [--chunk-s 5]

The inputs are the shared person video's first `--frames` frames cut (keyframe every 10 frames, so that chunks cut
them) three ways: H.264 in MP4, H.264 with B-frames in AVI (presentation timestamps out of order) and a variable
frame rate MKV (a 3-frame gap every 25 frames). Both runs use the default detect pipeline (YOLOX-nano, ByteTrack).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from results import save_table
from rich.console import Console
from rich.table import Table

from streamvis.config import load_pipeline
from streamvis.offline.on_ray import RaySettings, process_on_ray
from streamvis.offline.process import process_all

ROOT = Path(__file__).resolve().parent.parent
PERSON = ROOT.parent / "shared" / "media" / "videos" / "intel_one-by-one-person-detection.mp4"


def cut(source: Path, path: Path, frames: int, options: dict[str, str], gaps: bool = False) -> Path:
    with av.open(str(source)) as src, av.open(str(path), "w") as dst:
        stream = src.streams.video[0]
        out = dst.add_stream("libx264", rate=stream.average_rate)
        out.width, out.height, out.pix_fmt = stream.width, stream.height, "yuv420p"
        out.options = {"preset": "ultrafast", "crf": "18", "g": "10", **options}
        period = Fraction(1, 1) / stream.average_rate
        if gaps:
            out.codec_context.time_base = period
        for i, frame in enumerate(src.decode(stream)):
            if i >= frames:
                break
            image = av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), format="bgr24")
            if gaps:
                image.pts, image.time_base = i + 3 * (i // 25), period
            for packet in out.encode(image):
                dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)
    return path


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def compare(local: Path, distributed: Path) -> dict[str, float]:
    want, got = _records(local), _records(distributed)
    frames = min(len(want), len(got))
    same_boxes = same_ids = detections = 0
    tracked = {"local": 0, "ray": 0}
    people = {"local": 0, "ray": 0}
    for a, b in zip(want, got, strict=False):
        boxes_a = [(d["xyxy"], d["class_id"]) for d in a["detections"]]
        boxes_b = [(d["xyxy"], d["class_id"]) for d in b["detections"]]
        same = boxes_a == boxes_b and a["pts"] == b["pts"]
        same_boxes += same
        for run, record in (("local", a), ("ray", b)):
            for d in record["detections"]:
                if d["class_name"] == "person":
                    people[run] += 1
                    tracked[run] += d["track_id"] is not None
        detections += len(a["detections"])
        if same:
            same_ids += sum(da["track_id"] == db["track_id"] for da, db in zip(a["detections"], b["detections"],
                                                                               strict=True))
    return {"frames": len(want), "ray frames": len(got), "same boxes": same_boxes / max(1, frames),
            "same ids": same_ids / max(1, detections), "tracked local": tracked["local"] / max(1, people["local"]),
            "tracked ray": tracked["ray"] / max(1, people["ray"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=str(ROOT.parent / "shared" / "models"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--chunk-s", type=float, default=5.0)
    args = parser.parse_args()
    if not PERSON.is_file():
        sys.exit(f"needs {PERSON}")
    config = load_pipeline("detect")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        cut(PERSON, folder / "mp4.mp4", args.frames, {})
        cut(PERSON, folder / "avi.avi", args.frames, {"bf": "3", "b-adapt": "0"})
        cut(PERSON, folder / "vfr.mkv", args.frames, {}, gaps=True)
        local, distributed = Path(tmp) / "local", Path(tmp) / "ray"
        process_all([str(folder)], local, local, config, args.models_dir, show_progress=False)
        process_on_ray([str(folder)], distributed, distributed, config,
                       RaySettings(chunk_s=args.chunk_s, overlap_s=2.0), args.models_dir, show_progress=False)
        table = Table(title=f"process --ray against process, one run ({platform.machine()}, "
                            f"chunks of {args.chunk_s:g} s)")
        for column in ("input", "frames", "ray frames", "same boxes and pts", "same track id", "people tracked (local)",
                       "people tracked (ray)"):
            table.add_column(column, justify="right")
        for name in ("mp4", "avi", "vfr"):
            row = compare(local / f"{name}.jsonl", distributed / f"{name}.jsonl")
            table.add_row(name, str(row["frames"]), str(row["ray frames"]), f"{row['same boxes']:.1%}",
                          f"{row['same ids']:.1%}", f"{row['tracked local']:.1%}", f"{row['tracked ray']:.1%}")
    Console().print(table)
    save_table("ray_vs_local", table)


if __name__ == "__main__":
    main()
