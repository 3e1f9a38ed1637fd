"""Central types: `Frame` (what a source yields) and `Result` (what the pipeline yields)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import supervision as sv


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One decoded video frame, never changed once made (a source that adjusts frames makes new ones).

    `image` is BGR uint8 (H, W, 3), the OpenCV / supervision convention. `pts` is the presentation time in
    seconds (from the container when it has one, else index / fps), strictly increasing over the whole source.
    `decode_ms` is what decoding it took, and `decoded_at` the monotonic clock (seconds) when it was ready: live
    latency is measured from there. `source_pts` is the container's own pts in seconds, as the stream gave it
    (None where it gave none), on connection `connection` of a live source (0, then 1 after the first reconnect,
    ...): what a copy of the stream's packets (`sinks.copy_record`) is timed by.
    """

    image: np.ndarray
    index: int
    pts: float
    source_id: str
    decode_ms: float = 0.0
    decoded_at: float = field(default_factory=time.monotonic)
    source_pts: float | None = None
    connection: int = 0

    @property
    def resolution_wh(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(slots=True)
class SceneDescription:
    """A narrator's text about one frame."""

    text: str
    frame_index: int
    pts: float
    model: str
    reason: str = ""  # what triggered it: start, periodic, scene, enter:<class>, exit:<class>, approach:<class>,
    # hazard:<class>, ask
    latency_ms: float = 0.0  # from trigger to text
    question: str | None = None
    urgent: bool = False  # a hazard or an answer: said first, may interrupt
    texts: dict[str, str] | None = None  # the same news at each verbosity (brief, normal, detailed), for viewers
    tracks: tuple[int, ...] = ()  # the tracker ids of the objects it mentions


@dataclass(slots=True)
class Result:
    """The pipeline's output for one frame."""

    frame: Frame
    detections: sv.Detections
    keyframe: bool
    annotated: np.ndarray | None = None
    description: SceneDescription | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
