"""The narrator: the speaking policy plus a backend. `step()` per frame offline; `LiveNarrator` in a worker."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import supervision as sv

from streamvis.config import AnyNarratorConfig
from streamvis.frame import Frame, SceneDescription
from streamvis.narration.backends import NarratorBackend
from streamvis.narration.policy import NarrationPolicy, PolicySettings, Trigger
from streamvis.narration.scene import describe_objects, seen_objects

log = logging.getLogger(__name__)


def policy_settings(config: AnyNarratorConfig) -> PolicySettings:
    return PolicySettings(period_s=config.period_s, min_gap_s=config.min_gap_s,
                          trigger_classes=frozenset(config.trigger_classes) if config.trigger_classes else None,
                          hazard_classes=frozenset(config.hazard_classes), scene_change=config.scene_change,
                          dedup_similarity=config.dedup_similarity)


class Narrator:
    """Decides when to speak and what to say about a frame and its detections."""

    def __init__(self, config: AnyNarratorConfig, backend: NarratorBackend) -> None:
        self.config = config
        self.backend = backend  # the loaded model, shared by every stream; the policy is this stream's own
        self.policy = NarrationPolicy(policy_settings(config))
        self.hazards = frozenset(config.hazard_classes)
        self.lock = threading.Lock()  # the policy is read by the pipeline thread and written by workers

    def objects_text(self, frame: Frame, detections: sv.Detections) -> str:
        return describe_objects(seen_objects(detections, frame.resolution_wh, self.hazards))

    def describe(self, frame: Frame, detections: sv.Detections, trigger: Trigger,
                 question: str | None = None) -> SceneDescription | None:
        """Run the backend; None when the text is empty or repeats the last one (questions always answer)."""
        start = time.perf_counter()
        objects = self.objects_text(frame, detections)
        text = self.backend.describe(frame.image, objects, question)
        if not self.backend.grounded_prompt and self.config.objects_in_text and objects and question is None:
            text = f"{objects} {text}" if trigger.urgent else f"{text}. {objects}" if text else objects
        if question is not None and not text:
            text = f"I cannot tell. I see: {objects}" if objects else "I cannot tell, and I see no objects."
        text = " ".join(text.replace("..", ".").split())
        with self.lock:
            accepted = self.policy.accept(frame.pts, text, trigger)
        if not accepted:
            log.debug("narration suppressed (%s): %s", trigger.reason, text)
            return None
        return SceneDescription(text, frame.index, frame.pts, self.backend.name, trigger.reason,
                                (time.perf_counter() - start) * 1e3, question)

    def step(self, frame: Frame, detections: sv.Detections) -> SceneDescription | None:
        """Offline: describe this frame now if the policy says a description is due."""
        with self.lock:
            trigger = self.policy.observe(frame.pts, detections, frame.image)
        return self.describe(frame, detections, trigger) if trigger is not None else None


class LiveNarrator:
    """Live: the policy runs per frame in the pipeline thread; descriptions run in a worker, one at a time.

    Questions do not wait behind a description: they have their own worker, so an answer takes one model call.
    """

    def __init__(self, narrator: Narrator) -> None:
        self.narrator = narrator
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="narrate")
        self._ask_worker = ThreadPoolExecutor(1, thread_name_prefix="ask")
        self._pending: Future[SceneDescription | None] | None = None

    def step(self, frame: Frame, detections: sv.Detections) -> Future[SceneDescription | None] | None:
        if self._pending is not None and not self._pending.done():
            return None  # one description at a time; the policy waits until the narrator is free
        with self.narrator.lock:
            trigger = self.narrator.policy.observe(frame.pts, detections, frame.image)
        if trigger is None:
            return None
        self._pending = self._worker.submit(self.narrator.describe, frame, detections, trigger)
        return self._pending

    def ask(self, frame: Frame, detections: sv.Detections, question: str) -> Future[SceneDescription | None]:
        return self._ask_worker.submit(self.narrator.describe, frame, detections, Trigger("ask", urgent=True),
                                       question)

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
        self._ask_worker.shutdown(wait=False, cancel_futures=True)
