"""Central types: `Frame` (what a source yields), `Result` (what the pipeline yields), and what a result carries
besides detections: a narrator's `SceneDescription` and the text read in view (`TextReading`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import supervision as sv

# the wall clock (Unix seconds) less the monotonic clock, read once: every wall time derived from a monotonic one
# in this process uses the same offset, so two sinks that time one frame agree to the microsecond
_WALL_MINUS_MONOTONIC_S = time.time() - time.monotonic()


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

    @property
    def decoded_wall_s(self) -> float:
        """When the frame was decoded, as Unix time: what a live index and a live recording are timed by."""
        return self.decoded_at + _WALL_MINUS_MONOTONIC_S


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


@dataclass(frozen=True, slots=True)
class TextReading:
    """A piece of text in view (a sign, a label, a bus number), as `streamvis.reading` keeps it: read once, tracked
    by position (`text_id`), re-read when it changes. `polygon_xy`: its four corners in the frame's pixels.
    `side` (left / ahead / right) and `distance` (near / mid / far) place it for a listener; `object` and
    `object_track` name the detected object it is on (a bus, a stop sign), when it is on one. `new`: first read
    (or changed) at the look this result carries, and worth saying."""

    text: str
    score: float
    polygon_xy: tuple[tuple[float, float], ...]
    text_id: int
    side: str
    distance: str
    first_pts: float
    read_pts: float
    object: str | None = None
    object_track: int | None = None
    new: bool = False

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        xs = [p[0] for p in self.polygon_xy]
        ys = [p[1] for p in self.polygon_xy]
        return min(xs), min(ys), max(xs), max(ys)


@dataclass(slots=True)
class Result:
    """The pipeline's output for one frame."""

    frame: Frame
    detections: sv.Detections
    keyframe: bool
    annotated: np.ndarray | None = None
    description: SceneDescription | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    texts: tuple[TextReading, ...] = ()  # the text in view (a reader's), newest readings flagged `new`
