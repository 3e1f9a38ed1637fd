"""One pipeline per source: detector on keyframes; SAM 2 propagation or a tracker carries objects between
keyframes; masks, boxes and labels burnt in."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import supervision as sv

from streamvis.annotate import Annotator
from streamvis.config import PipelineConfig
from streamvis.errors import ConfigError
from streamvis.frame import Frame, Result
from streamvis.keyframes import OfflineKeyframes
from streamvis.models import Models
from streamvis.narration.narrator import Narrator
from streamvis.serialize import empty_detections
from streamvis.tracking import Tracker


@dataclass(slots=True)
class PipelineStats:
    frames: int = 0
    keyframes: int = 0
    stage_ms: dict[str, float] = field(default_factory=dict)  # total ms per stage

    def add(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stage_ms[stage] = self.stage_ms.get(stage, 0.0) + ms


NarrationMode = Literal["inline", "worker"]


class Pipeline:
    """Turns one stream's frames into results, with models shared by every stream (`Models`) and state of its
    own (tracker, segmenter session, narration policy). Not thread-safe: one pipeline per source, called from one
    thread.

    `narration`: "inline" describes a frame in `apply` when the policy says so (offline: deterministic);
    "worker" leaves it to the caller (live: `LiveNarrator` runs descriptions in a worker, never in the loop).
    """

    def __init__(self, config: PipelineConfig, models: Models, fps: float | None = None,
                 narration: NarrationMode = "inline") -> None:
        self.config = config
        self.models = models
        self.detector = models.detector
        self.narration = narration
        self.narrator = Narrator(config.narrator, models.narrator) if models.narrator is not None else None
        self._caption: tuple[str, float] | None = None  # latest description and the pts it shows until
        self.segmenter = models.segmenter.new_stream() if models.segmenter is not None else None
        # A video segmenter gives object ids itself (SAM 2 memory); otherwise a tracker does.
        propagating = self.segmenter is not None and self.segmenter.propagates
        self.tracker = Tracker(config.tracker, fps or 30.0) if config.tracker.enabled and not propagating else None
        self.annotator = Annotator(config.annotator)
        self.keyframes = OfflineKeyframes(config.detector.every_n_frames)
        self.stats = PipelineStats()
        self._carried = empty_detections()
        class_filter = config.detector.class_filter
        unknown = sorted(set(class_filter or []) - set(self.detector.class_names))
        if unknown and not self.detector.open_vocabulary:
            raise ConfigError(f"detector.class_filter: {', '.join(unknown)} not among the model's classes")
        self._keep_classes = set(class_filter) if class_filter else None

    def _filter(self, detections: sv.Detections) -> sv.Detections:
        if self._keep_classes is None or not len(detections):
            return detections
        keep = np.isin(detections.data["class_name"], list(self._keep_classes))
        kept = detections[keep]
        assert isinstance(kept, sv.Detections)
        return kept

    def detect(self, image_bgr: np.ndarray) -> sv.Detections:
        """The detector plus the class filter: what a keyframe feeds to `apply` (thread-safe for one caller)."""
        return self._filter(self.detector.detect(image_bgr))

    def process(self, frame: Frame, caption: str | None = None) -> Result:
        """Offline: detect on keyframes (`OfflineKeyframes`), then `apply`. Every frame is annotated."""
        if not self.keyframes.is_keyframe(frame.index):
            return self.apply(frame, None, caption)
        t0 = time.perf_counter()
        detections = self.detect(frame.image)
        return self.apply(frame, detections, caption, {"detect": (time.perf_counter() - t0) * 1e3})

    def apply(self, frame: Frame, detections: sv.Detections | None, caption: str | None = None,
              timings: dict[str, float] | None = None) -> Result:
        """Segment or track, then annotate. `detections` is a keyframe's (maybe from an earlier frame, live),
        None between keyframes: a video segmenter then propagates masks, otherwise the last boxes are carried."""
        timings = dict(timings or {})
        keyframe = detections is not None
        if keyframe:
            self.stats.keyframes += 1
        if self.segmenter is not None and self.segmenter.propagates:
            t0 = time.perf_counter()
            out = self.segmenter.update(frame.image, detections)
            timings["segment"] = (time.perf_counter() - t0) * 1e3
        elif detections is not None:
            out = detections
            if self.tracker is not None:
                t0 = time.perf_counter()
                out = self.tracker.update(out, frame.pts)
                timings["track"] = (time.perf_counter() - t0) * 1e3
            if self.segmenter is not None:
                t0 = time.perf_counter()
                out = self.segmenter.update(frame.image, out)
                timings["segment"] = (time.perf_counter() - t0) * 1e3
            self._carried = out
        else:
            out = self._carried
        description = None
        if self.narrator is not None and self.narration == "inline":
            t0 = time.perf_counter()
            description = self.narrator.step(frame, out)
            timings["narrate"] = (time.perf_counter() - t0) * 1e3
            if description is not None:
                self.show_caption(description.text, frame.pts)
        if caption is None and self._caption is not None and frame.pts <= self._caption[1]:
            caption = self._caption[0]
        t0 = time.perf_counter()
        annotated = self.annotator.annotate(frame.image, out, caption)
        timings["annotate"] = (time.perf_counter() - t0) * 1e3
        self.stats.frames += 1
        self.stats.add(timings)
        return Result(frame, out, keyframe, annotated, description, timings_ms=timings)

    def show_caption(self, text: str, pts: float) -> None:
        """Burn `text` into the frames from `pts` for as long as it takes to read (at least 3 s)."""
        self._caption = (text, pts + max(3.0, len(text.split()) / 2.5))
