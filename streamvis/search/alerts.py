"""Alerts by words: a new track whose view matches a sentence ("a person at the door") above a threshold fires an
alert, once per track and sentence; a sentence fires again only `cooldown_s` after its last alert on a stream,
and at most `max_per_minute` alerts fire on a stream in any minute. Pure logic on stream time; `serve --alert`
checks each track as soon as it has been followed `embedder.min_track_s`.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from streamvis.frame import SceneDescription

MINUTE_S = 60.0


@dataclass(frozen=True, slots=True)
class Alert:
    stream: str
    track: int
    class_name: str
    text: str  # the sentence it matched
    similarity: float
    t_s: float  # stream time of the view that matched

    def spoken(self) -> SceneDescription:
        """The alert as narration: said at once, like a hazard, at every verbosity."""
        text = f"Alert: {self.text}."
        return SceneDescription(text, -1, self.t_s, "alerts", "alert", urgent=True,
                                texts=dict.fromkeys(("brief", "normal", "detailed"), text), tracks=(self.track,))

    def to_json(self) -> dict[str, object]:
        return {"type": "alert", "stream": self.stream, "track": self.track, "class": self.class_name,
                "text": self.text, "similarity": round(self.similarity, 4), "pts": round(self.t_s, 3)}


class AlertRules:
    """The sentences (`vectors`: their unit embeddings, one row each) and what has fired, per stream."""

    def __init__(self, texts: list[str], vectors: np.ndarray, threshold: float, cooldown_s: float = 60.0,
                 max_per_minute: int = 6) -> None:
        if len(texts) != len(vectors):
            raise ValueError("one vector per alert sentence")
        self.texts, self.vectors = texts, np.asarray(vectors, np.float32)
        self.threshold, self.cooldown_s, self.max_per_minute = threshold, cooldown_s, max_per_minute
        self._fired: set[tuple[str, int, int]] = set()  # (stream, track, sentence)
        self._last: dict[tuple[str, int], float] = {}  # (stream, sentence) -> stream time of its last alert
        self._recent: dict[str, deque[float]] = {}  # stream -> times of its alerts in the last minute
        self._lock = threading.Lock()  # every stream's index writer checks its tracks here

    def check(self, stream: str, track: int, class_name: str, t_s: float, view: np.ndarray) -> list[Alert]:
        """The alerts a track's view fires now (best match first); thread-safe."""
        similarities = self.vectors @ np.asarray(view, np.float32).reshape(-1)
        with self._lock:
            return self._fire(stream, track, class_name, t_s, similarities)

    def _fire(self, stream: str, track: int, class_name: str, t_s: float, similarities: np.ndarray) -> list[Alert]:
        recent = self._recent.setdefault(stream, deque())
        while recent and t_s - recent[0] >= MINUTE_S:
            recent.popleft()
        fired = []
        for i in np.argsort(-similarities):
            similarity = float(similarities[i])
            key = (stream, track, int(i))
            if similarity < self.threshold or key in self._fired:
                continue
            last = self._last.get((stream, int(i)))
            if last is not None and t_s - last < self.cooldown_s:
                continue
            if len(recent) >= self.max_per_minute:
                break
            self._fired.add(key)
            self._last[(stream, int(i))] = t_s
            recent.append(t_s)
            fired.append(Alert(stream, track, class_name, self.texts[int(i)], similarity, t_s))
        return fired
