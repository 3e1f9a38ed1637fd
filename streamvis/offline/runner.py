"""Offline processing of one source: no frame dropped, deterministic output, as fast as the machine allows.

Threads: decode (source) -> detection, `in_flight` frames at once (a pool) -> tracking and annotation, in frame
order (caller's thread) -> sinks (writer: encode, events). Several frames in the detector keep every core busy
with a small model (one run of YOLOX-nano is too short to spread over cores); the order of everything after it
is the frames' order, so the output is the same, frame for frame, whatever `in_flight` is. The queues are
bounded and block when full (offline never drops). An error in any thread stops the run and is raised in the
caller; Ctrl-C stops it too. Either way the MP4 is finalised and playable.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv

from streamvis.frame import Frame, Result
from streamvis.pipeline.step import Pipeline, offline_schedule
from streamvis.sinks import Sink
from streamvis.sources import Source

log = logging.getLogger(__name__)

QUEUE_SIZE = 8
_END = object()


@dataclass(slots=True)
class RunOutcome:
    frames: int
    seconds: float
    interrupted: bool = False
    detector_runs: int = 0
    gated_keyframes: int = 0  # due keyframes motion gating skipped (nothing moved)
    cropped_keyframes: int = 0  # detector runs that saw only the moving part of the frame (`motion.crop`)


def _done(value: tuple[sv.Detections, float]) -> Future[tuple[sv.Detections, float]]:
    future: Future[tuple[sv.Detections, float]] = Future()
    future.set_result(value)
    return future


def _put(target: queue.Queue[Any], item: object, stop: threading.Event) -> bool:
    """Blocking put that gives up when `stop` is set (the consumer has gone)."""
    while not stop.is_set():
        try:
            target.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def default_in_flight() -> int:
    """Frames in the detector at once: one per core, and one more to cover the gaps while a thread hands over
    (measured on 2 cores: 3 beats 2 and 4; `benchmarks/offline.py`)."""
    return (os.cpu_count() or 1) + 1


def _detect(pipeline: Pipeline, frame: Frame, region_xyxy: np.ndarray | None) -> tuple[sv.Detections, float]:
    start = time.perf_counter()
    detections = pipeline.detect(frame.image, region_xyxy)
    return detections, (time.perf_counter() - start) * 1e3


def run_offline(source: Source, pipeline: Pipeline, sink: Sink,
                on_frame: Callable[[int], None] | None = None, in_flight: int | None = None) -> RunOutcome:
    """Every frame of `source` through `pipeline` into `sink` (written in the writer thread, in order), with
    `in_flight` frames in the detector at once (default: `default_in_flight()`). The sink is not closed here: the caller
    closes it, knowing how the run ended."""
    depth = in_flight or default_in_flight()
    if depth < 1:
        raise ValueError(f"in_flight must be at least 1, got {depth}")
    frames_q: queue.Queue[Frame | object] = queue.Queue(maxsize=QUEUE_SIZE)  # overflow: block
    results_q: queue.Queue[Result | object] = queue.Queue(maxsize=QUEUE_SIZE)  # overflow: block
    stop = threading.Event()
    errors: list[BaseException] = []
    keyframes, gate = offline_schedule(pipeline, source.fps)

    def decode() -> None:
        try:
            for frame in source:
                if not _put(frames_q, frame, stop):
                    return
        except BaseException as exc:
            errors.append(exc)
        finally:
            _put(frames_q, _END, stop)

    def write() -> None:
        try:
            while True:
                item = results_q.get()
                if item is _END:
                    return
                assert isinstance(item, Result)
                sink.write(item)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    decoder = threading.Thread(target=decode, name=f"decode-{source.source_id}", daemon=True)
    encoder = threading.Thread(target=write, name=f"encode-{source.source_id}", daemon=True)
    detectors = ThreadPoolExecutor(depth, thread_name_prefix=f"detect-{source.source_id}") if depth > 1 else None
    # each frame in flight: its detector run (None between keyframes), whether motion gating held it still, and the
    # part of the frame the run saw (None: all of it)
    pending: deque[tuple[Frame, Future[tuple[sv.Detections, float]] | None, bool, np.ndarray | None]] = deque()
    start = time.perf_counter()
    processed = 0
    detector_runs = 0
    interrupted = False
    decoder.start()
    encoder.start()

    def finish_oldest() -> bool:
        """Track and annotate the oldest frame in flight (its detections waited for) and hand it to the writer."""
        nonlocal processed
        frame, detecting, still, region = pending.popleft()
        if detecting is None:
            result = pipeline.apply(frame, None, still=still)
        else:
            detections, detect_ms = detecting.result()
            result = pipeline.apply(frame, detections, None, {"detect": detect_ms}, region_xyxy=region)
        if not _put(results_q, result, stop):
            return False
        processed += 1
        if on_frame is not None:
            on_frame(processed)
        return True

    try:
        ended = False
        while not stop.is_set() and not ended:
            try:
                item = frames_q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                ended = True
            else:
                assert isinstance(item, Frame)
                detecting = None
                due = keyframes.is_keyframe(item.index)
                run = gate.decide(item.image, item.pts, due) if gate is not None else due
                region = gate.region_xyxy if gate is not None and run else None
                if run:
                    detector_runs += 1
                    detecting = detectors.submit(_detect, pipeline, item, region) if detectors is not None \
                        else _done(_detect(pipeline, item, region))
                pending.append((item, detecting, gate is not None and gate.still, region))
            while pending and (ended or len(pending) >= depth):
                if not finish_oldest():
                    ended = True
                    pending.clear()
                    break
    except KeyboardInterrupt:
        interrupted = True
        log.warning("%s: interrupted after %d frames; finishing the output", source.source_id, processed)
    except BaseException as exc:
        errors.append(exc)
    finally:
        if detectors is not None:
            detectors.shutdown(wait=True, cancel_futures=True)
        source.close()
        while encoder.is_alive():  # the writer drains everything before the end marker
            try:
                results_q.put(_END, timeout=0.1)
                break
            except queue.Full:
                continue
        encoder.join()
        stop.set()
        decoder.join(timeout=5)
    if errors:
        raise errors[0]
    return RunOutcome(processed, time.perf_counter() - start, interrupted, detector_runs,
                      gate.gated if gate is not None else 0, gate.cropped if gate is not None else 0)
