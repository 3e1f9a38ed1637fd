"""The soak's verdict on memory (`benchmarks/soak.py`): RSS is called flat by a criterion fixed before any run,
not by eye. A trimmed heap saws up and down between trims; a level saw is flat, a rising one is not."""

from __future__ import annotations

import sys

import pytest
from support import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from soak import rss_by_quarter, rss_trend_mb_per_h, rss_verdict

pytestmark = pytest.mark.fast


def samples(rss_at: list[float], every_min: float = 0.5) -> list[dict[str, float | str]]:
    return [{"minute": f"{1 + i * every_min:.1f}", "rss_mb": f"{mb:.0f}"} for i, mb in enumerate(rss_at)]


def sawtooth(minutes: int, level_mb: float, rise_mb_per_h: float = 0.0) -> list[float]:
    """RSS every 30 s: up 20 MB over a minute, back down at each trim, around a level that rises or not."""
    return [level_mb + rise_mb_per_h * i / 120 + (20 if i % 2 else 0) for i in range(minutes * 2)]


def test_a_level_sawtooth_is_flat() -> None:
    run = samples(sawtooth(120, 450.0))
    assert abs(rss_trend_mb_per_h(run)) < 1
    assert rss_verdict(run) == "RSS flat"


def test_a_slow_rise_is_not_flat() -> None:
    run = samples(sawtooth(120, 450.0, rise_mb_per_h=20.0))
    assert 19 < rss_trend_mb_per_h(run) < 21
    assert rss_verdict(run).startswith("RSS not flat (trend +2")  # and its last quarter higher: 510 > 1.02 x 490


def test_a_late_jump_is_not_flat_even_when_the_trend_is_small() -> None:
    rss = sawtooth(120, 450.0)
    rss[-3] = 480.0  # one high sample near the end: 480 > 1.02 x 470
    verdict = rss_verdict(samples(rss))
    assert "last quarter's highest 480 MB > 1.02 x 470" in verdict


def test_quarters_show_a_level_and_a_rise() -> None:
    assert rss_by_quarter(samples([400.0] * 8)) == "RSS mean (min-max) " + ", ".join(["400 (400-400)"] * 4) + " MB"
    rising = rss_by_quarter(samples([400.0 + 10 * (i // 2) for i in range(8)]))
    assert rising.endswith("400 (400-400), 410 (410-410), 420 (420-420), 430 (430-430) MB")


def test_a_short_run_gets_no_verdict() -> None:
    assert rss_verdict(samples([400.0] * 4)) == "too short a run to call RSS flat"
