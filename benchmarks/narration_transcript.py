"""Narration on real scenes: `streamvis process -p narrate` (the real YOLOX-nano and ByteTrack) on each video,
its transcript (time, reason, text) and the figures a listener would care about, in one run.

    .venv/bin/python benchmarks/narration_transcript.py [VIDEO ...] [--verbosity normal] [--set KEY=VALUE ...]
        [--streamvis "CMD"]   # another streamvis to compare: "env PYTHONPATH=/old/checkout python -m streamvis"

Figures per video (from the run's `--events` JSONL: every frame's tracks, every utterance):
- utterances, utterances per minute, and the most in any 60 s;
- tracks that stay 2 s or more (of the classes narrated): the delay from a track's first frame to the first
  utterance that mentions it (by tracker id; for a narrator that does not list ids, the first utterance after it
  appeared that names its class), its median and worst, the share within 3 s, and those never mentioned;
- repeats: an utterance with the same text, about the same objects, as one in the 30 s before it;
- hazard warnings, and how many of them were about an object near (box at least 45% of the frame height) or
  approaching (box height grown 15% over the last second) at that moment, measured here from the boxes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from results import save_table

ROOT = Path(__file__).resolve().parent.parent
VIDEOS = ROOT.parent / "shared" / "media" / "videos"
HAZARDS = {"car", "bus", "truck", "motorcycle", "motorbike", "bicycle", "train", "dog"}
STAYS_S, MENTION_WITHIN_S, REPEAT_WINDOW_S = 2.0, 3.0, 30.0


@dataclass
class Track:
    name: str
    first_s: float
    last_s: float
    boxes: list[tuple[float, list[float], int]] = field(default_factory=list)  # (t, xyxy, frame height)


@dataclass
class Run:
    video: str
    duration_s: float
    utterances: list[dict[str, Any]]
    tracks: dict[int, Track]


def run_narration(video: Path, streamvis: list[str], overrides: list[str], models_dir: Path, work: Path) -> Run:
    events = work / f"{video.stem}.jsonl"
    command = [*streamvis, "process", str(video), "-o", str(work / f"{video.stem}.mp4"), "--events", str(events),
               "-p", "narrate", "-q", "--models-dir", str(models_dir)]
    for override in overrides:
        command += ["--set", override]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed:\n{result.stderr[-2000:]}")
    utterances, tracks, last_pts = [], {}, 0.0
    for line in events.read_text().splitlines():
        record = json.loads(line)
        t, height = float(record["pts"]), int(record["resolution_wh"][1])
        last_pts = t
        for d in record["detections"]:
            track_id = d.get("track_id")
            if track_id is None or track_id < 0:
                continue
            track = tracks.setdefault(track_id, Track(d["class_name"], t, t))
            track.last_s = t
            track.boxes.append((t, d["xyxy"], height))
        if record.get("description"):
            utterances.append({"t": t, **record["description"]})
    return Run(video.name, last_pts, utterances, tracks)


def _box_at(track: Track, t: float) -> tuple[list[float], int] | None:
    seen = [(s, box, h) for s, box, h in track.boxes if s <= t]
    return (seen[-1][1], seen[-1][2]) if seen else None


def near_or_approaching(track: Track, t: float) -> bool:
    now = _box_at(track, t)
    then = _box_at(track, t - 1.0)
    if now is None:
        return False
    box, height = now
    if (box[3] - box[1]) / height >= 0.45:
        return True
    return then is not None and (box[3] - box[1]) >= 1.15 * max(then[0][3] - then[0][1], 1.0)


def mention_delays(run: Run, names: set[str] | None = None) -> dict[int, float | None]:
    """For each track that stays `STAYS_S` or more (of `names`, or any class): seconds from its first frame to the
    first utterance that mentions it, None if none does."""
    mentioned_at: dict[int, float] = {}
    for u in run.utterances:
        ids = [i for i in u.get("tracks", []) if i in run.tracks]
        if "tracks" not in u:  # a narrator that lists no ids: the first utterance naming the class after it came
            ids = [i for i, tr in run.tracks.items() if tr.first_s <= u["t"] and tr.name in u["text"].lower()]
        for i in ids:
            mentioned_at.setdefault(i, u["t"])
    return {i: (mentioned_at[i] - tr.first_s if i in mentioned_at else None) for i, tr in run.tracks.items()
            if tr.last_s - tr.first_s >= STAYS_S and (names is None or tr.name in names)}


def repeats(run: Run) -> int:
    """Utterances with the same text, about the same objects, as one in the `REPEAT_WINDOW_S` before."""
    count, earlier = 0, []
    for u in run.utterances:
        about = set(u.get("tracks", []))
        if any(text == u["text"] and ids == about and u["t"] - t <= REPEAT_WINDOW_S for t, text, ids in earlier):
            count += 1
        earlier.append((u["t"], u["text"], about))
    return count


def hazard_warnings(run: Run) -> tuple[int, int]:
    """(warnings, those about a hazard-class object near or approaching at that moment, from the boxes)."""
    warnings = [u for u in run.utterances if u.get("urgent") or str(u.get("reason", "")).startswith("hazard")
                or u["text"].lower().startswith("careful")]
    justified = 0
    for u in warnings:
        ids = [i for i in u.get("tracks", []) if i in run.tracks] or \
            [i for i, tr in run.tracks.items() if tr.name in HAZARDS and tr.first_s <= u["t"] <= tr.last_s]
        justified += any(near_or_approaching(run.tracks[i], u["t"]) for i in ids if run.tracks[i].name in HAZARDS)
    return len(warnings), justified


def most_in_a_minute(run: Run) -> int:
    times = [u["t"] for u in run.utterances]
    return max((sum(1 for s in times if t <= s < t + 60) for t in times), default=0)


def figures(run: Run) -> dict[str, Any]:
    minutes = max(run.duration_s, 1e-6) / 60
    delays = mention_delays(run)
    known = [d for d in delays.values() if d is not None]
    warnings, justified = hazard_warnings(run)
    return {"video": run.video, "seconds": round(run.duration_s, 1), "utterances": len(run.utterances),
            "per_minute": round(len(run.utterances) / minutes, 1), "most_in_60s": most_in_a_minute(run),
            "tracks_2s": len(delays), "mention_median_s": round(statistics.median(known), 2) if known else None,
            "mention_worst_s": round(max(known), 2) if known else None,
            "within_3s": f"{sum(d <= MENTION_WITHIN_S for d in known)}/{len(delays)}",
            "never_mentioned": len(delays) - len(known), "repeats": repeats(run),
            "hazard_warnings": warnings, "near_or_approaching": justified}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--verbosity", default="normal", choices=["brief", "normal", "detailed"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a pipeline override")
    parser.add_argument("--streamvis", default=f"{sys.executable} -m streamvis", help="the command to run")
    parser.add_argument("--models-dir", type=Path,
                        default=Path(os.environ.get("STREAMVIS_MODELS_DIR", ROOT.parent / "shared" / "models")))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON lines")
    args = parser.parse_args()
    videos = args.videos or sorted(VIDEOS.glob("*.mp4"))
    overrides = [f"narrator.verbosity={args.verbosity}", *args.overrides] if args.verbosity != "normal" \
        else args.overrides
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for video in videos:
            run = run_narration(video, shlex.split(args.streamvis), overrides, args.models_dir, Path(tmp))
            console.print(f"\n[bold]{video.name}[/] ({run.duration_s:.0f} s)")
            for u in run.utterances:
                console.print(f"  {u['t']:6.1f} s  {u.get('reason', '')!s:<18} {u['text']}", highlight=False)
            rows.append(figures(run))
    if args.json:
        for row in rows:
            print(json.dumps(row))
    table = Table(title=f"narration on real scenes (-p narrate, verbosity {args.verbosity}"
                        + (f", {' '.join(args.overrides)}" if args.overrides else "") + ")")
    for column in rows[0]:
        table.add_column(column.replace("_", " "), justify="left" if column == "video" else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    save_table("narration_transcript", table)


if __name__ == "__main__":
    main()
