"""When to speak: a periodic floor, change triggers, a minimum gap, hazards first, no repetition.

`observe()` is called on every frame with what the detector and tracker see; it returns a `Trigger` when a
description is due. `accept()` is called with the text a narrator produced and says whether to speak it (a
text that says what the last one said is dropped). Pure logic on stream time: testable without a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import supervision as sv

from streamvis.narration.scene import scene_distance, scene_signature, text_similarity


@dataclass(frozen=True, slots=True)
class Trigger:
    reason: str  # start, periodic, scene, new:<class>, lost:<class>, hazard:<class>, ask
    urgent: bool = False  # hazards and questions jump the queue and the minimum gap


@dataclass
class PolicySettings:
    period_s: float = 20.0  # speak at least this often (0: never on a timer)
    min_gap_s: float = 4.0  # at least this long between two descriptions (hazards: `hazard_gap_s`)
    hazard_gap_s: float = 1.0
    trigger_classes: frozenset[str] | None = None  # new / lost tracks of these classes trigger (None: all)
    hazard_classes: frozenset[str] = frozenset()
    scene_change: float = 0.35  # histogram distance that counts as a new scene (0: off)
    lost_after_s: float = 1.5  # a track unseen this long is lost (brief misses are not news)
    dedup_similarity: float = 0.75  # a text this similar to the last one spoken is not spoken


@dataclass
class NarrationPolicy:
    settings: PolicySettings
    last_spoken_s: float | None = None
    last_triggered_s: float | None = None
    last_text: str = ""
    _signature: np.ndarray | None = None
    _tracks: dict[object, tuple[str, float]] = field(default_factory=dict)  # key -> (class, last seen)

    def _keys(self, detections: sv.Detections) -> dict[object, str]:
        """Track ids when the tracker gives them; else '<class>#<n>' so a second person still counts as new."""
        names = [str(n) for n in detections.data.get("class_name", [])]
        wanted = self.settings.trigger_classes
        keys: dict[object, str] = {}
        counts: dict[str, int] = {}
        for i, name in enumerate(names):
            if wanted is not None and name not in wanted and name not in self.settings.hazard_classes:
                continue
            track = detections.tracker_id[i] if detections.tracker_id is not None else None
            if track is not None and int(track) >= 0:
                keys[int(track)] = name
            else:
                counts[name] = counts.get(name, 0) + 1
                keys[f"{name}#{counts[name]}"] = name
        return keys

    def observe(self, t: float, detections: sv.Detections, image_bgr: np.ndarray) -> Trigger | None:
        s = self.settings
        now = self._keys(detections)
        new = [name for key, name in now.items() if key not in self._tracks]
        for key, name in now.items():
            self._tracks[key] = (name, t)
        lost = [name for key, (name, seen) in list(self._tracks.items()) if t - seen > s.lost_after_s]
        for key in [k for k, (_, seen) in self._tracks.items() if t - seen > s.lost_after_s]:
            del self._tracks[key]
        signature = scene_signature(image_bgr)
        hazard = next((n for n in new if n in s.hazard_classes), None)
        since = None if self.last_triggered_s is None else t - self.last_triggered_s
        trigger: Trigger | None = None
        if hazard is not None and (since is None or since >= s.hazard_gap_s):
            trigger = Trigger(f"hazard:{hazard}", urgent=True)
        elif since is not None and since < s.min_gap_s:
            return None
        elif self.last_triggered_s is None:
            trigger = Trigger("start")
        elif new:
            trigger = Trigger(f"new:{new[0]}")
        elif lost:
            trigger = Trigger(f"lost:{lost[0]}")
        elif s.scene_change > 0 and self._signature is not None \
                and scene_distance(signature, self._signature) >= s.scene_change:
            trigger = Trigger("scene")
        elif s.period_s > 0 and t - (self.last_spoken_s if self.last_spoken_s is not None
                                     else self.last_triggered_s) >= s.period_s:
            trigger = Trigger("periodic")  # measured from the last thing said (or tried, if nothing was)
        if trigger is not None:
            self.last_triggered_s = t
            self._signature = signature
        return trigger

    def accept(self, t: float, text: str, trigger: Trigger) -> bool:
        """Speak `text`? Not when empty, nor (unless asked for) when it repeats the last description."""
        text = text.strip()
        if not text:
            return False
        if trigger.reason != "ask" and self.last_text and \
                text_similarity(text, self.last_text) >= self.settings.dedup_similarity:
            return False
        self.last_text, self.last_spoken_s = text, t
        return True
