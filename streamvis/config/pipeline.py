"""A whole pipeline: its sources, its models (one per role: `config.roles`, `config.role_types`), tracking, drawing,
encoding."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from streamvis.config.role_types import DetectorConfig, EmbedderConfig, NarratorConfig, ReaderConfig, SegmenterConfig
from streamvis.config.roles import (
    NoEmbedderConfig,
    NoNarratorConfig,
    NoReaderConfig,
    NoSegmenterConfig,
    ObjectsNarratorConfig,
    OnnxSettings,
    Strict,
    YoloxConfig,
)


class SourceConfig(Strict):
    """How sources are opened and kept alive."""

    open_timeout_s: float = Field(10.0, gt=0, description="give up connecting after this long")
    stall_timeout_s: float = Field(10.0, gt=0, description="a source that sends nothing this long has stalled: "
                                   "a live one reconnects")
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    rtsp_probe_s: float = Field(0.5, ge=0, le=10, description="seconds of an RTSP stream read to learn its streams "
                                "before the first frame (FFmpeg's analyzeduration; its default, up to 5 s, held "
                                "each connect back 2-3 s and then gave those frames at once, all but the newest "
                                "dropped); raise it for a camera whose streams are not all found")
    live: Literal["auto"] | bool = Field("auto", description="auto: learnt from the stream (an HLS VOD playlist, "
                                         "an HTTP file of known duration: finite; RTSP, a live playlist, a camera: "
                                         "live); true: reconnect and never end; false: read to the end")
    reconnect_attempts: int = Field(10, ge=0, description="live sources: reconnects after a drop (0: none)")
    reconnect_initial_delay_s: float = Field(0.5, gt=0)
    reconnect_max_delay_s: float = Field(10.0, gt=0)
    image_fps: float = Field(30.0, gt=0, description="frame rate given to image folders and globs")
    max_decode_errors: int = Field(25, ge=0, description="consecutive undecodable packets before giving up")
    options: dict[str, str] = Field(default_factory=dict, description="extra FFmpeg demuxer options")
    decoder_threads: int = Field(0, ge=0, le=64, description="video decoder threads (0: FFmpeg's choice, one per "
                                 "core and one more)")
    skip_unneeded_frames: bool = Field(True, description="live, with detector.fps set: while nobody watches and no "
                                       "annotated recording is made, process only detector.fps frames a second (the "
                                       "others decoded where later frames refer to them, never converted) and decode "
                                       "only the frames other frames refer to (leaves out B-frames) as long as those "
                                       "come at least detector.fps times a second")


class TrackerConfig(Strict):
    """Multi-object tracking (the `trackers` library)."""

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "lost_track_buffer" in data:
            raise ValueError("tracker.lost_track_buffer is now tracker.lost_track_s, in seconds (30 frames at 30 "
                             "fps: 1.0)")
        return data

    enabled: bool = True
    type: Literal["bytetrack", "sort", "ocsort", "botsort", "mcbyte"] = Field(
        "bytetrack", description="the `trackers` tracker; botsort and mcbyte also compensate camera motion (they "
                                 "look at the frame: a little more CPU)")
    lost_track_s: float = Field(1.0, ge=0, le=60, description="seconds a lost track is kept, whatever the frame "
                                "rate (`trackers` times tracks by the frames' timestamps)")
    track_activation_threshold: float = Field(0.4, ge=0, le=1, description="a detection this sure starts a track "
                                              "(`trackers`' own default is 0.7: one id switch fewer on public "
                                              "sequences, but later tracks on YOLOX-nano: benchmarks/tracking.py)")
    minimum_consecutive_frames: int = Field(2, ge=1, description="detector runs in a row a new track must be seen "
                                            "in before it gets an id")
    minimum_iou_threshold: float = Field(0.1, ge=0, le=1)
    stable_class: bool = Field(True, description="label each track with its most detected class (score-summed "
                                                 "over its life), not the latest frame's")


class AnnotatorConfig(Strict):
    """What is burnt into the output video."""

    boxes: bool = True
    labels: bool = True
    masks: bool = True
    caption: bool = True
    show_score: bool = True
    show_track_id: bool = True
    mask_opacity: float = Field(0.45, ge=0, le=1)


class OutputConfig(Strict):
    """Encoding of the annotated MP4."""

    crf: int = Field(23, ge=0, le=51)
    preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
    ] = "veryfast"
    copy_audio: bool = True
    encoder_threads: int = Field(0, ge=0, le=64, description="encoder threads (0: the encoder's choice, for x264 "
                                 "1.5 per core)")


Point = tuple[float, float]


class MotionConfig(Strict):
    """Motion gating: the detector runs on a keyframe only when something moves (or a track moved, or
    `refresh_s` passed); between, the tracker carries the still objects (`streamvis.pipeline.motion`)."""

    enabled: bool | Literal["auto"] = Field("auto", description="auto: on in serve (cameras, streams and files "
                                            "played live), off in process (every keyframe detected, as before)")
    threshold: float = Field(25.0, gt=0, le=255, description="levels (0-255), in any colour channel, a pixel must "
                             "differ from the learnt background by to count as moving")
    min_area: float = Field(0.0005, ge=0, le=1, description="the smallest moving region that counts, as a share of "
                            "the frame (0.0005: 166 pixels of 768x432)")
    refresh_s: float = Field(10.0, gt=0, description="run the detector at least this often, seconds of stream "
                             "time, even when nothing moves")
    background_s: float = Field(2.0, gt=0, description="seconds a change must stay still to become background")
    width_px: int = Field(160, ge=32, le=1920, description="width of the small copy motion is estimated on")
    crop: bool = Field(True, description="when what moves is a small part of the frame, the detector sees only "
                       "that part (with a margin), so small far objects get more of its pixels; still objects "
                       "elsewhere are carried; every refresh_s a run sees the whole frame")
    crop_max_fraction: float = Field(0.4, gt=0, le=1, description="crop only when the part to look at is at most "
                                     "this share of the frame's area")
    crop_margin: float = Field(1.0, ge=0, le=4, description="margin around the moving regions, as a share of "
                               "their size on each side (at least 16 px): the detector sees some of what is around")
    ignore: list[list[Point]] = Field(default_factory=list, description="regions where nothing counts as motion "
                                      "(a clock burnt into the picture, trees): polygons of [x, y] points in the "
                                      "source's pixels")

    @field_validator("ignore")
    @classmethod
    def _polygons(cls, polygons: list[list[Point]]) -> list[list[Point]]:
        for i, polygon in enumerate(polygons):
            if len(polygon) < 3:
                raise ValueError(f"ignore[{i}]: a polygon needs at least 3 points, got {len(polygon)}")
        return polygons

    def on(self, live: bool) -> bool:
        """Whether gating applies to a run that is live (serve) or not (process)."""
        return live if self.enabled == "auto" else self.enabled


class LatencyConfig(Strict):
    """A latency budget the live stream holds by itself (`streamvis.live.budget`): live only; `process` runs as
    fast as it can and drops nothing."""

    budget_ms: float | None = Field(None, gt=0, description="keep the p95 from a frame's decode to its packet (or "
                                    "its result, with no viewer) under this, by giving up quality in a fixed order: "
                                    "detector cadence, mask propagation cadence, narration cadence, video size, "
                                    "viewers' frame rate; none: a fixed plan, as before")
    recover_fraction: float = Field(0.6, gt=0, lt=1, description="step back up once the p95 stays under this "
                                    "share of the budget for recover_s")
    recover_s: float = Field(5.0, gt=0, description="seconds the p95 must stay low before quality comes back")
    hold_s: float = Field(2.0, ge=0, description="the least time between two changes")
    max_changes_per_minute: int = Field(10, ge=1, description="changes allowed in any minute")


class BatchingConfig(Strict):
    """Keyframe detection and SAM 2 image encoding batched across the streams of one server (`serve` with several
    sources or publishers share the models; a GPU runs a batch in little more than the time of one)."""

    enabled: bool | Literal["auto"] = Field("auto", description="auto: on when the model runs on a GPU (on a CPU "
                                            "a batch costs what its frames cost one by one: the streams' keyframes "
                                            "then go through one queue, one at a time, the streams in turn); "
                                            "false: each stream runs the detector itself")
    max_batch: int = Field(8, ge=1, le=64, description="requests in one model call at most")
    batch_wait_ms: float = Field(5.0, ge=0, le=1000, description="the longest a request waits for others to join "
                                 "(a batch starts at once when every active stream is in it)")
    cpu_workers: int = Field(0, ge=0, le=64, description="keyframes the shared detector queue runs at once on a "
                             "CPU, each on its share of the cores' intra-op threads (0: one per core, at most one "
                             "per stream; 1: one at a time on every core)")


class PipelineConfig(Strict):
    """A whole pipeline: one file in `pipelines/`."""

    name: str = "detect"
    description: str = ""
    source: SourceConfig = Field(default_factory=SourceConfig)
    detector: DetectorConfig = Field(default_factory=YoloxConfig)
    segmenter: SegmenterConfig = Field(default_factory=NoSegmenterConfig)
    narrator: NarratorConfig = Field(default_factory=NoNarratorConfig)
    reader: ReaderConfig = Field(default_factory=NoReaderConfig)
    embedder: EmbedderConfig = Field(default_factory=NoEmbedderConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    annotator: AnnotatorConfig = Field(default_factory=AnnotatorConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)

    def hub_models(self) -> dict[str, str]:
        """Role -> the model id (hub id or folder) of each model loaded through transformers: what must be cached
        or downloadable before anything loads (YOLOX's ONNX file and exported graphs are not)."""
        models: dict[str, str] = {}
        for role, section in (("detector", self.detector), ("segmenter", self.segmenter),
                              ("narrator", self.narrator), ("embedder", self.embedder)):
            if isinstance(section, YoloxConfig | NoSegmenterConfig | NoNarratorConfig | ObjectsNarratorConfig
                          | NoEmbedderConfig):
                continue
            if isinstance(section, OnnxSettings) and section.backend == "onnx":
                continue
            models[role] = section.model
        return models
