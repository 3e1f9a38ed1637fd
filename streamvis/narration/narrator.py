"""The narrator: the speaking policy plus a backend. `step()` per frame offline; `LiveNarrator` in a worker."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import supervision as sv

from streamvis.config import AnyNarratorConfig, Florence2NarratorConfig
from streamvis.frame import Frame, SceneDescription, TextReading
from streamvis.narration.backends import NarratorBackend
from streamvis.narration.policy import NarrationPolicy, PolicySettings, Trigger
from streamvis.narration.scene_model import SceneSettings
from streamvis.narration.wording import LEVELS, spoken, summary

log = logging.getLogger(__name__)


def policy_settings(config: AnyNarratorConfig, captions: bool) -> PolicySettings:
    classes = frozenset(config.trigger_classes) if config.trigger_classes else None
    return PolicySettings(verbosity=config.verbosity, period_s=config.period_s, min_gap_s=config.min_gap_s,
                          max_per_minute=config.max_per_minute, scene_change=config.scene_change,
                          dedup_similarity=config.dedup_similarity, captions=captions,
                          scene=SceneSettings(classes=classes, hazard_classes=frozenset(config.hazard_classes)))


_ABOUT_TEXT = re.compile(r"\b(read|reads|say|says|said|text|written|write|writing|sign|signs|label|number|"
                         r"words?|letters?)\b", re.IGNORECASE)


def asks_about_text(question: str) -> bool:
    """Whether a question asks what is written ("what does the sign say?", "read it to me")."""
    return bool(_ABOUT_TEXT.search(question))


def text_answer(texts: Sequence[TextReading]) -> str:
    """The text in view as an answer: "The stop sign ahead says STOP. On the left: EXIT." (reading order)."""
    if not texts:
        return "I see no text I can read."
    parts = []
    for reading in texts:
        where = "ahead" if reading.side == "ahead" else f"on the {reading.side}"
        said = reading.text.strip().rstrip(".")
        parts.append(f"The {spoken(reading.object)} {where} says {said}." if reading.object
                     else f"{where[0].upper()}{where[1:]}: {said}.")
    return " ".join(parts)


class Narrator:
    """Decides when to speak (the policy, on the scene model) and what to say: the scene model's words, and the
    backend's caption or answer when it has a model."""

    def __init__(self, config: AnyNarratorConfig, backend: NarratorBackend) -> None:
        self.config = config
        self.backend = backend  # the loaded model, shared by every stream; the policy is this stream's own
        self.policy = NarrationPolicy(policy_settings(config, captions=backend.captions))
        self.lock = threading.Lock()  # the policy is read by the pipeline thread and written by workers
        self.texts_in_view: Callable[[], Sequence[TextReading]] | None = None  # a reader's, to answer from

    def hear_texts(self, t: float, news: Sequence[TextReading]) -> None:
        """Text a reader found (new, changed or back): news for the policy, said after hazards and near arrivals."""
        with self.lock:
            for reading in news:
                self.policy.scene.hear_text(t, reading.text_id, reading.text, reading.object, reading.side,
                                            reading.distance)

    def describe(self, frame: Frame, detections: sv.Detections, trigger: Trigger,
                 question: str | None = None, with_caption: bool = True) -> SceneDescription | None:
        """Run the backend; None when there is nothing new to say (questions always answer). `with_caption`
        False: the scene model's words alone, no model call (a hazard that cannot wait for one)."""
        start = time.perf_counter()
        level = self.config.verbosity
        with self.lock:
            in_view = summary(self.policy.scene.present())
        utterance = trigger.utterance or in_view
        with_words = self.config.objects_in_text or not self.backend.captions
        words = utterance.text(level) if with_words else ""
        reads = question is not None and self.texts_in_view is not None and asks_about_text(question)
        if reads and not self.backend.captions:  # no model to ask: the reader's text answers
            assert self.texts_in_view is not None
            caption = text_answer(self.texts_in_view())
        else:
            caption = self.backend.describe(frame.image, in_view.text("detailed"), question) if with_caption else ""
            if reads and not caption:  # the model had nothing to say
                assert self.texts_in_view is not None
                caption = text_answer(self.texts_in_view())
        if question is not None and not caption:
            caption = f"I cannot tell. {in_view.text('normal')}" if not in_view.empty else \
                "I cannot tell, and I see no objects."
        # text read aloud (Florence-2 <OCR>) comes before everything but hazards and near arrivals
        text_first = isinstance(self.config, Florence2NarratorConfig) and self.config.task == "<OCR>" \
            and not utterance.leading

        def joined(news_words: str) -> str:
            parts = (caption, news_words) if text_first else (news_words, caption)
            return " ".join(t for t in parts if t)

        texts = {lvl: joined(utterance.text(lvl) if with_words else "") for lvl in LEVELS} if question is None \
            else {lvl: caption for lvl in LEVELS}
        text = joined(words) if question is None else caption
        text = " ".join(text.replace("..", ".").split())
        with self.lock:
            accepted = self.policy.accept(frame.pts, trigger, caption)
        if not accepted or not text:
            log.debug("narration suppressed (%s): %s", trigger.reason, text)
            return None
        return SceneDescription(text, frame.index, frame.pts, self.backend.name, trigger.reason,
                                (time.perf_counter() - start) * 1e3, question, urgent=trigger.urgent,
                                texts=texts, tracks=tuple(int(k) for k in utterance.tracks if isinstance(k, int)))

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
        self.min_gap_s = 0.0  # descriptions start at least this far apart in stream time (a latency budget's knob)
        self._last_started_pts = -float("inf")

    def step(self, frame: Frame, detections: sv.Detections) -> Future[SceneDescription | None] | None:
        if self._pending is not None and not self._pending.done():
            # one description at a time; a hazard is said at once, in the scene model's words, without waiting
            with self.narrator.lock:
                urgent = self.narrator.policy.observe_hazards(frame.pts, detections, frame.image)
            if urgent is None:
                return None
            done: Future[SceneDescription | None] = Future()
            done.set_result(self.narrator.describe(frame, detections, urgent, with_caption=False))
            return done
        if frame.pts - self._last_started_pts < self.min_gap_s:
            return None  # the policy waits too: what it would say is still news at the next chance
        with self.narrator.lock:
            trigger = self.narrator.policy.observe(frame.pts, detections, frame.image)
        if trigger is None:
            return None
        self._last_started_pts = frame.pts
        self._pending = self._worker.submit(self.narrator.describe, frame, detections, trigger)
        return self._pending

    def ask(self, frame: Frame, detections: sv.Detections, question: str) -> Future[SceneDescription | None]:
        return self._ask_worker.submit(self.narrator.describe, frame, detections, Trigger("ask", urgent=True),
                                       question)

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
        self._ask_worker.shutdown(wait=False, cancel_futures=True)
