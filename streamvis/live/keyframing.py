"""A live stream's keyframes: when one is due, whether motion lets it through, the detector's worker, and which
result goes with which frame.

A keyframe is due when the detector is free and at least `every_n_frames` frames, and 1 / `detector.fps` seconds,
have passed (`LiveKeyframes`); with motion gating (on by default live, `MotionGate`) it runs only when something
moves: a gated keyframe leaves the still objects carried, and is counted. A fast detector's result is applied to
the frame it was run on (the frame waits up to `inline_wait_ms` while the budget's plan waits for results); a slow
one's is applied when it arrives, to the current frame, unless it is older than `staleness_s`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import supervision as sv

from streamvis.config import PipelineConfig
from streamvis.detection import Prioritized
from streamvis.frame import Frame
from streamvis.live.budget import BudgetPlan
from streamvis.live.settings import LiveSettings
from streamvis.live.stats import StreamStats
from streamvis.pipeline.keyframes import LiveKeyframes
from streamvis.pipeline.motion import MotionGate
from streamvis.pipeline.step import Pipeline

log = logging.getLogger(__name__)


class KeyframeRun(NamedTuple):
    """One detector run: the frame it ran on, what it found, how long it took, the part of the frame it saw."""

    frame: Frame
    detections: sv.Detections
    detect_ms: float
    region_xyxy: np.ndarray | None  # None: the whole frame


class Keyframe(NamedTuple):
    """What a frame gets from the detector: a keyframe's detections (None: carry the objects), the part of the
    frame they were found in (None: the whole frame), and what the run took (ms, None when none finished)."""

    detections: sv.Detections | None
    region_xyxy: np.ndarray | None
    detect_ms: float | None


NO_RESULT = Keyframe(None, None, None)


class LiveDetection:
    """One stream's keyframes (see the module text). `step` is called from the stream's pipeline thread, once a
    frame; `worker` also runs a prompt's grounding (`LivePrompts`)."""

    def __init__(self, stream_id: str, pipeline: Pipeline, config: PipelineConfig, stats: StreamStats,
                 settings: LiveSettings, priority: Callable[[], int]) -> None:
        self.stream_id = stream_id
        self.pipeline = pipeline
        self.stats = stats
        self.settings = settings
        self.priority = priority  # of this stream's keyframes in a detector queue shared by streams (higher first)
        self.worker = ThreadPoolExecutor(1, thread_name_prefix=f"detect-{stream_id}")
        detector = config.detector
        self.schedule = LiveKeyframes(detector.every_n_frames, 1 / detector.fps if detector.fps else 0.0)
        self.gate = MotionGate(config.motion, crop=pipeline.crops()) if config.motion.on(live=True) else None
        stats.motion_gating = self.gate is not None
        self.calls = 0  # detector runs started
        self.missed = False  # the last frame was due a keyframe but for the busy detector
        self._pending: Future[KeyframeRun] | None = None

    @property
    def still(self) -> bool:
        """Motion gating held the scene since the previous frame."""
        return self.gate is not None and self.gate.still

    def space_out(self, plan: BudgetPlan, every_n_frames: int, fps: float | None) -> None:
        """The budget's detector step: one due keyframe in `plan.detector_every`."""
        self.schedule.every_n = every_n_frames * plan.detector_every
        self.schedule.min_interval_s = (1 / fps if fps else 0.0) * plan.detector_every

    def _detect(self, frame: Frame, region_xyxy: np.ndarray | None) -> KeyframeRun:
        detector = self.pipeline.detector
        if isinstance(detector, Prioritized):  # one queue for every stream: its priority says whose go first
            detector.prioritize(self.priority())
        start = time.perf_counter()
        detections = self.pipeline.detect(frame.image, region_xyxy)
        self.calls += 1
        return KeyframeRun(frame, detections, (time.perf_counter() - start) * 1e3, region_xyxy)

    def step(self, frame: Frame, plan: BudgetPlan) -> Keyframe:
        """Start a keyframe on `frame` if one is due (and motion lets it), and give back a result that is ready."""
        # a run that finished since the last frame frees the detector for this one (frames a second or a fifth
        # apart, as a source passes them under `max_fps`, would otherwise find it busy on every other slot)
        finished = self._finished(frame, wait_s=0.0)
        due = self.schedule.due(frame.index, frame.pts, detector_free=self._pending is None)
        # a keyframe due but for the busy detector: a source passing frames under max_fps passes the next one too
        self.missed = not due and self.schedule.due(frame.index, frame.pts, detector_free=True)
        if due:  # a gated keyframe passes as a run would: the next is due one interval later
            self.schedule.started(frame.index, frame.pts)
        submitted = self.gate.decide(frame.image, frame.pts, due) if self.gate is not None else due
        if self.gate is not None and self.gate.moving:
            self.stats.moving_frames += 1
        if submitted:
            region = self.gate.region_xyxy if self.gate is not None else None
            if region is not None:
                self.stats.cropped_keyframes += 1
            self._pending = self.worker.submit(self._detect, frame, region)
            wait_s = self.settings.inline_wait_ms / 1e3 if plan.wait_for_detector else 0.0
            finished = self._finished(frame, wait_s) or finished  # the newest result wins
        elif due:
            self.stats.gated_keyframes += 1
        return finished or NO_RESULT

    def _finished(self, frame: Frame, wait_s: float) -> Keyframe | None:
        """The pending run's result for `frame` once it has finished (waiting up to `wait_s`), and the detector
        free again; None while it runs or when none is pending."""
        if self._pending is None:
            return None
        try:
            run = self._pending.result(timeout=wait_s)
        except TimeoutError:
            return None
        except Exception:  # one failed detector run must not end the stream: carry on, retry
            log.exception("stream %s: detector failed on frame %d", self.stream_id, frame.index)
            self._pending = None
            return None
        self._pending = None
        if frame.pts - run.frame.pts > self.settings.staleness_s:
            self.stats.stale_results += 1
            return Keyframe(None, None, run.detect_ms)
        self.stats.keyframes += 1
        self.stats.keyframe_rate.tick()
        return Keyframe(run.detections, run.region_xyxy, run.detect_ms)

    def saw(self, detections: sv.Detections) -> None:
        """A keyframe's objects, as the pipeline made them: what the motion gate keeps still."""
        if self.gate is not None:
            self.gate.saw(detections)

    def close(self) -> None:
        self.worker.shutdown(wait=False, cancel_futures=True)
