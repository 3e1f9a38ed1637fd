"""Offline processing of one source: no frame dropped, deterministic output, as fast as the machine allows.

Three threads: decode (source) -> inference + annotation (caller's thread) -> sinks (writer: encode, events).
Both queues are bounded and block when full (offline never drops). An error in any thread stops the
run and is raised in the caller; Ctrl-C stops it too. Either way the MP4 is finalised and playable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamvis.frame import Frame, Result
from streamvis.pipeline import Pipeline
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


def _put(target: queue.Queue[Any], item: object, stop: threading.Event) -> bool:
    """Blocking put that gives up when `stop` is set (the consumer has gone)."""
    while not stop.is_set():
        try:
            target.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def run_offline(source: Source, pipeline: Pipeline, sink: Sink,
                on_frame: Callable[[int], None] | None = None) -> RunOutcome:
    """Every frame of `source` through `pipeline` into `sink` (written in the writer thread, in order). The sink
    is not closed here: the caller closes it, knowing how the run ended."""
    frames_q: queue.Queue[Frame | object] = queue.Queue(maxsize=QUEUE_SIZE)  # overflow: block
    results_q: queue.Queue[Result | object] = queue.Queue(maxsize=QUEUE_SIZE)  # overflow: block
    stop = threading.Event()
    errors: list[BaseException] = []

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
    start = time.perf_counter()
    processed = 0
    interrupted = False
    decoder.start()
    encoder.start()
    try:
        while not stop.is_set():
            try:
                item = frames_q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                break
            assert isinstance(item, Frame)
            if not _put(results_q, pipeline.process(item), stop):
                break
            processed += 1
            if on_frame is not None:
                on_frame(processed)
    except KeyboardInterrupt:
        interrupted = True
        log.warning("%s: interrupted after %d frames; finishing the output", source.source_id, processed)
    except BaseException as exc:
        errors.append(exc)
    finally:
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
    return RunOutcome(processed, time.perf_counter() - start, interrupted)
