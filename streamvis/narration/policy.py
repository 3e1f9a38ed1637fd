"""When to speak, by news: an utterance says what is new (an arrival, a departure, something approaching, a hazard,
a new scene), most important first; a periodic summary only when it holds something the listener has not heard;
a minimum gap and a per-minute cap, which hazards and answers skip; nothing said twice.

`observe()` is called on every frame with what the detector and tracker see; it feeds the scene model and returns
a `Trigger` (with the utterance, composed then) when something is due. `accept()` is called with the caption a
model produced, if any, and says whether the result is worth speaking: it is when it states a fact not stated
before (facts, not word sets: "person ahead" about a new person is news), or a caption unlike the last one.
Pure logic on stream time: testable without a model.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import supervision as sv

from streamvis.narration.scene import scene_distance, scene_signature, text_similarity
from streamvis.narration.scene_model import SceneModel, SceneSettings
from streamvis.narration.wording import Fact, Utterance, news, summary

MINUTE_S = 60.0


@dataclass(frozen=True)
class Trigger:
    reason: str  # start, periodic, scene, enter:<class>, exit:<class>, approach:<class>, hazard:<class>, ask
    urgent: bool = False  # hazards and questions jump the queue, the minimum gap and the per-minute cap
    utterance: Utterance | None = None  # the scene model's words, composed when the trigger fired


@dataclass
class PolicySettings:
    verbosity: str = "normal"
    period_s: float = 20.0  # a summary at least this often, when it says something new (0: never)
    min_gap_s: float = 2.0  # at least this long between two utterances (hazards: `hazard_gap_s`)
    hazard_gap_s: float = 1.0
    max_per_minute: int = 12  # non-urgent utterances in any 60 s
    scene_change: float = 0.35  # histogram distance that counts as a new scene (0: off)
    dedup_similarity: float = 0.75  # a caption this similar to the last one spoken is not news
    captions: bool = False  # the narrator adds a model's caption (then a start or a new scene is worth a look)
    scene: SceneSettings = field(default_factory=SceneSettings)


@dataclass
class NarrationPolicy:
    settings: PolicySettings
    scene: SceneModel = field(init=False)
    last_spoken_s: float | None = None
    last_triggered_s: float | None = None
    last_caption: str = ""
    last_summary: frozenset[Fact] = frozenset()  # what the listener knows is in view, as facts
    _spoken: deque[float] = field(default_factory=deque)  # when non-urgent utterances were spoken, last minute
    _signature: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.scene = SceneModel(self.settings.scene)

    def _capped(self, t: float) -> bool:
        while self._spoken and t - self._spoken[0] >= MINUTE_S:
            self._spoken.popleft()
        return len(self._spoken) >= self.settings.max_per_minute

    def _news_trigger(self) -> Trigger | None:
        """The pending news as one trigger; news with nothing to say at this verbosity (departures when brief)
        is let go."""
        events = self.scene.take_news()
        utterance = news(events, self.scene.present())
        if not utterance.text(self.settings.verbosity):
            return None
        first = events[0]
        return Trigger(f"{first.kind}:{first.name}", urgent=utterance.urgent, utterance=utterance)

    def _summary_trigger(self, reason: str) -> Trigger | None:
        utterance = summary(self.scene.present())
        if utterance.facts == self.last_summary and not (self.settings.captions and reason != "periodic"):
            return None  # nothing the listener has not heard (a caption model may still see a new scene)
        if not utterance.text(self.settings.verbosity) and not self.settings.captions:
            return None
        return Trigger(reason, utterance=utterance)

    def observe(self, t: float, detections: sv.Detections, image_bgr: np.ndarray) -> Trigger | None:
        s = self.settings
        self.scene.update(t, detections, (image_bgr.shape[1], image_bgr.shape[0]))
        signature = scene_signature(image_bgr) if s.scene_change > 0 else None
        since = None if self.last_triggered_s is None else t - self.last_triggered_s
        trigger: Trigger | None = None
        if self.scene.has_hazard_news and (since is None or since >= s.hazard_gap_s):
            trigger = self._news_trigger()
        elif (since is not None and since < s.min_gap_s) or self._capped(t):
            return None
        elif self.scene.has_news:
            trigger = self._news_trigger()
        elif self.last_triggered_s is None and s.captions:
            trigger = self._summary_trigger("start")
        elif signature is not None and self._signature is not None \
                and scene_distance(signature, self._signature) >= s.scene_change:
            trigger = self._summary_trigger("scene")
        elif s.period_s > 0 and t - (self.last_spoken_s if self.last_spoken_s is not None
                                     else self.last_triggered_s if self.last_triggered_s is not None
                                     else 0.0) >= s.period_s:
            trigger = self._summary_trigger("periodic")
        if signature is not None and (trigger is not None or self._signature is None):
            self._signature = signature
        if trigger is not None:
            self.last_triggered_s = t
        return trigger

    def observe_hazards(self, t: float, detections: sv.Detections, image_bgr: np.ndarray) -> Trigger | None:
        """While a model's description is on its way (a slow server, a caption on a CPU): keep the scene model
        current and say a hazard now, without waiting for it; other news waits for the next `observe`."""
        self.scene.update(t, detections, (image_bgr.shape[1], image_bgr.shape[0]))
        since = None if self.last_triggered_s is None else t - self.last_triggered_s
        if not self.scene.has_hazard_news or (since is not None and since < self.settings.hazard_gap_s):
            return None
        trigger = self._news_trigger()
        if trigger is not None:
            self.last_triggered_s = t
        return trigger

    def accept(self, t: float, trigger: Trigger, caption: str = "") -> bool:
        """Speak what `trigger` brought (with `caption`, a model's words, if any)? Yes for a question; else only
        when it states a fact not stated before or a caption unlike the last."""
        utterance = trigger.utterance
        words = utterance.text(self.settings.verbosity) if utterance is not None else ""
        caption = caption.strip()
        if trigger.reason == "ask":
            fresh = bool(words or caption)
        else:
            # news facts are new by construction (one per object and event); a summary is new when it differs
            # from what the listener knows
            new_facts = utterance is not None and bool(words) and (
                "summary" not in utterance.kinds or utterance.facts != self.last_summary)
            new_caption = bool(caption) and not (
                self.last_caption and text_similarity(caption, self.last_caption) >= self.settings.dedup_similarity)
            fresh = new_facts or new_caption
        if not fresh:
            return False
        if utterance is not None and words:  # the listener now knows what is in view
            self.last_summary = summary(self.scene.present()).facts
        if caption:
            self.last_caption = caption
        self.last_spoken_s = t
        if not trigger.urgent:
            self._spoken.append(t)
        return True
