"""A video segmenter's propagation off the frame loop (live, under a latency budget).

SAM 2 on a CPU takes seconds a frame at its real sizes: run in the frame loop, it holds every frame that long. Under
a latency budget a live stream hands propagation to a worker of its own instead (`LivePropagation`): each frame,
when the worker is free, it takes that frame (with the newest keyframe's detections waiting for it, so no
keyframe is lost); the frame waits for the masks up to `inline_wait_ms` while the budget's plan still waits for
results, and otherwise goes on with the last masks carried. Masks then lag the video by one propagation, and a
slow model propagates on fewer frames: what a budget gives up, never latency. The budget's propagation step
(`propagate_every`) still spaces the frames given to the worker. Prompts (clicks, boxes) touch the segmenter's
session: `drain()` lets the propagation in flight finish first.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import supervision as sv

from streamvis.frame import Frame
from streamvis.pipeline.step import Pipeline

log = logging.getLogger(__name__)


class LivePropagation:
    """One stream's propagation worker (see the module text); called from the stream's pipeline thread only."""

    def __init__(self, pipeline: Pipeline, stream_id: str) -> None:
        self.pipeline = pipeline
        self.stream_id = stream_id
        self.runs = 0  # propagations done
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"segment-{stream_id}")
        self._pending: Future[tuple[sv.Detections, float]] | None = None
        self._keyframe: sv.Detections | None = None  # a keyframe's detections not yet given to the segmenter
        self._since_submit = 0  # frames since one was given to the worker

    def _propagate(self, frame: Frame, detections: sv.Detections | None) -> tuple[sv.Detections, float]:
        start = time.perf_counter()
        masks = self.pipeline.propagate(frame, detections)
        return masks, (time.perf_counter() - start) * 1e3

    def step(self, frame: Frame, keyframe: sv.Detections | None, wait_s: float,
             every: int = 1) -> tuple[sv.Detections | None, float | None]:
        """This frame's part: the worker takes it if free (and due: one frame in `every`, or a keyframe waiting);
        returns the newest masks finished by now, waiting up to `wait_s` for them (None: carry the last), and
        what their propagation took (ms)."""
        if keyframe is not None:
            self._keyframe = keyframe  # a newer keyframe replaces one still waiting: the segmenter gets the newest
        self._since_submit += 1
        submitted = False
        if self._pending is None and (self._keyframe is not None or self._since_submit >= every):
            detections, self._keyframe = self._keyframe, None
            self._pending = self._worker.submit(self._propagate, frame, detections)
            self._since_submit = 0
            submitted = True
        return self._collect(wait_s if submitted else 0.0)

    def _collect(self, wait_s: float) -> tuple[sv.Detections | None, float | None]:
        if self._pending is None:
            return None, None
        try:
            masks, ms = self._pending.result(timeout=wait_s)
        except FutureTimeout:
            return None, None
        except Exception:  # one failed propagation must not end the stream: the masks are carried, it runs again
            log.exception("stream %s: propagation failed", self.stream_id)
            self._pending = None
            return None, None
        self._pending = None
        self.runs += 1
        return masks, ms

    def drain(self) -> tuple[sv.Detections | None, float | None]:
        """Let the propagation in flight finish (before a prompt changes the session); its masks, if any."""
        if self._pending is None:
            return None, None
        return self._collect(wait_s=3600.0)

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)
