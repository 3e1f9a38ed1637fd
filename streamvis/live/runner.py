"""Live mode: one pipeline per source, the newest frame wins, the detector runs whenever it is free.

Three threads per stream, and workers beside them:
- the reader decodes into a newest-wins slot (`ingest`): a frame the pipeline has not taken yet is replaced by
  a newer one and counted as dropped. Files are played at their own frame rate, as a camera would deliver them
  (`PacedSource`), and again when they end with `loop_files` (`LoopedSource`);
- the pipeline thread takes the newest frame, applies the latest keyframe result (or carries objects with the
  tracker / SAM 2 propagation), annotates, and writes the `Result` to the stream's sinks (viewers, recorder);
- the detector worker runs keyframes (`live.keyframing`: when one is due, where motion lets it, which result goes
  with which frame).
Under a latency budget, a video segmenter propagates in a worker of its own (`live.propagation`). Descriptions
(narration) and text reading run in their own workers (`LiveNarrator`, `LiveReader`), never in the pipeline
thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from functools import partial
from typing import TYPE_CHECKING

import supervision as sv

from streamvis.config import PipelineConfig
from streamvis.errors import StreamvisError
from streamvis.frame import Frame, Result, SceneDescription, TextReading
from streamvis.live.budget import BudgetPlan, LatencyBudget, ladder_for
from streamvis.live.decoding import LiveDecoding
from streamvis.live.keyframing import LiveDetection
from streamvis.live.prompting import LivePrompts
from streamvis.live.propagation import LivePropagation
from streamvis.live.settings import LiveSettings
from streamvis.live.stats import StreamStats
from streamvis.narration.backends import ReportsHealth
from streamvis.narration.narrator import LiveNarrator
from streamvis.pipeline.loading import Models
from streamvis.pipeline.step import Pipeline
from streamvis.prompts import Prompt, PromptResult
from streamvis.reading.reader import LiveReader
from streamvis.sinks import Sink
from streamvis.slot import NewestSlot
from streamvis.sources import Source
from streamvis.sources.base import PacketTap
from streamvis.sources.wrappers import LoopedSource, PacedSource

if TYPE_CHECKING:
    from pathlib import Path

    from streamvis.search.alerts import Alert
    from streamvis.search.collect import MomentCollector
    from streamvis.search.live import LiveIndex

log = logging.getLogger(__name__)


def _always() -> bool:
    return True


def _never() -> bool:
    return False  # the index crops the decoded frame: it needs no annotated image


def _call_each(listeners: list[Callable[..., None]], *args: object) -> None:
    for listener in list(listeners):
        try:
            listener(*args)
        except Exception:  # a listener's failure must not stop the stream
            log.exception("listener %r failed", listener)


class LiveStream:
    """A source, its pipeline and its sinks. `start()` / `stop()`; every result goes to every sink."""

    def __init__(self, stream_id: str, open_source: Callable[[], Source], config: PipelineConfig, models: Models,
                 settings: LiveSettings | None = None) -> None:
        self.stream_id = stream_id
        self._open_source = open_source
        # descriptions run in the narrator's worker (`LiveNarrator`), never in this stream's loop
        self.pipeline = pipeline = Pipeline(config, models, narration="worker", interactive=True)
        self.settings = settings or LiveSettings()
        self.stats = StreamStats(stream_id)
        self.stats.providers.update(models.providers())
        self.status = "starting"  # starting, live, ended, failed: <reason>
        self.resolution_wh: tuple[int, int] | None = None
        self.latest: Result | None = None
        self._sinks: list[Sink] = []
        # beside each sink, whether it needs the next result's annotated image (nobody watching: nothing is drawn)
        self._wants_annotated: list[Callable[[], bool]] = []
        self._status_listeners: list[Callable[[str], None]] = []
        self._narration_listeners: list[Callable[[SceneDescription], None]] = []
        self._alert_listeners: list[Callable[[Alert], None]] = []
        self._lock = threading.Lock()
        self._ingest: NewestSlot[Frame] = NewestSlot("ingest", self.stats.count_drop)
        self.stats.count_drop("ingest", 0)
        self._stop = threading.Event()
        self._source: Source | None = None
        self._packet_tap: PacketTap | None = None
        # keyframes: when, where motion lets them, the detector's worker (`live.keyframing`)
        self.detection = LiveDetection(stream_id, pipeline, config, self.stats, self.settings, self.priority)
        self._threads: list[threading.Thread] = []
        self.narrator = LiveNarrator(pipeline.narrator) if pipeline.narrator is not None else None
        # text is read in the reader's worker (`LiveReader`), one look at a time, never in this stream's loop
        self.reader = LiveReader(pipeline.reader) if pipeline.reader is not None else None
        self.moments: MomentCollector | None = None  # `serve --index`: this stream's indexing (`index_into`)
        self.plan = BudgetPlan()  # what the latency budget gives up now (`streamvis.live.budget`)
        self.budget = self._budget(config)
        # under a budget, a video segmenter propagates in a worker of its own, never holding the frame loop
        self._propagation = LivePropagation(pipeline, stream_id) if self.budget is not None \
            and pipeline.segmenter is not None and pipeline.segmenter.propagates else None
        pipeline.propagation_elsewhere = self._propagation is not None
        # what it decodes: only the frames others refer to while nothing needs every frame (`live.decoding`)
        self.decoding = LiveDecoding(stream_id, config, self.stats,
                                     lambda: self.stats.viewers > 0 or self._annotate_next(),
                                     self.detection.schedule.slots)
        # prompts wait there for the pipeline thread, which applies them between two frames
        self._prompts = LivePrompts(stream_id, pipeline, self.detection.worker, lambda: self.latest)

    def _budget(self, config: PipelineConfig) -> LatencyBudget | None:
        latency = config.latency
        if latency.budget_ms is None:
            return None
        propagates = self.pipeline.segmenter is not None and self.pipeline.segmenter.propagates
        # the narration step spaces out what runs a model beside the frames: a caption model, the text reader, the
        # index's embeddings
        models_for_narration = (self.narrator is not None and config.narrator.type != "objects") \
            or self.reader is not None or self.settings.moments is not None
        ladder = ladder_for(propagates, narrates=models_for_narration)
        return LatencyBudget(latency.budget_ms, self.stats, ladder, latency.recover_fraction, latency.recover_s,
                             latency.hold_s, latency.max_changes_per_minute, board=self.settings.budget_board,
                             watched=lambda: self.stats.viewers > 0, moving=lambda: not self.detection.still)

    def priority(self) -> int:
        """Its keyframes' place in a detector queue shared by streams: watched before unwatched, and among each, a
        stream over its latency budget first (none is starved: the queue serves a lane passed over three times)."""
        over = self.budget is not None and self.budget.over
        return 2 * (self.stats.viewers > 0) + over

    def narrator_health(self) -> dict[str, object] | None:
        """The state of a narrator that can fail on its own (a model server elsewhere), for `/streams`."""
        backend = self.pipeline.narrator.backend if self.pipeline.narrator is not None else None
        return backend.health() if isinstance(backend, ReportsHealth) else None

    def _apply_plan(self, plan: BudgetPlan) -> None:
        """The latency budget changed its plan: the knobs it names move (in the pipeline thread)."""
        base = self.pipeline.config.detector
        self.detection.space_out(plan, base.every_n_frames, base.fps)
        self.pipeline.propagate_every = plan.propagate_every
        if self.narrator is not None:
            self.narrator.min_gap_s = plan.narration_gap_s
        if self.reader is not None:
            self.reader.min_gap_s = plan.narration_gap_s
        if self.moments is not None:
            self.moments.min_gap_s = plan.narration_gap_s
        self.plan = plan

    # -- sinks and listeners -----------------------------------------------------------------------------------
    def add_sink(self, sink: Sink, wants_annotated: Callable[[], bool] | None = None) -> None:
        """`sink.write(result)` for every result from now on (in the pipeline thread); closed by `stop()`.
        `wants_annotated`: whether the sink needs the next result's annotated image (default: always); a frame no
        sink wants drawn is not annotated (`Result.annotated` is None)."""
        with self._lock:
            self._sinks.append(sink)
            self._wants_annotated.append(wants_annotated or _always)

    def index_into(self, moments: LiveIndex, recording: Path | None = None, source: str = "") -> None:
        """Index this stream's results into `moments` (a sink in a thread of its own, paced by the latency
        budget's narration step); `recording`: where its moments are cut from."""
        collector, sink = moments.sink(self.stream_id, on_drop=self.stats.count_drop, on_alert=self.raise_alert,
                                       recording=recording, source=source)
        self.moments = collector
        self.add_sink(sink, _never)

    def remove_sink(self, sink: Sink) -> None:
        with self._lock:
            for i, added in enumerate(self._sinks):
                if added is sink:
                    del self._sinks[i], self._wants_annotated[i]
                    break

    def _annotate_next(self) -> bool:
        with self._lock:
            wanted = list(self._wants_annotated)
        return any(wants() for wants in wanted)

    def on_status(self, callback: Callable[[str], None]) -> None:
        self._status_listeners.append(callback)

    def _read_texts(self, pts: float, future: Future[list[TextReading]]) -> None:
        """A look is done (in the reader's worker): its news goes to the narrator; the next result carries it."""
        try:
            news = future.result()
        except CancelledError:
            return
        except Exception:
            log.exception("stream %s: reading text failed", self.stream_id)
            return
        if self.pipeline.reader is not None:
            self.stats.stage("read", self.pipeline.reader.last_ms)
        self.pipeline.hear(pts, news)

    def on_alert(self, callback: Callable[[Alert], None]) -> None:
        self._alert_listeners.append(callback)

    def raise_alert(self, alert: Alert) -> None:
        """An alert by words fired on this stream (`serve --alert`; from its index writer's thread): said at once,
        like a hazard, and handed to the alert listeners (viewers' data channels, a webhook)."""
        log.info("stream %s: alert '%s' (track %d, %s, similarity %.3f)", self.stream_id, alert.text, alert.track,
                 alert.class_name, alert.similarity)
        spoken = alert.spoken()
        _call_each(self._narration_listeners, spoken)
        _call_each(self._alert_listeners, alert)

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
        _call_each(self._narration_listeners, description)

    def ask(self, question: str) -> Future[SceneDescription | None]:
        """Answer a question about the newest frame (a narration event too); raises if nothing to look at."""
        latest = self.latest
        if self.narrator is None or latest is None:
            raise RuntimeError("no narrator runs on this stream" if self.narrator is None else "no frame yet")
        future = self.narrator.ask(latest.frame, latest.detections, question)
        future.add_done_callback(self._narrated)
        return future

    # -- prompts ---------------------------------------------------------------------------------------------
    def prompt(self, prompt: Prompt) -> Future[PromptResult]:
        """Queue a viewer's prompt (`LivePrompts.submit`): applied between two frames, the future says how."""
        return self._prompts.submit(prompt)

    def _set_status(self, status: str) -> None:
        self.status = status
        _call_each(self._status_listeners, status)

    # -- threads --------------------------------------------------------------------------------------------
    def start(self) -> None:
        for target, name in ((self._read, "read"), (self._run, "pipeline")):
            thread = threading.Thread(target=target, name=f"{name}-{self.stream_id}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._ingest.close()
        if self._source is not None:
            self._source.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self.detection.close()
        if self._propagation is not None:
            self._propagation.close()
        if self.narrator is not None:
            self.narrator.close()
        if self.reader is not None:
            self.reader.close()
        if self.budget is not None:
            self.budget.close()
        with self._lock:
            sinks, self._sinks, self._wants_annotated = self._sinks, [], []
        for sink in sinks:
            try:
                sink.close()
            except Exception:
                log.exception("stream %s: closing %r failed", self.stream_id, sink)

    def _played(self, source: Source) -> Source:
        """A file as a camera would deliver it: at its frame rate, and again when it ends if looping."""
        if source.live:
            return source
        if self.settings.loop_files:
            source = LoopedSource(source, self._open_source)
        if self.settings.pace_files:
            source = PacedSource(source)
        return source

    def add_packet_tap(self, tap: PacketTap) -> None:
        """Give `tap` the packets of this stream's source as they are demuxed (a recording that copies them), or
        tell it the source has none to give (only a live source FFmpeg demuxes has). Call before `start()`."""
        self._packet_tap = tap

    def _opened(self) -> Source:
        source = self._open_source()
        tap = self._packet_tap
        if tap is not None:
            if source.copies_packets and source.live:
                source.packet_tap = tap
            else:
                tap.uncopyable("not a live camera or stream" if source.copies_packets else "a source of frames")
        return source

    def _read(self) -> None:
        try:
            self._source = source = self._played(self._opened())
            if source.slot is not None:  # frames pushed to the source (WHIP) wait in a slot of their own
                source.slot.on_drop = self.stats.count_drop
                self.stats.count_drop(source.slot.name, 0)  # listed in /metrics from the start
            self._set_status("live")
            for frame in source:
                if self._stop.is_set():
                    return
                self.stats.frames_in += 1
                self.stats.fps_in.tick()
                self._ingest.put(frame)
            source.close()
            if not self._stop.is_set():
                self._set_status("ended")
        except StreamvisError as exc:
            log.error("stream %s: %s", self.stream_id, exc)
            self._set_status(f"failed: {exc}")
        except Exception as exc:
            log.exception("stream %s: reader failed", self.stream_id)
            self._set_status(f"failed: unexpected {type(exc).__name__}: {exc}")
        finally:
            self._ingest.close()  # the pipeline takes what is left, then ends

    def _next_frame(self) -> Frame | None:
        while not self._stop.is_set():
            frame = self._ingest.take(timeout=0.5)
            if frame is not None or self._ingest.closed:
                return frame
        return None

    def _write(self, result: Result) -> None:
        with self._lock:
            sinks = list(self._sinks)
        for sink in sinks:
            try:
                sink.write(result)
            except Exception:  # one sink's failure must not stop the stream
                log.exception("stream %s: sink %r failed", self.stream_id, sink)

    def _run(self) -> None:
        try:
            while (frame := self._next_frame()) is not None:
                drained: tuple[sv.Detections | None, float | None] = (None, None)
                if self._propagation is not None and self._prompts.waiting:
                    drained = self._propagation.drain()  # a prompt changes the session: none may run meanwhile
                self._prompts.apply_waiting()
                start = time.perf_counter()
                keyframe, region, detect_ms = self.detection.step(frame, self.plan)
                if self.detection.missed and self._source is not None:
                    self._source.pass_next_frame = True  # under max_fps: the keyframe waits one frame, not a slot
                timings: dict[str, float] = {} if detect_ms is None else {"detect": detect_ms}
                propagated, segment_ms = drained
                if self._propagation is not None:
                    wait_s = self.settings.inline_wait_ms / 1e3 if self.plan.wait_for_detector else 0.0
                    newest, ms = self._propagation.step(frame, keyframe, wait_s, self.pipeline.propagate_every)
                    if newest is not None:
                        propagated, segment_ms = newest, ms
                if segment_ms is not None:
                    timings["segment"] = segment_ms
                result = self.pipeline.apply(frame, keyframe, timings=timings, still=self.detection.still,
                                             annotate=self._annotate_next(), region_xyxy=region,
                                             propagated=propagated)
                if keyframe is not None:
                    self.detection.saw(result.detections)
                if self.reader is not None:
                    pending_look = self.reader.step(frame, result.detections)
                    if pending_look is not None:
                        pending_look.add_done_callback(partial(self._read_texts, frame.pts))
                if self.narrator is not None:
                    pending_description = self.narrator.step(frame, result.detections)
                    if pending_description is not None:
                        pending_description.add_done_callback(self._narrated)
                for stage, ms in result.timings_ms.items():
                    self.stats.stage(stage, ms)
                self.stats.stage("pipeline", (time.perf_counter() - start) * 1e3)
                self.stats.stage("frame_to_result", (time.monotonic() - frame.decoded_at) * 1e3)
                if self.budget is not None and (plan := self.budget.step()) is not None:
                    self._apply_plan(plan)
                self.resolution_wh = frame.resolution_wh
                self.latest = result
                self.stats.frames_out += 1
                self.stats.fps_out.tick()
                self._write(result)
                self.decoding.step(self._source, time.monotonic())
        except Exception as exc:
            log.exception("stream %s: pipeline failed", self.stream_id)
            self._set_status(f"failed: unexpected {type(exc).__name__}: {exc}")
