"""A folder of videos on a Ray cluster (a local one unless --address is given): the same outputs as a local run,
detection spread over the cluster's workers in chunks cut at keyframes. Needs streamvis[ray].

    python examples/ray_folder.py videos/ out/ [--address auto] [--chunk-s 60] [--models-dir ../shared/models]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamvis.config import load_pipeline
from streamvis.offline.on_ray import RaySettings, process_on_ray


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos")
    parser.add_argument("out", type=Path)
    parser.add_argument("--address", default=None, help="a Ray cluster to join (default: start a local one)")
    parser.add_argument("--chunk-s", type=float, default=60.0)
    parser.add_argument("--models-dir", default=None)
    args = parser.parse_args()
    settings = RaySettings(address=args.address, chunk_s=args.chunk_s)
    for report in process_on_ray([args.videos], args.out, args.out, load_pipeline("detect"), settings,
                                 args.models_dir, show_progress=False):
        print(f"{report.input}: {report.status} {report.frames} frames -> {report.output} {report.message}".strip())


if __name__ == "__main__":
    main()
