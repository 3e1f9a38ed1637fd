"""Prompts from people watching a live stream: a click (a point, positive or negative), a box, or words, on the
frame that was on their screen; or the removal of an object. Parsed and checked here (one-line errors that say
what was expected), then applied by the stream's pipeline between two frames (`Pipeline.apply_prompt`).

A prompt arrives as JSON, over `POST /prompt` or a viewer's data channel:

    {"type": "point", "frame_index": 120, "x": 640, "y": 360, "label": 1}        # label 0: a negative click
    {"type": "point", "frame_index": 120, "points": [[640, 360, 1], [700, 380, 0]], "object_id": 3}  # refine 3
    {"type": "box", "frame_index": 120, "xyxy": [100, 80, 300, 400]}
    {"type": "text", "text": "red car. dog"}                                         # grounding on the next frame
    {"type": "remove", "object_id": 3}

Coordinates are pixels of the frame the viewer saw (`resolution_wh` of its frame message).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from streamvis.errors import StreamvisError

PromptKind = Literal["point", "box", "text", "remove"]
KINDS: tuple[str, ...] = ("point", "box", "text", "remove")
MAX_POINTS = 16
MAX_TEXT_CHARS = 200
MAX_PHRASES = 8
MIN_BOX_PX = 2.0


class PromptError(StreamvisError):
    """A prompt that cannot be applied: malformed, out of the frame, or not possible on this stream."""


@dataclass(frozen=True, slots=True)
class Prompt:
    kind: PromptKind
    frame_index: int | None = None  # the stream's frame the viewer saw; None: the newest
    points_xy: tuple[tuple[float, float], ...] = ()  # frame pixels
    labels: tuple[int, ...] = ()  # 1: this is the object, 0: this is not
    box_xyxy: tuple[float, float, float, float] | None = None
    text: str = ""
    object_id: int | None = None  # refine or remove this object (None: a new object)
    request_id: str = ""  # echoed in the result, so a client can pair them


@dataclass(slots=True)
class PromptResult:
    """What a prompt did: the objects it added or changed, and the frame it was applied on."""

    request_id: str
    object_ids: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    frame_index: int | None = None  # the stream frame the prompt was applied on
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"type": "prompt_result", "id": self.request_id, "ok": True, "object_ids": self.object_ids,
                "removed": self.removed, "frame_index": self.frame_index, "note": self.note}


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PromptError(f"prompt: {name} must be a finite number, got {value!r}")
    return float(value)


def _int(value: Any, name: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise PromptError(f"prompt: {name} must be an integer >= {low}, got {value!r}")
    return value


def _inside(x: float, y: float, resolution_wh: tuple[int, int], name: str) -> None:
    width, height = resolution_wh
    if not (0 <= x <= width and 0 <= y <= height):
        raise PromptError(f"prompt: {name} ({x:g}, {y:g}) is outside the {width}x{height} frame")


def _points(data: dict[str, Any], resolution_wh: tuple[int, int]) -> tuple[tuple[tuple[float, float], ...],
                                                                             tuple[int, ...]]:
    raw = data.get("points")
    if raw is None:
        raw = [[data.get("x"), data.get("y"), data.get("label", 1)]]
    if not isinstance(raw, list) or not raw or len(raw) > MAX_POINTS:
        raise PromptError(f"prompt: points must be a list of 1 to {MAX_POINTS} [x, y, label] entries")
    points, labels = [], []
    for i, entry in enumerate(raw):
        if not isinstance(entry, (list, tuple)) or len(entry) not in (2, 3):
            raise PromptError(f"prompt: points[{i}] must be [x, y] or [x, y, label], got {entry!r}")
        x, y = _number(entry[0], f"points[{i}].x"), _number(entry[1], f"points[{i}].y")
        label = entry[2] if len(entry) == 3 else 1
        if label not in (0, 1) or isinstance(label, bool):
            raise PromptError(f"prompt: points[{i}] label must be 1 (the object) or 0 (not the object), got "
                              f"{label!r}")
        _inside(x, y, resolution_wh, f"point {i}")
        points.append((x, y))
        labels.append(int(label))
    if 1 not in labels and data.get("object_id") is None:
        raise PromptError("prompt: a new object needs at least one positive point (label 1)")
    return tuple(points), tuple(labels)


def parse_prompt(data: Any, resolution_wh: tuple[int, int] | None) -> Prompt:
    """A prompt from its JSON form, checked against the stream's frame size (None: no frame yet)."""
    if not isinstance(data, dict):
        raise PromptError("prompt: expected a JSON object with a \"type\"")
    kind = data.get("type")
    if kind not in KINDS:
        raise PromptError(f"prompt: type must be one of {', '.join(KINDS)}, got {kind!r}")
    request_id = str(data.get("id", ""))[:64]
    frame_index = data.get("frame_index")
    if frame_index is not None:
        frame_index = _int(frame_index, "frame_index")
    object_id = data.get("object_id")
    if object_id is not None:
        object_id = _int(object_id, "object_id", 1)
    if kind == "remove":
        if object_id is None:
            raise PromptError("prompt: remove needs the object_id to remove")
        return Prompt("remove", frame_index, object_id=object_id, request_id=request_id)
    if kind == "text":
        text = data.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_CHARS:
            raise PromptError(f"prompt: text must be a non-empty string of at most {MAX_TEXT_CHARS} characters")
        phrases = [p for p in text.replace(";", ".").split(".") if p.strip()]
        if len(phrases) > MAX_PHRASES:
            raise PromptError(f"prompt: at most {MAX_PHRASES} phrases (separated by full stops), got "
                              f"{len(phrases)}")
        return Prompt("text", frame_index, text=" ".join(text.split()), request_id=request_id)
    if resolution_wh is None:
        raise PromptError("prompt: the stream has no frame yet to point at")
    if kind == "box":
        xyxy = data.get("xyxy")
        if not isinstance(xyxy, (list, tuple)) or len(xyxy) != 4:
            raise PromptError(f"prompt: xyxy must be [x1, y1, x2, y2] in frame pixels, got {xyxy!r}")
        x1, y1, x2, y2 = (_number(v, "xyxy") for v in xyxy)
        _inside(x1, y1, resolution_wh, "box corner")
        _inside(x2, y2, resolution_wh, "box corner")
        if x2 - x1 < MIN_BOX_PX or y2 - y1 < MIN_BOX_PX:
            raise PromptError(f"prompt: the box must be at least {MIN_BOX_PX:g} pixels wide and high, with x2 > x1 "
                              f"and y2 > y1, got {[x1, y1, x2, y2]}")
        return Prompt("box", frame_index, box_xyxy=(x1, y1, x2, y2), object_id=object_id, request_id=request_id)
    points, labels = _points(data, resolution_wh)
    return Prompt("point", frame_index, points_xy=points, labels=labels, object_id=object_id,
                  request_id=request_id)


class RateLimiter:
    """A token bucket per client: `rate_per_s` prompts a second on average, bursts of up to `burst`."""

    def __init__(self, rate_per_s: float = 5.0, burst: int = 10) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last refill)
        self._lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
            allowed = tokens >= 1.0
            self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > 4096:  # forget the clients idle longest
                for key in sorted(self._buckets, key=lambda k: self._buckets[k][1])[:1024]:
                    del self._buckets[key]
            return allowed
