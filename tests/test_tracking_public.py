"""Tracking against public ground truth (MOT15's TUD-Campus and TUD-Stadtmitte, their public detections and
labels in tests/data/mot; `benchmarks/tracking.py` prints the whole table): given the same detections, streamvis's
own step keeps identities at least as well as the loop a user writes with `trackers`, and keeps a floor."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from tracking import SEQUENCES, load_sequence, measure

#: measured IDF1 / MOTA of the default (ByteTrack): Campus 0.603 / 0.579, Stadtmitte 0.760 / 0.706; the floor is a
#: little under them (the tracker is deterministic: this guards against a change that loses identities)
FLOORS = {"TUD-Campus": (0.59, 0.56), "TUD-Stadtmitte": (0.74, 0.69)}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_streamvis_tracks_as_well_as_the_users_loop_on_public_ground_truth(name: str, tmp_path: Path) -> None:
    results = measure(load_sequence(SEQUENCES / name), tmp_path, kinds=("bytetrack", "sort", "ocsort"))
    idf1_floor, mota_floor = FLOORS[name]
    default = results["bytetrack"]["streamvis"]
    assert default["IDF1"] >= idf1_floor and default["MOTA"] >= mota_floor, default
    assert default == results["bytetrack"]["loop"]  # the same detections and settings: the same tracks
    for kind, pair in results.items():
        assert pair["streamvis"]["IDF1"] >= pair["loop"]["IDF1"] - 0.01, (kind, pair)


def test_the_old_activation_threshold_started_tracks_from_unsure_boxes(tmp_path: Path) -> None:
    """0.4 (streamvis's default before) starts tracks from boxes the library's 0.7 leaves to its second stage:
    one more identity switch on each sequence, nothing gained."""
    for name in FLOORS:
        sequence = load_sequence(SEQUENCES / name)
        now = measure(sequence, tmp_path, kinds=("bytetrack",))["bytetrack"]["streamvis"]
        before = measure(sequence, tmp_path, ["tracker.track_activation_threshold=0.4"],
                         kinds=("bytetrack",))["bytetrack"]["streamvis"]
        assert before["IDSW"] > now["IDSW"] and before["IDF1"] <= now["IDF1"] + 0.002
