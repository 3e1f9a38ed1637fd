"""A folder of videos to annotated MP4s and per-frame JSONL, then a summary of what was seen in each: the library
calls `streamvis process` makes.

    python examples/videos_to_mp4_jsonl.py videos/ out/ [--models-dir ../shared/models]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from streamvis.config import load_pipeline
from streamvis.offline.process import process_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", help="a folder of videos (or one video)")
    parser.add_argument("out", type=Path, help="a folder for the MP4s and JSONL files")
    parser.add_argument("--models-dir", default=None)
    args = parser.parse_args()
    reports = process_all([args.videos], args.out, args.out, load_pipeline("detect"), args.models_dir,
                          show_progress=False)
    for report in reports:
        if report.status != "ok" or report.events is None:
            print(f"{report.input}: {report.status} {report.message}")
            continue
        tracks: dict[str, set[int]] = {}
        for line in report.events.read_text().splitlines():
            for detection in json.loads(line)["detections"]:
                if detection["track_id"] is not None:
                    tracks.setdefault(detection["class_name"], set()).add(detection["track_id"])
        seen = Counter({name: len(ids) for name, ids in tracks.items()})
        summary = ", ".join(f"{n} {name}" for name, n in seen.most_common()) or "nothing tracked"
        print(f"{report.input}: {report.frames} frames at {report.fps:.1f} fps -> {report.output}; {summary}")


if __name__ == "__main__":
    main()
