"""A latency budget a live stream holds by itself (`latency.budget_ms`, `serve --latency-budget-ms`).

What is held: the p95, over the last second, of a frame's time from its decode to its encoded packet
(`server_latency`, while a viewer takes the video) or to its result (`frame_to_result`, while nobody does).
Once a second (`LatencyBudget.step`) the controller compares it with the budget:

- over the budget: one step down the ladder (less quality for less time), at once;
- under `recover_fraction` of the budget for `recover_s`: one step back up, unless what that step is known to add
  (waiting for the detector adds its run; a larger video its extra encoding, from the stream's own recent
  figures) would take the p95 over the budget: on a box where the detector alone takes most of the budget, frames
  keep not waiting for it instead of probing the step up every few seconds;
- changes at least `hold_s` apart and at most `max_changes_per_minute`; a step up that had to be taken back
  within twice its wait doubles that wait (up to `MAX_RECOVER_S`), so a load near the edge does not make it
  oscillate; every change is logged once, with the figure that caused it.

The ladder, in the order the knobs move (`LADDER`; each step keeps the ones before it):
1. frames stop waiting for the detector's result (up to `inline_wait_ms`): it is applied when it comes, to a
   later frame, a frame or two behind;
2. the detector runs on every 2nd, then 4th keyframe (the tracker or SAM 2 memory carries the objects between);
3. a video segmenter propagates masks on every 2nd to 4th frame (the masks are carried between);
4. model narration (a caption model, the text reader) and the index's scene keyframes start at most every 10 s;
5. the video to viewers is encoded at 3/4, then 1/2 of its width and height (the viewer scales it back);
6. last, viewers get every 2nd, then 3rd frame (recordings and the data channel keep every frame).
The encoder is x264 `ultrafast` with `zerolatency` live already: its preset is not a knob.

One plan over the process (`BudgetBoard`): the streams of one server share its cores, so a watched stream over
its budget first takes a step from a stream nobody watches (a still one before one where something moves, then the
one still at the highest quality), and steps down itself
only when none has a step left to give. A stream that gave steps takes them back only once no watched stream has
been over its budget for its recover time. None is starved: the last step still detects and publishes.
Without a budget nothing here runs, and a stream behaves as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from streamvis.live.stats import StreamStats

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    """What a stream gives up to stay in budget; the first plan gives up nothing."""

    wait_for_detector: bool = True  # a frame waits (up to `inline_wait_ms`) for the detector run started on it
    detector_every: int = 1  # the detector runs on one due keyframe in this many
    propagate_every: int = 1  # a video segmenter propagates on one frame in this many
    narration_gap_s: float = 0.0  # model descriptions (and text looks) start at least this far apart
    output_scale: float = 1.0  # the viewers' video, width and height times this
    output_every: int = 1  # viewers get one frame in this many

    def describe(self) -> str:
        parts = []
        if not self.wait_for_detector:
            parts.append("detections applied as they come")
        if self.detector_every > 1:
            parts.append(f"detector on 1 keyframe in {self.detector_every}")
        if self.propagate_every > 1:
            parts.append(f"masks propagated on 1 frame in {self.propagate_every}")
        if self.narration_gap_s:
            parts.append(f"narration at most every {self.narration_gap_s:g} s")
        if self.output_scale < 1:
            parts.append(f"video at {self.output_scale:g}x size")
        if self.output_every > 1:
            parts.append(f"viewers get 1 frame in {self.output_every}")
        return ", ".join(parts) or "full quality"


_NO_WAIT = BudgetPlan(wait_for_detector=False)
LADDER: tuple[BudgetPlan, ...] = (
    BudgetPlan(),
    _NO_WAIT,
    replace(_NO_WAIT, detector_every=2),
    replace(_NO_WAIT, detector_every=4),
    replace(_NO_WAIT, detector_every=4, propagate_every=2),
    replace(_NO_WAIT, detector_every=4, propagate_every=4),
    replace(_NO_WAIT, detector_every=4, propagate_every=4, narration_gap_s=10.0),
    replace(_NO_WAIT, detector_every=4, propagate_every=4, narration_gap_s=10.0, output_scale=0.75),
    replace(_NO_WAIT, detector_every=4, propagate_every=4, narration_gap_s=10.0, output_scale=0.5),
    replace(_NO_WAIT, detector_every=4, propagate_every=4, narration_gap_s=10.0, output_scale=0.5, output_every=2),
    replace(_NO_WAIT, detector_every=8, propagate_every=4, narration_gap_s=10.0, output_scale=0.5, output_every=3),
)


def ladder_for(propagates: bool, narrates: bool) -> tuple[BudgetPlan, ...]:
    """`LADDER` without the steps whose knob this pipeline lacks (no video segmenter, no model narrator), so
    every step changes something."""
    steps: list[BudgetPlan] = []
    for plan in LADDER:
        plan = replace(plan, propagate_every=plan.propagate_every if propagates else 1,
                       narration_gap_s=plan.narration_gap_s if narrates else 0.0)
        if not steps or plan != steps[-1]:
            steps.append(plan)
    return tuple(steps)


WINDOW_S = 1.0  # the controller looks once a second, at the samples since its last look
MAX_RECOVER_S = 120.0  # the longest a step waits before quality comes back, after steps up were taken back
MIN_SAMPLES = 5  # fewer samples in a window say nothing: the plan stays


class BudgetBoard:
    """The streams of one process and their budgets: who gives a step when a watched stream runs over (see the
    module text). Thread-safe: every stream's pipeline thread asks it."""

    def __init__(self) -> None:
        self._members: list[tuple[LatencyBudget, Callable[[], bool]]] = []
        self._lock = threading.Lock()
        self.last_pressure = -float("inf")  # when a watched stream was last over its budget

    def join(self, budget: LatencyBudget, watched: Callable[[], bool]) -> None:
        with self._lock:
            self._members.append((budget, watched))

    def leave(self, budget: LatencyBudget) -> None:
        with self._lock:
            self._members = [(b, w) for b, w in self._members if b is not budget]

    def take_step_for(self, asking: LatencyBudget, now: float) -> LatencyBudget | None:
        """A watched stream is over its budget: one step from an unwatched stream that can give one (a still one
        before one where something moves, then the one still at the highest quality), or None when none can."""
        with self._lock:
            self.last_pressure = now
            donors = [b for b, watched in self._members if b is not asking and not watched() and b.can_give(now)]
        if not donors:
            return None
        donor = min(donors, key=lambda b: (b.moving(), b.level))
        donor.give(now, f"a step given to stream {asking.stats.stream}, watched and over its budget")
        return donor


