"""Live mode: one pipeline per source, the newest frame wins, the detector runs whenever it is free.

Three threads per stream:
- the reader decodes into a one-slot mailbox; a frame the pipeline has not taken yet is replaced by a newer
  one and counted as dropped (files are paced at their own frame rate, as a camera would be);
- the pipeline thread takes the newest frame, applies the latest keyframe result (or carries objects with the
  tracker / SAM 2 propagation), annotates, and publishes the `Result` to subscribers;
- the detector worker runs keyframes: one is started when the previous finished and at least
  `every_n_frames` frames have passed. A fast detector's result is applied to the frame it was run on
  (the pipeline waits up to `inline_wait_ms`); a slow one's is applied when it arrives, to the current frame,
  unless it is older than `staleness_s`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import supervision as sv

from streamvis.config import PipelineConfig
from streamvis.errors import StreamvisError
from streamvis.frame import Frame, Result, SceneDescription
from streamvis.live.stats import StreamStats
from streamvis.models import Models
from streamvis.narration.narrator import LiveNarrator
from streamvis.pipeline import Pipeline
from streamvis.sources import Source

log = logging.getLogger(__name__)

Subscriber = Callable[[Result], None]


@dataclass(slots=True)
class LiveSettings:
    inline_wait_ms: float = 40.0  # wait this long for a keyframe result before carrying objects instead
    staleness_s: float = 1.0  # a keyframe result older than this (in stream time) is discarded
    pace_files: bool = True  # play files at their frame rate, like a camera
    loop_files: bool = False  # start a file again when it ends


class LiveStream:
    """A source, its pipeline and its subscribers. `start()` / `stop()`; subscribers are called per result."""

    def __init__(self, stream_id: str, open_source: Callable[[], Source], config: PipelineConfig, models: Models,
                 settings: LiveSettings | None = None) -> None:
        self.stream_id = stream_id
        self._open_source = open_source
        # descriptions run in the narrator's worker (`LiveNarrator`), never in this stream's loop
        self.pipeline = pipeline = Pipeline(config, models, narration="worker")
        self.settings = settings or LiveSettings()
        self.stats = StreamStats(stream_id)
        self.stats.providers.update(models.providers())
        self.status = "starting"  # starting, live, ended, failed: <reason>
        self.resolution_wh: tuple[int, int] | None = None
        self.latest: Result | None = None
        self._subscribers: list[Subscriber] = []
        self._status_listeners: list[Callable[[str], None]] = []
        self._lock = threading.Lock()
        self._mailbox: Frame | None = None
        self._mailbox_ready = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._source: Source | None = None
        self._detector = ThreadPoolExecutor(1, thread_name_prefix=f"detect-{stream_id}")
        self._threads: list[threading.Thread] = []
        self.detector_calls = 0
        self.narrator = LiveNarrator(pipeline.narrator) if pipeline.narrator is not None else None
        self._narration_listeners: list[Callable[[SceneDescription], None]] = []
        self.decoded_at = [0.0] * 256  # monotonic time each recent frame index was decoded (index % 256)

    # -- subscription -------------------------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def on_status(self, callback: Callable[[str], None]) -> None:
        self._status_listeners.append(callback)

    def on_narration(self, callback: Callable[[SceneDescription], None]) -> None:
        self._narration_listeners.append(callback)

    def _narrated(self, future: Future[SceneDescription | None]) -> None:
        try:
            description = future.result()
        except Exception:
            log.exception("stream %s: narration failed", self.stream_id)
            return
        if description is None:
            return
        self.stats.stage("narrate", description.latency_ms)
        self.pipeline.show_caption(description.text, description.pts)
        for listener in list(self._narration_listeners):
            try:
                listener(description)
            except Exception:
                log.exception("narration listener failed")

    def ask(self, question: str) -> Future[SceneDescription | None]:
        """Answer a question about the newest frame (a narration event too); raises if nothing to look at."""
        latest = self.latest
        if self.narrator is None or latest is None:
            raise RuntimeError("no narrator runs on this stream" if self.narrator is None else "no frame yet")
        future = self.narrator.ask(latest.frame, latest.detections, question)
        future.add_done_callback(self._narrated)
        return future

    def _set_status(self, status: str) -> None:
        self.status = status
        for listener in list(self._status_listeners):
            try:
                listener(status)
            except Exception:  # a listener's failure must not stop the stream
                log.exception("status listener failed")

    # -- threads --------------------------------------------------------------------------------------------
    def start(self) -> None:
        for target, name in ((self._read, "read"), (self._run, "pipeline")):
            thread = threading.Thread(target=target, name=f"{name}-{self.stream_id}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._mailbox_ready.notify_all()
        if self._source is not None:
            self._source.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._detector.shutdown(wait=False, cancel_futures=True)
        if self.narrator is not None:
            self.narrator.close()

    def _read(self) -> None:
        index_offset, pts_offset, last_pts = 0, 0.0, 0.0  # a looped file continues indices and timestamps
        try:
            while not self._stop.is_set():
                self._source = source = self._open_source()
                self._set_status("live")
                start_wall, start_pts = time.monotonic(), None
                step = 1.0 / (source.fps or 30.0)
                for frame in source:
                    if self._stop.is_set():
                        return
                    if self.settings.pace_files and not source.live:
                        start_pts = frame.pts if start_pts is None else start_pts
                        delay = (frame.pts - start_pts) - (time.monotonic() - start_wall)
                        if delay > 0:
                            time.sleep(delay)
                    frame.index += index_offset
                    frame.pts += pts_offset
                    last_pts = frame.pts
                    self.stats.frames_in += 1
                    self.stats.fps_in.tick()
                    self.decoded_at[frame.index % 256] = time.monotonic()
                    with self._lock:
                        if self._mailbox is not None:
                            self.stats.dropped += 1
                        self._mailbox = frame
                        self._mailbox_ready.notify()
                source.close()
                if not self.settings.loop_files or source.live or self.stats.frames_in == index_offset:
                    break  # not looping (or an empty file: looping it would spin)
                index_offset = self.stats.frames_in
                pts_offset = last_pts + step
            if not self._stop.is_set():
                self._set_status("ended")
        except StreamvisError as exc:
            log.error("stream %s: %s", self.stream_id, exc)
            self._set_status(f"failed: {exc}")
        except Exception as exc:
            log.exception("stream %s: reader failed", self.stream_id)
            self._set_status(f"failed: unexpected {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._mailbox_ready.notify_all()

    def _next_frame(self) -> Frame | None:
        with self._lock:
            while self._mailbox is None:
                if self._stop.is_set() or self.status == "ended" or self.status.startswith("failed"):
                    return None
                self._mailbox_ready.wait(timeout=0.5)
            frame, self._mailbox = self._mailbox, None
            return frame

    def _detect(self, frame: Frame) -> tuple[Frame, sv.Detections, float]:
        start = time.perf_counter()
        detections = self.pipeline.detect(frame.image)
        self.detector_calls += 1
        return frame, detections, (time.perf_counter() - start) * 1e3

    def _run(self) -> None:
        pending: Future[tuple[Frame, sv.Detections, float]] | None = None
        last_keyframe_index: int | None = None
        every = self.pipeline.config.detector.every_n_frames
        try:
            while (frame := self._next_frame()) is not None:
                start = time.perf_counter()
                due = last_keyframe_index is None or frame.index - last_keyframe_index >= every
                submitted = pending is None and due
                if submitted:
                    pending = self._detector.submit(self._detect, frame)
                    last_keyframe_index = frame.index
                keyframe = None
                timings: dict[str, float] = {}
                if pending is not None:
                    try:
                        detected_on, detections, detect_ms = pending.result(
                            timeout=self.settings.inline_wait_ms / 1e3 if submitted else 0)
                    except TimeoutError:
                        pass
                    except Exception:  # one failed detector run must not end the stream: carry on, retry
                        log.exception("stream %s: detector failed on frame %d", self.stream_id, frame.index)
                        pending = None
                    else:
                        pending = None
                        timings["detect"] = detect_ms
                        if frame.pts - detected_on.pts <= self.settings.staleness_s:
                            keyframe = detections
                            self.stats.keyframes += 1
                            self.stats.keyframe_rate.tick()
                        else:
                            self.stats.stale_results += 1
                result = self.pipeline.apply(frame, keyframe, timings=timings)
                if self.narrator is not None:
                    pending_description = self.narrator.step(frame, result.detections)
                    if pending_description is not None:
                        pending_description.add_done_callback(self._narrated)
                for stage, ms in result.timings_ms.items():
                    self.stats.stage(stage, ms)
                self.stats.stage("pipeline", (time.perf_counter() - start) * 1e3)
                self.resolution_wh = frame.resolution_wh
                self.latest = result
                self.stats.frames_out += 1
                self.stats.fps_out.tick()
                with self._lock:
                    subscribers = list(self._subscribers)
                for callback in subscribers:
                    try:
                        callback(result)
                    except Exception:  # one subscriber's failure must not stop the stream
                        log.exception("stream %s: subscriber failed", self.stream_id)
        except Exception as exc:
            log.exception("stream %s: pipeline failed", self.stream_id)
            self._set_status(f"failed: unexpected {type(exc).__name__}: {exc}")
