"""How a live stream is scheduled, and what the streams of one server share (`live.runner.LiveStream` reads it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from streamvis.live.budget import BudgetBoard

if TYPE_CHECKING:
    from streamvis.search.live import LiveIndex


@dataclass(slots=True)
class LiveSettings:
    inline_wait_ms: float = 40.0  # wait this long for a keyframe result before carrying objects instead
    staleness_s: float = 1.0  # a keyframe result older than this (in stream time) is discarded
    pace_files: bool = True  # play files at their frame rate, like a camera
    loop_files: bool = False  # start a file again when it ends
    # the streams of one server share one plan over the cores when they hold latency budgets (`BudgetBoard`)
    budget_board: BudgetBoard | None = None
    # `serve --index`: every stream's tracks and scene keyframes into one index, searchable over HTTP
    moments: LiveIndex | None = None
