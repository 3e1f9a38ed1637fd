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

#: measured IDF1 / MOTA of the default (ByteTrack): Campus 0.604 / 0.579, Stadtmitte 0.760 / 0.705; the floor is a
#: little under them (the tracker is deterministic: this guards against a change that loses identities)
FLOORS = {"TUD-Campus": (0.59, 0.56), "TUD-Stadtmitte": (0.74, 0.69)}
LIBRARY_ACTIVATION = ["tracker.track_activation_threshold=0.7"]  # `trackers`' own default


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_streamvis_tracks_as_well_as_the_users_loop_on_public_ground_truth(name: str, tmp_path: Path) -> None:
    results = measure(load_sequence(SEQUENCES / name), tmp_path, kinds=("bytetrack", "sort", "ocsort"))
    idf1_floor, mota_floor = FLOORS[name]
    default = results["bytetrack"]["streamvis"]
    assert default["IDF1"] >= idf1_floor and default["MOTA"] >= mota_floor, default
    for kind, pair in results.items():
        assert pair["streamvis"]["IDF1"] >= pair["loop"]["IDF1"] - 0.01, (kind, pair)


def test_with_the_librarys_settings_streamvis_tracks_exactly_as_the_loop(tmp_path: Path) -> None:
    """The step around the tracker (timestamps in seconds, the class filter, the track-class votes) changes no
    identity: given the library's activation threshold too, the tracks score the same. (streamvis's 0.4 lets a
    box the detector is unsure of start a track: one more switch on each of these sequences, earlier tracks on
    YOLOX-nano's boxes.)"""
    for name in FLOORS:
        sequence = load_sequence(SEQUENCES / name)
        pair = measure(sequence, tmp_path, LIBRARY_ACTIVATION, kinds=("bytetrack",))["bytetrack"]
        assert pair["streamvis"] == pair["loop"]
        default = measure(sequence, tmp_path, kinds=("bytetrack",))["bytetrack"]["streamvis"]
        assert default["IDSW"] == pair["loop"]["IDSW"] + 1
