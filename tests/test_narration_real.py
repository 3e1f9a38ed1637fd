"""Narration on the real shared videos with the real YOLOX-nano and ByteTrack (`process -p narrate`, verbosity
normal), measured as `benchmarks/narration_transcript.py` measures it: every person the tracker follows for 2 s
is mentioned within 3 s of appearing, no utterance is repeated, no hazard warning is about something far and
still, and at most 12 utterances come in any minute."""

from __future__ import annotations

import shlex
import sys

import pytest
from support import MODELS, ROOT, VIDEOS, YOLOX_NANO, need

sys.path.insert(0, str(ROOT / "benchmarks"))
from narration_transcript import (
    MENTION_WITHIN_S,
    Run,
    hazard_warnings,
    mention_delays,
    most_in_a_minute,
    repeats,
    run_narration,
)

CLIPS = ["intel_one-by-one-person-detection.mp4", "intel_bottle-detection.mp4", "intel_car-detection.mp4"]


@pytest.fixture(scope="module", params=CLIPS)
def narrated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    video = VIDEOS / request.param
    need(video)
    need(YOLOX_NANO)
    return run_narration(video, shlex.split(f"{sys.executable} -m streamvis"), [], MODELS,
                         tmp_path_factory.mktemp("narrated"))


def test_every_person_who_stays_2_s_is_mentioned_within_3_s(narrated: Run) -> None:
    delays = mention_delays(narrated, {"person"})
    late = {track: delay for track, delay in delays.items() if delay is None or delay > MENTION_WITHIN_S}
    assert not late, f"{narrated.video}: people mentioned late or never (track: seconds): {late}"


def test_nothing_is_said_twice(narrated: Run) -> None:
    assert repeats(narrated) == 0, [u["text"] for u in narrated.utterances]


def test_hazard_warnings_only_for_what_is_near_or_approaching(narrated: Run) -> None:
    warnings, justified = hazard_warnings(narrated)
    assert warnings == justified, [u["text"] for u in narrated.utterances if u.get("urgent")]


def test_at_most_12_utterances_in_any_minute(narrated: Run) -> None:
    assert most_in_a_minute(narrated) <= 12
    assert narrated.utterances, "something was said"
