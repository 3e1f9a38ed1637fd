"""The offline pipeline locally and on Ray Data (1 and 2 workers), on the same inputs, in one run.

    .venv/bin/python benchmarks/ray_scale.py [--videos DIR] [--chunk-s 20] [--models-dir ../shared/models]

Rows: `process` as usual (frames in flight on every core), then `process --ray` on a local Ray cluster started
once by this script (its start-up is reported on its own) with 1 and 2 detector actors of 1 CPU. Frames per
second are all frames over wall time; "overhead" is the Ray run's wall time over the local run's. The chunks'
detections are checked against the local run's in the same run (they must be equal frame by frame).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from results import save_table
from rich.console import Console
from rich.table import Table

from streamvis import env
from streamvis.config import load_pipeline
from streamvis.offline.on_ray import RaySettings, process_on_ray, start_ray
from streamvis.offline.process import process_all

ROOT = Path(__file__).resolve().parent.parent


def detections(folder: Path) -> dict[str, list[list[tuple]]]:
    return {path.stem: [[(d["xyxy"], d["class_id"], d["score"]) for d in json.loads(line)["detections"]]
                        for line in path.read_text().splitlines()] for path in sorted(folder.glob("*.jsonl"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "media" / "videos")
    parser.add_argument("--chunk-s", type=float, default=20.0)
    parser.add_argument("--models-dir", type=Path, default=Path(env.models_dir() or ROOT.parent / "shared/models"))
    args = parser.parse_args()
    config = load_pipeline("detect")
    table = Table(title=f"process: local vs Ray Data, {os.cpu_count()} CPUs, videos in {args.videos}, "
                        f"chunks of {args.chunk_s:g} s")
    for column in ("run", "frames", "wall s", "fps", "overhead vs local", "detections = local"):
        table.add_column(column, justify="left" if column == "run" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "local"
        start = time.perf_counter()
        reports = process_all([str(args.videos)], local, local, config, args.models_dir, show_progress=False)
        local_s = time.perf_counter() - start
        frames = sum(r.frames for r in reports)
        table.add_row("local (frames in flight)", str(frames), f"{local_s:.1f}", f"{frames / local_s:.1f}", "1.00", "")
        start = time.perf_counter()
        start_ray(RaySettings())
        table.add_row("Ray local cluster start", "", f"{time.perf_counter() - start:.1f}", "", "", "")
        want = detections(local)
        for workers in (1, 2):
            out = Path(tmp) / f"ray{workers}"
            start = time.perf_counter()
            ray_reports = process_on_ray([str(args.videos)], out, out, config,
                                         RaySettings(workers=workers, chunk_s=args.chunk_s), args.models_dir,
                                         show_progress=False)
            wall = time.perf_counter() - start
            assert all(r.status == "ok" for r in ray_reports), [r.message for r in ray_reports]
            same = detections(out) == want
            table.add_row(f"Ray, {workers} worker{'s' if workers > 1 else ''}", str(sum(r.frames for r in ray_reports)),
                          f"{wall:.1f}", f"{frames / wall:.1f}", f"{wall / local_s:.2f}", "yes" if same else "NO")
    Console(width=140).print(table)
    save_table("ray_scale", table)


if __name__ == "__main__":
    main()