class LatencyBudget:
    """The controller of one stream (see the module text). `step` runs in the pipeline thread once per frame and
    returns the new plan when it changes (also when the board moved it); `plan`, `level`, `reason` and `changes`
    say where it stands."""

    def __init__(self, budget_ms: float, stats: StreamStats, ladder: tuple[BudgetPlan, ...] = LADDER,
                 recover_fraction: float = 0.6, recover_s: float = 5.0, hold_s: float = 2.0,
                 max_changes_per_minute: int = 10, clock: Callable[[], float] = time.monotonic,
                 board: BudgetBoard | None = None, watched: Callable[[], bool] = lambda: True,
                 moving: Callable[[], bool] = lambda: True) -> None:
        self.budget_ms = budget_ms
        self.board = board
        self.watched = watched
        self.moving = moving  # something moves in the stream (motion gating did not hold its last keyframe)
        self.given = 0  # steps down taken for other streams (the board's), given back first
        self._lock = threading.Lock()  # the board moves this budget from other streams' threads
        self._applied = 0  # the level whose plan `step` last returned
        self.ladder = ladder
        self.stats = stats
        self.recover_fraction = recover_fraction
        self.recover_s = recover_s
        self.hold_s = hold_s
        self.max_changes_per_minute = max_changes_per_minute
        self.clock = clock
        self.level = 0
        self.changes = 0
        self.reason = f"holding: no figure yet against a {budget_ms:g} ms budget"
        self.measured_p95_ms: float | None = None
        self._seen: dict[str, int] = {}
        self._last_look = clock()
        self._last_change = -float("inf")
        self._change_times: list[float] = []
        self._calm_since: float | None = None  # since when the p95 has stayed under the recovery line
        self._recover_s = [recover_s] * len(ladder)  # per level: calm seconds before stepping up from it
        self._last_up: tuple[float, int] | None = None  # the last step up: when, and to which level
        if board is not None:
            board.join(self, watched)
        stats.latency_budget = self.snapshot()

    @property
    def plan(self) -> BudgetPlan:
        return self.ladder[self.level]

    def _can_change(self, now: float) -> bool:
        self._change_times = [t for t in self._change_times if now - t < 60.0]
        return now - self._last_change >= self.hold_s and len(self._change_times) < self.max_changes_per_minute

    def can_give(self, now: float) -> bool:
        """Whether this stream can step down for another one now."""
        with self._lock:
            return self.level < len(self.ladder) - 1 and self._can_change(now)

    def give(self, now: float, why: str) -> None:
        """Step down for another stream (from that stream's thread); `step` applies it in this one's."""
        with self._lock:
            self.given += 1
            self._move(+1, now, why)

    def _window_p95(self) -> tuple[str, float] | None:
        """The p95 of the samples taken since the last look: the video's latency while it is encoded, else the
        result's."""
        for stage in ("server_latency", "frame_to_result"):
            latency = self.stats.stages.get(stage)
            if latency is None:
                continue
            fresh = latency.count - self._seen.get(stage, 0)
            self._seen[stage] = latency.count
            if fresh >= MIN_SAMPLES:
                return stage, float(np.percentile(latency.recent(fresh), 95))
        return None

    def step(self) -> BudgetPlan | None:
        """Look at the last second, if a second has passed; the new plan when it changed (by this look, or by the
        board since the last call), else None."""
        with self._lock:
            now = self.clock()
            looked = now - self._last_look >= WINDOW_S
            if looked:
                self._last_look = now
                self._look(now)
            changed = self.level != self._applied
            if looked or changed:  # what /streams shows, refreshed once a second, not on every frame
                self.stats.latency_budget = self.snapshot()
            if not changed:
                return None
            self._applied = self.level
            return self.plan

    def _look(self, now: float) -> None:
        measured = self._window_p95()
        if measured is None:
            return
        stage, p95 = measured
        self.measured_p95_ms = p95
        over = p95 > self.budget_ms
        calm = p95 < self.recover_fraction * self.budget_ms
        self._calm_since = (self._calm_since if self._calm_since is not None else now) if calm else None
        can_change = self._can_change(now)
        figure = f"{stage} p95 {p95:.0f} ms over the {self.budget_ms:g} ms budget"
        if over and self.board is not None and self.watched():
            self._lock.release()  # the donor takes its own lock; never hold two
            try:
                donor = self.board.take_step_for(self, now)
            finally:
                self._lock.acquire()
            if donor is not None:
                self.reason = f"{figure}: stream {donor.stats.stream}, unwatched, gave a step"
                return
        if over and self.level < len(self.ladder) - 1 and can_change:
            if self._last_up is not None and self._last_up[1] == self.level \
                    and now - self._last_up[0] < 2 * self._recover_s[self.level + 1]:
                # the step up did not hold: wait longer before trying it again
                self._recover_s[self.level + 1] = min(MAX_RECOVER_S, 2 * self._recover_s[self.level + 1])
            self._move(+1, now, figure)
            return
        wait_s = self._recover_s[self.level]
        # steps given to other streams come back only when no watched stream has been over budget for a while
        pressed = self.given > 0 and self.board is not None and now - self.board.last_pressure < wait_s
        if calm and self.level > 0 and can_change and not pressed and self._calm_since is not None \
                and now - self._calm_since >= wait_s:
            added_ms = self._added_ms(self.ladder[self.level - 1])
            if p95 + added_ms > self.budget_ms:  # the step up is known not to fit: do not try it
                self.reason = (f"{stage} p95 {p95:.0f} ms; the step up would add about {added_ms:.0f} ms, over the "
                               f"{self.budget_ms:g} ms budget")
                return
            self._calm_since = now
            self._last_up = (now, self.level - 1)
            self.given = max(0, self.given - 1)
            self._move(-1, now, f"{stage} p95 {p95:.0f} ms, under {self.recover_fraction:g} of the "
                                f"{self.budget_ms:g} ms budget for {wait_s:g} s")
            return
        if over:
            self.reason = figure + (": at the last step" if self.level == len(self.ladder) - 1
                                    else ": waiting to change again")

    def _added_ms(self, to: BudgetPlan) -> float:
        """What stepping up to `to` is known to add to a frame's time, from this stream's own recent figures: waiting
        for the detector adds its run (p95); a larger video adds encoding in proportion to its pixels. The other
        knobs (cadences, narration, frame rate) cost shared CPU, which no figure of this stream predicts: the calm
        rule and the back-off cover them."""
        added = 0.0
        if to.wait_for_detector and not self.plan.wait_for_detector:
            added += self._recent_p95("detect")
        if to.output_scale > self.plan.output_scale:
            added += self._recent_p95("encode") * ((to.output_scale / self.plan.output_scale) ** 2 - 1)
        return added

    def _recent_p95(self, stage: str, samples: int = 60) -> float:
        latency = self.stats.stages.get(stage)
        recent = latency.recent(samples) if latency is not None else []
        return float(np.percentile(recent, 95)) if recent else 0.0

    def close(self) -> None:
        if self.board is not None:
            self.board.leave(self)

    def _move(self, direction: int, now: float, why: str) -> BudgetPlan:
        self.level += direction
        self.changes += 1
        self._last_change = now
        self._change_times.append(now)
        self.reason = why
        log.info("stream %s: latency budget: %s (%s)", self.stats.stream, self.plan.describe(), why)
        return self.plan

    @property
    def over(self) -> bool:
        """The last second's p95 was over the budget."""
        return self.measured_p95_ms is not None and self.measured_p95_ms > self.budget_ms

    def snapshot(self) -> dict[str, object]:
        """What `/streams` and the viewer's stats panel show."""
        return {"budget_ms": self.budget_ms, "level": self.level, "plan": self.plan.describe(),
                "reason": self.reason, "changes": self.changes, "given": self.given,
                "p95_ms": None if self.measured_p95_ms is None else round(self.measured_p95_ms, 1)}
