"""`synthetic:` - a test pattern of moving shapes whose boxes are known exactly, frame by frame.

Parameters go in a query string: `synthetic:?w=640&h=360&fps=30&frames=300&objects=3&seed=0&realtime=0`
(`frames=0` never ends; `realtime=1` paces frames at `fps`, like a camera; `enter=K` makes the
last object appear only from frame K on, to test objects that enter later).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import cv2
import numpy as np
import supervision as sv

from streamvis.errors import SourceError
from streamvis.frame import Frame
from streamvis.sources.base import Source

SHAPES = ("square", "circle")
_PALETTE = ((40, 40, 230), (60, 200, 60), (230, 120, 30), (0, 200, 230), (200, 60, 200), (230, 230, 230))


def _int(options: dict[str, str], key: str, default: int, low: int = 0) -> int:
    raw = options.get(key, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SourceError(f"synthetic source: {key} must be an integer, got '{raw}'") from None
    if value < low:
        raise SourceError(f"synthetic source: {key} must be >= {low}, got {value}")
    return value


class SyntheticSource(Source):
    """Shapes bouncing over a gradient; `boxes_at(index)` gives the exact ground truth."""

    def __init__(self, uri: str, options: dict[str, str], source_id: str | None = None) -> None:
        realtime = options.get("realtime", "0") in {"1", "true", "yes"}
        super().__init__(uri, source_id or uri, live=realtime)
        self.width = _int(options, "w", 640, 16)
        self.height = _int(options, "h", 360, 16)
        self.fps = fps = float(_int(options, "fps", 30, 1))
        self._frame_s = 1 / fps
        self.total = _int(options, "frames", 300)
        self.enter_at = _int(options, "enter", 0)
        count = _int(options, "objects", 3, 1)
        rng = np.random.default_rng(_int(options, "seed", 0))
        side = min(self.width, self.height)
        self._size = rng.integers(side // 8, side // 4, size=count)
        self._start = np.stack(
            [rng.uniform(0, self.width - self._size), rng.uniform(0, self.height - self._size)], axis=1
        )
        self._velocity = rng.uniform(-1, 1, size=(count, 2)) * side / 60  # px per frame
        self._shape = [SHAPES[i % len(SHAPES)] for i in range(count)]
        self.report.expected_frames = self.total or None
        yy, xx = np.mgrid[0 : self.height, 0 : self.width]
        self._background = np.dstack(
            [(xx * 80 // self.width + 40), (yy * 80 // self.height + 40), np.full_like(xx, 60)]
        ).astype(np.uint8)

    def _positions(self, index: int) -> np.ndarray:
        """Top-left corners at frame `index`: linear motion reflected at the borders."""
        span = np.stack([self.width - self._size, self.height - self._size], axis=1).astype(float)
        raw = self._start + self._velocity * index
        period = 2 * span
        folded = np.mod(raw, period)
        return np.where(folded > span, period - folded, folded)

    def visible(self, index: int) -> np.ndarray:
        mask = np.ones(len(self._size), dtype=bool)
        if self.enter_at:
            mask[-1] = index >= self.enter_at
        return mask

    def boxes_at(self, index: int) -> sv.Detections:
        """Ground-truth boxes (xyxy pixels) with `class_name` and a stable `object_id` in `data`."""
        top_left = self._positions(index)
        xyxy = np.concatenate([top_left, top_left + self._size[:, None]], axis=1)
        keep = self.visible(index)
        names = np.array(self._shape)
        return sv.Detections(
            xyxy=xyxy[keep].astype(np.float32),
            class_id=np.array([SHAPES.index(n) for n in names[keep]], dtype=int),
            data={"class_name": names[keep], "object_id": np.arange(len(self._size))[keep]},
        )

    def render(self, index: int) -> np.ndarray:
        image = self._background.copy()
        boxes = self.boxes_at(index)
        for (x1, y1, x2, y2), name, oid in zip(
            boxes.xyxy.astype(int), boxes.data["class_name"], boxes.data["object_id"], strict=True
        ):
            color = _PALETTE[int(oid) % len(_PALETTE)]
            if name == "square":
                cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), color, thickness=-1)
            else:
                center = ((x1 + x2) // 2, (y1 + y2) // 2)
                cv2.circle(image, center, (x2 - x1) // 2, color, thickness=-1, lineType=cv2.LINE_AA)
        return image

    def frames(self) -> Iterator[Frame]:
        start = time.monotonic()
        index = 0
        while not self.closed and (self.total == 0 or index < self.total):
            if self.live:
                delay = start + index * self._frame_s - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
            t0 = time.perf_counter()
            image = self.render(index)
            decode_ms = (time.perf_counter() - t0) * 1000
            self.report.frames += 1
            yield Frame(image, index, index * self._frame_s, self.source_id, decode_ms)
            index += 1
