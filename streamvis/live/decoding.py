"""What a live stream decodes and processes: every frame while something needs every frame, else only what is
processed.

Nothing needs every frame of a camera when nobody watches it, no annotated recording is made and `detector.fps`
caps its detector runs. Then (`source.skip_unneeded_frames`, on by default):

- the source passes on only `detector.fps` frames a second (`Source.max_fps`), on the slots the detector's
  keyframes fall on (`streamvis.rate`): the frames between are decoded, since later frames refer to them, but
  never converted to pixels, looked at for motion nor tracked. A 25 fps camera detected 5 times a second has 5
  frames a second processed, not 25; a keyframe that found the detector busy gets the next frame
  (`Source.pass_next_frame`), not the next slot. Counted: `past_rate_frames`.
- the decoder also leaves out the frames no other frame refers to (FFmpeg's skip_frame=nonref: the B-frames of
  most encoders), as long as the frames left still come at least `detector.fps` times a second. The source
  measures that rate while it decodes every frame (`Source.reference_fps`). Only cameras that send B-frames save
  this; a camera without them (H.264 Baseline, most IP cameras' defaults) is decoded whole. Counted:
  `skipped_frames`.

The camera's packets are copied to a recording as they are demuxed (a video packet once the decoder has read it,
decoded or left out), so a copied recording keeps every frame; its JSONL then has a record for each frame
processed. A viewer who arrives, or a sink that draws every frame, gets every frame again within a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from streamvis.config import PipelineConfig
from streamvis.live.stats import StreamStats
from streamvis.rate import RateSlots
from streamvis.sources.base import Source

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0  # how often the stream looks at what needs its frames
SOMETHING_TO_SKIP = 0.95  # frames others refer to under this share of all: the camera sends frames to leave out


class LiveDecoding:
    """One stream's choice, looked at once a second in its pipeline thread (`step`); `needs_every_frame` says
    whether a viewer or a sink needs every frame now; `keyframe_slots` are the stream's detector slots, which
    take the frames the source passes a little early (they are already spaced out by the source's own slots)."""

    def __init__(self, stream_id: str, config: PipelineConfig, stats: StreamStats,
                 needs_every_frame: Callable[[], bool], keyframe_slots: RateSlots | None = None) -> None:
        self.stream_id = stream_id
        self.keyframe_slots = keyframe_slots
        self.rate = config.detector.fps
        self.enabled = config.source.skip_unneeded_frames and self.rate is not None
        self.stats = stats
        self.needs_every_frame = needs_every_frame
        self._checked_at = -CHECK_EVERY_S

    def step(self, source: Source | None, now: float) -> None:
        if not self.enabled or source is None or not source.live or not source.skips_frames \
                or now - self._checked_at < CHECK_EVERY_S:
            return
        self._checked_at = now
        self.stats.skipped_frames = source.report.skipped_frames
        self.stats.past_rate_frames = source.report.past_rate_frames
        unneeded = not self.needs_every_frame()
        rate = self.rate if unneeded else None
        if rate != source.max_fps:
            source.max_fps = rate
            if self.keyframe_slots is not None:
                self.keyframe_slots.early_s = 0.5 / rate if rate is not None else 0.0
            log.info("stream %s: %s", self.stream_id, f"nothing needs every frame: processing {rate:g} a second "
                     "(detector.fps)" if rate is not None else "processing every frame again")
        references = source.reference_fps
        skip = (unneeded and self.rate is not None and references is not None and source.fps is not None
                and self.rate <= references < SOMETHING_TO_SKIP * source.fps)
        if skip == source.references_only:
            return
        source.references_only = self.stats.references_only = skip
        if skip:
            log.info("stream %s: decoding only the %.1f frames a second others refer to (of %.1f)", self.stream_id,
                     references, source.fps)
        else:
            log.info("stream %s: decoding every frame again", self.stream_id)
