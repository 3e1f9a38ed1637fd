"""Tracking against public ground truth: streamvis's tracking path beside the loop a user writes with `trackers`,
every tracker, the same detections, in one run.

    .venv/bin/python benchmarks/tracking.py [SEQUENCE_FOLDER ...]

A sequence folder is MOTChallenge's layout: `seqinfo.ini` (frame rate, size), `det/det.txt` (the detections both
sides are given: MOTChallenge's public detections, or any detector's in that format) and `gt/gt.txt`. The default
is `tests/data/mot`: MOT15's TUD-Campus (71 frames) and TUD-Stadtmitte (179 frames), 640x480 at 25 fps, with the
detections SORT's repository ships for them (github.com/abewley/sort) and MOT15's ground truth as py-motmetrics
ships it for its tests (github.com/cheind/py-motmetrics, via its mirror in github.com/vranlee/SU-T), its columns
written as MOT16's (class 1, visible) so that `trackers.eval` scores the pedestrians.

For each tracker of `trackers` 2.6 (ByteTrack, SORT, OC-SORT, BoT-SORT: no frames here, so without its camera-
motion compensation):
- the user's loop: `tracker = XTracker()` at the library's defaults, `tracker.update(detections)` per frame;
- streamvis: the detect pipeline's own step (`Pipeline.apply`: the class filter, `tracker.*` settings in seconds
  and the tracker, the track-class votes), with `--set tracker.type=...`, frames timed by the sequence's rate.
Both are scored by `trackers.eval` (HOTA, MOTA, IDF1, ID switches; IoU 0.5), and the difference is printed.
Given the same detections, this isolates the tracking layer: a loss that shows with a real detector but not here
is the detector's side (its confidence cut, what it feeds the tracker), not the tracker's.
"""

from __future__ import annotations

import argparse
import configparser
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from results import save_table
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
SEQUENCES = ROOT / "tests" / "data" / "mot"
TRACKERS = ("bytetrack", "sort", "ocsort", "botsort")
Update = Callable[[sv.Detections, int], sv.Detections]


@dataclass(frozen=True, slots=True)
class Sequence:
    name: str
    fps: float
    size_wh: tuple[int, int]
    frames: list[sv.Detections]
    gt: Path


def load_sequence(folder: Path) -> Sequence:
    info = configparser.ConfigParser()
    if not info.read(folder / "seqinfo.ini"):
        raise SystemExit(f"{folder}: no seqinfo.ini (MOTChallenge layout: seqinfo.ini, det/det.txt, gt/gt.txt)")
    seq = info["Sequence"]
    rows = np.loadtxt(folder / "det" / "det.txt", delimiter=",", ndmin=2)
    length = int(seq.get("seqLength", str(int(rows[:, 0].max()))))
    frames = []
    for index in range(1, length + 1):
        r = rows[rows[:, 0] == index]
        frames.append(sv.Detections(
            xyxy=np.c_[r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]].astype(np.float32).reshape(-1, 4),
            confidence=r[:, 6].astype(np.float32), class_id=np.zeros(len(r), int),
            data={"class_name": np.array(["person"] * len(r), dtype=str)}))
    size = (int(seq.get("imWidth", "1920")), int(seq.get("imHeight", "1080")))
    return Sequence(seq.get("name", folder.name), float(seq.get("frameRate", "30")), size, frames,
                    folder / "gt" / "gt.txt")


def users_loop(kind: str) -> Update:
    """`trackers` at its defaults, as its README shows it."""
    import trackers

    tracker: Any = {"bytetrack": trackers.ByteTrackTracker, "sort": trackers.SORTTracker,
                    "ocsort": trackers.OCSORTTracker,
                    "botsort": lambda: trackers.BoTSORTTracker(enable_cmc=False)}[kind]()
    return lambda detections, _: tracker.update(detections)


def streamvis_step(kind: str, sequence: Sequence, overrides: list[str]) -> Update:
    """The detect pipeline's step, with the detections given (no detector runs)."""
    from streamvis.config import load_pipeline
    from streamvis.detection import NoDetector
    from streamvis.frame import Frame
    from streamvis.pipeline.loading import Models
    from streamvis.pipeline.step import Pipeline

    config = load_pipeline("detect", [f"tracker.type={kind}", *overrides])
    pipeline = Pipeline(config, Models(NoDetector()), sequence.fps, annotate=False)
    blank = np.zeros((sequence.size_wh[1], sequence.size_wh[0], 3), np.uint8)

    def update(detections: sv.Detections, index: int) -> sv.Detections:
        frame = Frame(blank, index, index / sequence.fps, sequence.name)
        return pipeline.apply(frame, detections).detections

    return update


def tracked(sequence: Sequence, update: Update, out: Path) -> Path:
    lines = []
    for index, detections in enumerate(sequence.frames):
        result = update(detections, index)
        if result.tracker_id is None:
            continue
        for (x1, y1, x2, y2), track in zip(result.xyxy.tolist(), result.tracker_id.tolist(), strict=True):
            if track >= 0:
                lines.append(f"{index + 1},{track + 1},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},1,-1,-1,-1")
    out.write_text("\n".join(lines) + "\n")
    return out


def measure(sequence: Sequence, work: Path, overrides: list[str] | None = None,
            kinds: tuple[str, ...] = TRACKERS) -> dict[str, dict[str, dict[str, float]]]:
    """tracker -> {"loop": metrics, "streamvis": metrics}."""
    from streamvis.evaluation import score

    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind in kinds:
        loop = tracked(sequence, users_loop(kind), work / f"{sequence.name}.{kind}.loop.txt")
        ours = tracked(sequence, streamvis_step(kind, sequence, overrides or []),
                       work / f"{sequence.name}.{kind}.sv.txt")
        out[kind] = {"loop": score(sequence.gt, loop, 0.5), "streamvis": score(sequence.gt, ours, 0.5)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sequences", nargs="*", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="streamvis settings (KEY=VALUE)")
    args = parser.parse_args()
    folders = args.sequences or sorted(p for p in SEQUENCES.iterdir() if (p / "seqinfo.ini").is_file())
    table = Table(title="Tracking on public detections and ground truth: streamvis's step against the user's loop "
                        "(trackers at its defaults), same detections")
    for column in ("sequence", "tracker", "IDF1 loop", "IDF1 streamvis", "IDF1 diff", "MOTA loop", "MOTA streamvis",
                   "HOTA loop", "HOTA streamvis", "IDSW loop", "IDSW streamvis"):
        table.add_column(column, justify="left" if column in ("sequence", "tracker") else "right")
    with tempfile.TemporaryDirectory(prefix="streamvis-tracking-") as tmp:
        for folder in folders:
            sequence = load_sequence(folder)
            for kind, pair in measure(sequence, Path(tmp), args.overrides).items():
                loop, ours = pair["loop"], pair["streamvis"]
                table.add_row(sequence.name, kind, f"{loop['IDF1']:.3f}", f"{ours['IDF1']:.3f}",
                              f"{ours['IDF1'] - loop['IDF1']:+.3f}", f"{loop['MOTA']:.3f}", f"{ours['MOTA']:.3f}",
                              f"{loop['HOTA']:.3f}", f"{ours['HOTA']:.3f}", str(int(loop["IDSW"])),
                              str(int(ours["IDSW"])))
    Console(width=200).print(table)
    save_table("tracking_public", table)


if __name__ == "__main__":
    main()
