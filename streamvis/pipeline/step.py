"""One pipeline per source: detector on keyframes; SAM 2 propagation or a tracker carries objects between
keyframes; masks, boxes and labels burnt in."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import supervision as sv

from streamvis.config import Florence2Config, PipelineConfig, RapidOcrReaderConfig
from streamvis.detection import NoDetector, detect_crop
from streamvis.errors import ConfigError
from streamvis.frame import Frame, Result, TextReading
from streamvis.narration.narrator import Narrator
from streamvis.pipeline.annotate import Annotator
from streamvis.pipeline.keyframes import OfflineKeyframes, offline_every_n
from streamvis.pipeline.loading import Models
from streamvis.pipeline.motion import MotionGate
from streamvis.pipeline.tracking import Tracker
from streamvis.prompts import Prompt, PromptError, PromptResult
from streamvis.reading.reader import StreamReader
from streamvis.segmentation import ConceptSegmenter, Promptable
from streamvis.serialize import empty_detections

if TYPE_CHECKING:
    from streamvis.detection.florence2 import Florence2Detector


@dataclass(slots=True)
class PipelineStats:
    frames: int = 0
    keyframes: int = 0
    stage_ms: dict[str, float] = field(default_factory=dict)  # total ms per stage

    def add(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stage_ms[stage] = self.stage_ms.get(stage, 0.0) + ms


STILL_OVERLAP = 0.3  # a carried box overlapping a new detection by this much (IoU) is that object, seen again


def with_still_objects(found: sv.Detections, carried: sv.Detections, region_xyxy: np.ndarray) -> sv.Detections:
    """A keyframe detected on a part of the frame, plus the objects carried from before whose centres lie
    outside that part (nothing moved there) and that no new detection covers: the whole scene for the tracker."""
    if not len(carried):
        return found
    centres = carried.get_anchors_coordinates(sv.Position.CENTER)
    x1, y1, x2, y2 = region_xyxy
    outside = (centres[:, 0] < x1) | (centres[:, 0] >= x2) | (centres[:, 1] < y1) | (centres[:, 1] >= y2)
    if len(found):
        outside &= sv.box_iou_batch(carried.xyxy, found.xyxy).max(axis=1) < STILL_OVERLAP
    if not outside.any():
        return found
    kept = carried[outside]
    assert isinstance(kept, sv.Detections)
    kept.tracker_id = None
    if not len(found):
        return kept
    return sv.Detections.merge([found, kept])


NarrationMode = Literal["inline", "worker"]
PROMPT_HISTORY_FRAMES = 15  # live: frames kept for prompts on the frame a viewer saw (0.5 s at 30 fps)


def offline_schedule(pipeline: Pipeline, source_fps: float | None) -> tuple[OfflineKeyframes, MotionGate | None]:
    """Offline keyframes (`every_n_frames`, widened by `detector.fps`) and, with `motion.enabled: true`, the
    motion gate (tracks not followed: the output stays the same whatever the machine)."""
    config = pipeline.config
    every_n = offline_every_n(config.detector.every_n_frames, config.detector.fps, source_fps)
    gate = MotionGate(config.motion, follow_tracks=False, crop=pipeline.crops()) if config.motion.on(live=False) \
        else None
    return OfflineKeyframes(every_n), gate


class Pipeline:
    """Turns one stream's frames into results, with models shared by every stream (`Models`) and state of its
    own (tracker, segmenter session, narration policy). Not thread-safe: one pipeline per source, called from one
    thread.

    `narration`: "inline" describes a frame in `apply` when the policy says so (offline: deterministic);
    "worker" leaves it to the caller (live: `LiveNarrator` runs descriptions in a worker, never in the loop).
    `annotate`: False leaves results without an annotated image (a Ray chunk's: its outputs are drawn later).
    """

    def __init__(self, config: PipelineConfig, models: Models, fps: float | None = None,
                 narration: NarrationMode = "inline", interactive: bool = False, annotate: bool = True) -> None:
        self.config = config
        self.models = models
        self.fps = fps
        # a segmenter that finds objects itself (SAM 3, `finds_objects`) runs with no detector
        self.detector = NoDetector() if config.segmenter.finds_objects else models.detector
        self.narration = narration
        self.narrator = Narrator(config.narrator, models.narrator) if models.narrator is not None else None
        # the text in view, read on its own schedule: inline offline, in a worker live (`LiveReader`), like narration
        self.reader = StreamReader(config.reader, models.reader) \
            if models.reader is not None and isinstance(config.reader, RapidOcrReaderConfig) else None
        reader = config.reader if isinstance(config.reader, RapidOcrReaderConfig) else None
        self._speak_texts = reader is not None and reader.speak
        self._burn_texts = reader is not None and reader.burn_in
        if self.narrator is not None and self.reader is not None:
            self.narrator.texts_in_view = self.reader.in_sight
        self._caption: tuple[str, float] | None = None  # latest description and the pts it shows until
        self.segmenter = models.segmenter.new_stream() if models.segmenter is not None else None
        # A video segmenter gives object ids itself (SAM 2 memory); otherwise a tracker does.
        propagating = self.segmenter is not None and self.segmenter.propagates
        self.tracker = Tracker(config.tracker, fps or 30.0) if config.tracker.enabled and not propagating else None
        self.annotator = Annotator(config.annotator) if annotate else None
        self._offline_keyframes: OfflineKeyframes | None = None  # made by `process` (offline) only
        self._gate: MotionGate | None = None  # `process`'s, when motion gating is on offline
        self._held_s = 0.0  # stream time the scene was held still (gated): the tracker's clock skips it
        self.propagate_every = 1  # a video segmenter propagates on one frame in this many (a latency budget's knob)
        # set live under a latency budget: propagation runs in a worker (`live.propagation`), and `apply` takes its
        # newest masks (`propagated`) or carries the last ones; it never runs the video segmenter itself
        self.propagation_elsewhere = False
        self._unpropagated = 0
        self._last_pts: float | None = None
        self.stats = PipelineStats()
        self._carried = empty_detections()
        class_filter = config.detector.class_filter
        unknown = sorted(set(class_filter or []) - set(self.detector.class_names))
        if unknown and not self.detector.open_vocabulary:
            raise ConfigError(f"detector.class_filter: {', '.join(unknown)} not among the model's classes")
        self._keep_classes = set(class_filter) if class_filter else None
        # the newest frames a viewer may still be looking at: (stream frame index, segmenter frame, image)
        self.prompt_history: deque[tuple[int, int, np.ndarray]] = deque(
            maxlen=PROMPT_HISTORY_FRAMES if interactive else 1)
        self._grounders: dict[str, Florence2Detector] = {}  # prompt text -> its grounding detector (newest kept)

    def _filter(self, detections: sv.Detections) -> sv.Detections:
        if self._keep_classes is None or not len(detections):
            return detections
        keep = np.isin(detections.data["class_name"], list(self._keep_classes))
        kept = detections[keep]
        assert isinstance(kept, sv.Detections)
        return kept

    def detect(self, image_bgr: np.ndarray, region_xyxy: np.ndarray | None = None) -> sv.Detections:
        """The detector plus the class filter: what a keyframe feeds to `apply` (thread-safe for one caller). A
        segmenter that finds objects itself (SAM 3) has a `NoDetector`: it finds nothing and runs nothing.
        `region_xyxy`: the detector sees only that part of the frame (motion-region detection); boxes and masks
        come back in the frame's pixels."""
        if region_xyxy is None:
            return self._filter(self.detector.detect(image_bgr))
        x1, y1, x2, y2 = (int(v) for v in region_xyxy)
        found = self._filter(detect_crop(self.detector, np.ascontiguousarray(image_bgr[y1:y2, x1:x2])))
        found.xyxy = found.xyxy + np.array([x1, y1, x1, y1], found.xyxy.dtype)
        if found.mask is not None:
            masks = np.zeros((len(found), *image_bgr.shape[:2]), bool)
            masks[:, y1:y2, x1:x2] = found.mask
            found.mask = masks
        return found

    @property
    def motion_gate(self) -> MotionGate | None:
        """`process`'s motion gate (its counts), when motion gating is on offline."""
        return self._gate

    def crops(self) -> bool:
        """Whether keyframes may be detected on a part of the frame (`motion.crop`): a tracker carries the
        objects outside it (a video segmenter's propagation keeps objects its own way: it sees whole frames)."""
        return self.config.motion.crop and self.tracker is not None and self.segmenter is None

    def process(self, frame: Frame, caption: str | None = None) -> Result:
        """Offline, one frame at a time: detect on keyframes (`OfflineKeyframes`, gated by motion when
        `motion.enabled` is true), then `apply`. (`run_offline` does the same with several frames in the detector
        at once; live streams use `LiveKeyframes`.)"""
        if self._offline_keyframes is None:
            self._offline_keyframes, self._gate = offline_schedule(self, self.fps)
        due = self._offline_keyframes.is_keyframe(frame.index)
        run = self._gate.decide(frame.image, frame.pts, due) if self._gate is not None else due
        still = self._gate is not None and self._gate.still
        if not run:
            return self.apply(frame, None, caption, still=still)
        region = self._gate.region_xyxy if self._gate is not None else None
        t0 = time.perf_counter()
        detections = self.detect(frame.image, region)
        return self.apply(frame, detections, caption, {"detect": (time.perf_counter() - t0) * 1e3},
                          region_xyxy=region)

    def propagate(self, frame: Frame, detections: sv.Detections | None) -> sv.Detections:
        """The video segmenter's masks on `frame` (prompted with a keyframe's `detections`), remembered for the
        prompts a viewer may give on it. Called by `apply`, or by a live stream's propagation worker."""
        assert self.segmenter is not None
        out = self.segmenter.update(frame.image, detections)
        if isinstance(self.segmenter, Promptable):
            self.prompt_history.append((frame.index, self.segmenter.frame_idx, frame.image))
        return out

    def apply(self, frame: Frame, detections: sv.Detections | None, caption: str | None = None,
              timings: dict[str, float] | None = None, still: bool = False, annotate: bool = True,
              region_xyxy: np.ndarray | None = None, propagated: sv.Detections | None = None) -> Result:
        """Segment or track, then annotate. `detections` is a keyframe's (maybe from an earlier frame, live),
        None between keyframes: a video segmenter then propagates masks, otherwise the last boxes are carried.
        `still`: motion gating held the scene since the previous frame; that time does not age the tracks.
        `annotate`: False leaves this result without an annotated image (live: no viewer or recorder wants it).
        `region_xyxy`: the detector saw only this part of the frame; the objects carried outside it stay.
        `propagated`: with `propagation_elsewhere`, the newest masks the propagation worker made (None: the last
        ones are carried)."""
        timings = dict(timings or {})
        keyframe = detections is not None
        if detections is not None and region_xyxy is not None:
            detections = with_still_objects(detections, self._carried, region_xyxy)
        if still and self._last_pts is not None:
            self._held_s += max(0.0, frame.pts - self._last_pts)
        self._last_pts = frame.pts
        if keyframe:
            self.stats.keyframes += 1
        if self.propagation_elsewhere:
            if propagated is not None:
                self._carried = propagated
            out = self._carried
        elif self.segmenter is not None and self.segmenter.propagates and detections is None \
                and self._unpropagated + 1 < self.propagate_every:
            self._unpropagated += 1  # a latency budget spaces propagation out: the masks are carried
            out = self._carried
        elif self.segmenter is not None and self.segmenter.propagates:
            self._unpropagated = 0
            t0 = time.perf_counter()
            out = self._carried = self.propagate(frame, detections)
            timings["segment"] = (time.perf_counter() - t0) * 1e3
        elif detections is not None:
            out = detections
            if self.tracker is not None:
                t0 = time.perf_counter()
                out = self.tracker.update(out, frame.pts - self._held_s, frame.image)
                timings["track"] = (time.perf_counter() - t0) * 1e3
            if self.segmenter is not None:
                t0 = time.perf_counter()
                out = self.segmenter.update(frame.image, out)
                timings["segment"] = (time.perf_counter() - t0) * 1e3
            self._carried = out
        else:
            out = self._carried
        if self.reader is not None and self.narration == "inline" and self.reader.due(frame.pts):
            t0 = time.perf_counter()
            self.hear(frame.pts, self.reader.look(frame, out))
            timings["read"] = (time.perf_counter() - t0) * 1e3
        texts = self.reader.in_view() if self.reader is not None else ()
        description = None
        if self.narrator is not None and self.narration == "inline":
            t0 = time.perf_counter()
            description = self.narrator.step(frame, out)
            timings["narrate"] = (time.perf_counter() - t0) * 1e3
            if description is not None:
                self.show_caption(description.text, frame.pts)
        if caption is None and self._caption is not None and frame.pts <= self._caption[1]:
            caption = self._caption[0]
        annotated = None
        if self.annotator is not None and annotate:
            t0 = time.perf_counter()
            annotated = self.annotator.annotate(frame.image, out, caption,
                                                texts if self._burn_texts else ())
            timings["annotate"] = (time.perf_counter() - t0) * 1e3
        self.stats.frames += 1
        self.stats.add(timings)
        return Result(frame, out, keyframe, annotated, description, timings_ms=timings, texts=texts)

    def hear(self, pts: float, news: list[TextReading]) -> None:
        """Text the reader found is news for the narrator (when `reader.speak`); thread-safe."""
        if self.narrator is not None and news and self._speak_texts:
            self.narrator.hear_texts(pts, news)

    # -- prompts from viewers (`streamvis.prompts`) ------------------------------------------------------------
    @property
    def takes_words(self) -> bool:
        """Whether the segmenter itself finds what words name (SAM 3's concept prompts)."""
        return isinstance(self.segmenter, ConceptSegmenter)

    @property
    def prompts_segmenter(self) -> bool:
        """Whether this pipeline takes clicks and boxes: a video segmenter that can add objects mid-stream."""
        return isinstance(self.segmenter, Promptable)

    def _frame_for(self, frame_index: int | None) -> tuple[int, int, np.ndarray, str]:
        """The kept frame a prompt refers to: the one shown (by its stream index), else the nearest kept."""
        if not self.prompt_history:
            raise PromptError("prompt: no frame has been segmented yet")
        if frame_index is None:
            index, seg_idx, image = self.prompt_history[-1]
            return index, seg_idx, image, ""
        for index, seg_idx, image in reversed(self.prompt_history):
            if index <= frame_index:
                note = "" if index == frame_index else f"frame {frame_index} was not kept; applied on frame {index}"
                return index, seg_idx, image, note
        index, seg_idx, image = self.prompt_history[0]
        return index, seg_idx, image, f"frame {frame_index} is no longer kept; applied on frame {index}"

    def apply_prompt(self, prompt: Prompt, class_name: str = "object", class_id: int = -1) -> PromptResult:
        """A click, a box or a removal, applied between two frames (call from the thread that calls `apply`)."""
        segmenter = self.segmenter
        result = PromptResult(prompt.request_id)
        if prompt.kind == "text":
            if not isinstance(segmenter, ConceptSegmenter):
                raise PromptError("prompt: words are grounded into boxes first (`grounder`); this segmenter takes "
                                  "no words itself")
            result.object_ids = list(segmenter.add_concept(prompt.text))
            result.note = f"finding '{prompt.text}' from the next frame"
            return result
        if not isinstance(segmenter, Promptable):
            if isinstance(segmenter, ConceptSegmenter):
                raise PromptError("prompt: SAM 3 takes words (type: text); clicks, boxes and removals need "
                                  "segmenter.type sam2 or edgetam")
            raise PromptError("prompt: this stream's pipeline has no video segmenter to prompt (segmenter.type: "
                              "sam2, edgetam or sam3)")
        if prompt.kind == "remove":
            assert prompt.object_id is not None
            segmenter.remove(prompt.object_id)
            result.removed.append(prompt.object_id)
            return result
        index, seg_idx, image, result.note = self._frame_for(prompt.frame_index)
        points = np.array(prompt.points_xy, np.float32).reshape(-1, 2) if prompt.points_xy else None
        box = np.array(prompt.box_xyxy, np.float32) if prompt.box_xyxy is not None else None
        object_id = segmenter.prompt(image, seg_idx, points, list(prompt.labels), box, prompt.object_id,
                                     class_name, class_id)
        result.object_ids.append(object_id)
        result.frame_index = index
        return result

    def grounder(self) -> Callable[[np.ndarray, str], sv.Detections] | None:
        """Words to boxes on an image: Florence-2 phrase grounding on the detector's or the narrator's Florence-2,
        or None when this pipeline has neither."""
        from streamvis.detection.florence2 import Florence2Detector

        if self.models.florence is None:
            return None
        model = self.models.florence

        def ground(image_bgr: np.ndarray, text: str) -> sv.Detections:
            detector = self._grounders.pop(text, None)
            if detector is None:
                config = Florence2Config(model=model.name, task="<CAPTION_TO_PHRASE_GROUNDING>", prompt=text,
                                         max_new_tokens=256)
                detector = Florence2Detector(model, config)
            self._grounders[text] = detector
            while len(self._grounders) > 8:
                self._grounders.pop(next(iter(self._grounders)))
            return detector.detect(image_bgr)

        return ground

    def show_caption(self, text: str, pts: float) -> None:
        """Burn `text` into the frames from `pts` for as long as it takes to read (at least 3 s)."""
        self._caption = (text, pts + max(3.0, len(text.split()) / 2.5))
