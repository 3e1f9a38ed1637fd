"""`streamvis process --ray`: the offline pipeline on a Ray cluster through Ray Data, with the outputs of a local run.

Two Ray Data stages:

1. **Detect and track, per chunk** (`map_batches` over an actor pool: the models load once per actor). Each
   video is cut at clean keyframes (`streamvis.sources.spans`) into chunks of about `chunk_s` seconds; a chunk is
   a `FrameSpan` of the file opened by `open_source` (the clock, rotation and damage handling of a local run:
   frames are numbered and timed as in a whole read) and tracked from `overlap_s` before its start, so the tracker
   is warm when the chunk's own frames begin. It runs through `run_offline`, the local road, without annotation.
   Detections do not depend on the chunk, so they are the local run's frame for frame.
2. **Write, per input** (`map` tasks): the chunks' track ids are stitched (`stitch_tracks`: on the overlap, each
   chunk's tracks are matched to the previous chunk's by box and class, and keep their ids; new tracks get new
   ids), then the video is decoded once more as a local run decodes it, annotated and written as one MP4 (with
   its audio) and one JSONL, by the same writers.

Segmenters, narrators and text readers carry state across a whole video (SAM 2's memory, what has been said and
read), so the Ray runner takes detect pipelines (a detector and the tracker); the others run locally. The Ray
cluster is a local one unless an address is given; `ray` is an optional dependency (`streamvis[ray]`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamvis.config import ClipEmbedderConfig, PipelineConfig, YoloxConfig
from streamvis.errors import ConfigError, SourceError, StreamvisError
from streamvis.frame import Result
from streamvis.offline.process import InputReport, expand_inputs, open_outputs, plan_outputs
from streamvis.serialize import detections_to_json
from streamvis.sources import FrameSpan, MediaIndex, index_media, open_source
from streamvis.sources.spans import PacketKey

log = logging.getLogger(__name__)

MATCH_IOU = 0.5


@dataclass(frozen=True, slots=True)
class RaySettings:
    address: str | None = None  # None: start a local cluster
    workers: int | None = None  # actors in the detect stage (None: the cluster's CPUs / cpus_per_worker)
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs and the detector may use one
    chunk_s: float = 60.0
    overlap_s: float = 2.0


@dataclass(frozen=True, slots=True)
class Chunk:
    """Frames [start, end) of one input, tracked from `warm_start` (the overlap), decoded from the keyframe
    `seek_frame` (packet `seek_key`): a `FrameSpan` of the file."""

    input_index: int
    uri: str
    index: int
    warm_start: int
    start: int
    end: int
    seek_frame: int = 0
    seek_key: PacketKey | None = None

    @property
    def span(self) -> FrameSpan:
        return FrameSpan(self.warm_start, self.end, self.seek_frame, self.seek_key)

    def to_json(self) -> str:
        return json.dumps({field: getattr(self, field) for field in Chunk.__slots__})

    @classmethod
    def from_json(cls, text: str) -> Chunk:
        fields = json.loads(text)
        key = fields.pop("seek_key")
        return cls(**fields, seek_key=(key[0], key[1], key[2]) if key is not None else None)


# -- planning: frames and keyframes from the packets, no decoding ----------------------------------------------
def plan_chunks(input_index: int, uri: str, media: MediaIndex, chunk_s: float, overlap_s: float) -> list[Chunk]:
    """Chunks of about `chunk_s` seconds starting at clean keyframes, each warmed up on `overlap_s` seconds
    before it (decoded from the keyframe at or before that)."""
    frames = media.frames
    per_chunk, overlap = max(1, round(chunk_s * media.fps)), max(0, round(overlap_s * media.fps))
    starts = [0]
    for key in media.keyframes:
        if key - starts[-1] >= per_chunk and frames - key >= per_chunk // 4:
            starts.append(key)
    chunks = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else frames
        span = media.span(max(0, start - overlap), end)
        chunks.append(Chunk(input_index, uri, n, span.first, start, end, span.seek_frame, span.seek_key))
    return chunks


# -- stage 1: detect and track a chunk (one actor per worker, models loaded once) -------------------------------
class RecordSink:
    """A `Sink` that keeps each result as its JSON record (frame index, pts, keyframe, detections)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, result: Result) -> None:
        self.records.append({"frame_index": result.frame.index, "pts": result.frame.pts,
                             "keyframe": result.keyframe, "detections": detections_to_json(result.detections)})

    def close(self) -> None:
        """The records stay for `ChunkDetector.run` to return."""


class ChunkDetector:
    """A Ray Data actor: `__call__` takes a batch of chunk rows and returns, per chunk, its frames' records."""

    def __init__(self, config_json: str, models_dir: str | None) -> None:
        from streamvis.pipeline.loading import load_models

        self.config = PipelineConfig.model_validate_json(config_json)
        self.models = load_models(self.config, models_dir, detector_threads=1)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"input_index": [], "chunk": [], "records": [], "error": [], "pid": []}
        for row in batch["chunk"]:
            chunk = Chunk.from_json(str(row))
            try:
                records, error = self.run(chunk), ""
            except StreamvisError as exc:
                records, error = [], str(exc)
            except Exception as exc:  # one input's failure must not stop the others
                records, error = [], f"unexpected {exc.__class__.__name__}: {exc}"
            out["input_index"].append(chunk.input_index)
            out["chunk"].append(chunk.index)
            out["records"].append(json.dumps(records))
            out["error"].append(error)
            out["pid"].append(os.getpid())
        return out

    def run(self, chunk: Chunk) -> list[dict[str, Any]]:
        """The chunk's frames through the offline road (`run_offline`), as a local run takes them; no annotation."""
        from streamvis.offline.runner import run_offline
        from streamvis.pipeline.step import Pipeline

        source = open_source(chunk.uri, self.config.source, span=chunk.span)
        try:
            pipeline = Pipeline(self.config, self.models, source.fps, annotate=False)
            sink = RecordSink()
            run_offline(source, pipeline, sink, in_flight=1)
        finally:
            source.close()
        if source.report.incomplete:
            raise SourceError(f"{chunk.uri}: chunk {chunk.index} (frames {chunk.start}-{chunk.end - 1}): "
                              f"{source.report.incomplete}")
        return sink.records


# -- stitching the chunks' track ids ----------------------------------------------------------------------------
def _iou(a: list[float], b: list[float]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def stitch_tracks(chunks: list[tuple[Chunk, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """The records of frames [0, end) in order, each chunk's own frames only, with track ids made continuous:
    the first chunk keeps its tracker's ids (a local run's), a later chunk's track takes the id of the previous
    chunk's track it matches most often on the overlap frames (same class, IoU >= 0.5; one to one), and a track
    that matches none gets a new id."""
    stitched: list[dict[str, Any]] = []
    by_frame: dict[int, list[dict[str, Any]]] = {}
    next_id = 0
    for chunk, records in sorted(chunks, key=lambda c: c[0].index):
        if chunk.index == 0:  # the first chunk is the start of a local run: its ids are kept as they are
            next_id = 1 + max((det["track_id"] for record in records for det in record["detections"]
                               if det["track_id"] is not None), default=-1)
        votes: Counter[tuple[int, int]] = Counter()
        for record in records:
            if record["frame_index"] >= chunk.start:
                break
            earlier = by_frame.get(record["frame_index"], [])
            for det in record["detections"]:
                if det["track_id"] is None:
                    continue
                for other in earlier:
                    if (other["track_id"] is not None and other["class_id"] == det["class_id"]
                            and _iou(det["xyxy"], other["xyxy"]) >= MATCH_IOU):
                        votes[(det["track_id"], other["track_id"])] += 1
        mapping: dict[int, int] = {}
        if chunk.index == 0:
            mapping = {det["track_id"]: det["track_id"] for record in records for det in record["detections"]
                       if det["track_id"] is not None}
        taken: set[int] = set()
        for (local, global_id), _ in votes.most_common():
            if local not in mapping and global_id not in taken:
                mapping[local], taken = global_id, taken | {global_id}
        by_frame = {}
        for record in records:
            if record["frame_index"] < chunk.start:
                continue
            for det in record["detections"]:
                local = det["track_id"]
                if local is None:
                    continue
                if local not in mapping:
                    mapping[local], next_id = next_id, next_id + 1
                det["track_id"] = mapping[local]
                next_id = max(next_id, det["track_id"] + 1)
            by_frame[record["frame_index"]] = record["detections"]
            stitched.append(record)
    return stitched


# -- stage 2: write one input's outputs as a local run does -----------------------------------------------------
def write_input(uri: str, output: Path, events: Path | None, config: PipelineConfig,
                records: list[dict[str, Any]], index: Path | None = None) -> InputReport:
    """Decode `uri` as a local run does, annotate each frame with its stitched record, and write the outputs a
    local run writes (`open_outputs`); with `index`, its moments go to this input's own part of it
    (`index_part`), merged into the index by the driver."""
    from streamvis.pipeline.annotate import Annotator
    from streamvis.search.parts import index_sink
    from streamvis.serialize import detections_from_json

    report = InputReport(uri, events=events)
    started = time.perf_counter()
    try:
        source = open_source(uri, config.source)
        moments = index_sink(uri, output, config, index) if index is not None else None
    except StreamvisError as exc:
        report.status, report.message = "failed", str(exc)
        return report
    writer, sinks = open_outputs(output, events, source, config, moments=moments)
    annotator = Annotator(config.annotator)
    complete = False
    retimed = 0
    try:
        for frame in source:
            if frame.index >= len(records):
                raise SourceError(f"{uri}: decoded more frames ({frame.index + 1}) than its packets ({len(records)})")
            record = records[frame.index]
            retimed += abs(record["pts"] - frame.pts) > 1e-6
            detections = detections_from_json(record["detections"])
            sinks.write(Result(frame, detections, record["keyframe"], annotator.annotate(frame.image, detections)))
        if writer.frames != len(records):
            raise SourceError(f"{uri}: decoded {writer.frames} frames, its packets say {len(records)}")
        if retimed:
            log.warning("%s: %d frames were timed differently in their chunk than in the whole video (the tracker "
                        "saw those times)", uri, retimed)
        complete = True
    except StreamvisError as exc:
        report.status, report.message = "failed", str(exc)
    finally:
        source.close()
        report.frames = writer.frames
        writer.close(complete=complete)
        sinks.close()
        report.output = output if writer.frames else None
        report.seconds = time.perf_counter() - started
    return report


# -- the run -------------------------------------------------------------------------------------------------------
def wants_gpu(config: PipelineConfig) -> bool:
    """Whether the detector would run on a GPU where there is one (ONNX providers or torch device)."""
    detector = config.detector
    if isinstance(detector, YoloxConfig) or detector.backend == "onnx":
        return detector.providers[0] in ("cuda", "tensorrt")
    return detector.device in ("auto", "cuda")


def start_ray(settings: RaySettings) -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--ray needs Ray Data: pip install 'streamvis[ray]'") from exc
    # the driver's own Ray core logs to the terminal; streamvis reports progress and errors itself
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    if not ray.is_initialized():
        try:
            ray.init(address=settings.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"--ray-address {settings.address}: cannot join the Ray cluster: "
                              f"{str(exc).splitlines()[0]}") from exc
    return ray


def process_on_ray(inputs: list[str], output: Path, events: Path | None, config: PipelineConfig,
                   settings: RaySettings, models_dir: str | Path | None = None,
                   show_progress: bool = True, index: Path | None = None) -> list[InputReport]:
    """Every input through the pipeline on Ray; one report per input, in input order (a failure stops no other).
    With `index`, each input's write task indexes its moments into a part of its own, and the parts are merged
    into `index` at the end (`merge_parts`)."""
    from streamvis.progress import FrameProgress

    if config.segmenter.enabled or config.narrator.enabled or config.reader.enabled:
        raise ConfigError("--ray runs detect pipelines (a detector and the tracker): segmenters, narrators and text "
                          "readers keep state across a whole video; run them without --ray")
    if index is not None and not isinstance(config.embedder, ClipEmbedderConfig):
        raise ConfigError(f"--index {index}: needs an embedder to turn tracks into vectors: --set embedder.type=clip "
                          "(embedder.model: a CLIP or SigLIP hub id or folder)")
    started = time.perf_counter()
    plans = plan_outputs(expand_inputs(inputs), output, events)
    reports = [InputReport(uri) for uri, _, _ in plans]
    chunks: list[Chunk] = []
    frames_of: dict[int, int] = {}
    for n, (uri, _, _) in enumerate(plans):
        if not Path(uri).is_file():
            reports[n].status, reports[n].message = "failed", f"{uri}: --ray takes video files"
            continue
        try:
            media = index_media(uri)
        except StreamvisError as exc:
            reports[n].status, reports[n].message = "failed", str(exc)
            continue
        if not media.frames:
            reports[n].status, reports[n].message = "failed", f"{uri}: no video frames"
            continue
        frames_of[n] = media.frames
        chunks.extend(plan_chunks(n, uri, media, settings.chunk_s, settings.overlap_s))
    if not chunks:
        return reports
    ray = start_ray(settings)
    resources = ray.cluster_resources()
    cpus = float(resources.get("CPU", 1))
    gpus = settings.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) > 0 and wants_gpu(config) else 0.0
    workers = min(len(chunks), settings.workers or max(1, int(cpus // settings.cpus_per_worker)))
    log.info("ray: %d inputs in %d chunks on %d workers (%g CPU%s each)", len(frames_of), len(chunks), workers,
             settings.cpus_per_worker, f", {gpus:g} GPU" if gpus else "")
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # streamvis reports progress and errors itself
    ray.data.DataContext.get_current().enable_progress_bars = False
    dataset = ray.data.from_items([{"chunk": c.to_json()} for c in chunks],
                                  override_num_blocks=len(chunks))
    detected = dataset.map_batches(
        ChunkDetector, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=settings.cpus_per_worker,
        num_gpus=gpus or None,
        fn_constructor_kwargs={"config_json": config.model_dump_json(),
                               "models_dir": str(models_dir) if models_dir else None})
    per_input: dict[int, list[tuple[Chunk, list[dict[str, Any]]]]] = {}
    errors: dict[int, str] = {}
    chunk_of = {(c.input_index, c.index): c for c in chunks}
    done = 0
    with FrameProgress("ray", sum(frames_of.values()), enabled=show_progress) as bar:
        for row in detected.iter_rows():
            key = (int(row["input_index"]), int(row["chunk"]))
            chunk = chunk_of[key]
            if row["error"]:
                errors.setdefault(chunk.input_index, row["error"])
            per_input.setdefault(chunk.input_index, []).append((chunk, json.loads(row["records"])))
            done += chunk.end - chunk.start
            bar.update(done)
    writes = []
    for n, results in per_input.items():
        if n in errors:
            reports[n].status, reports[n].message = "failed", errors[n]
            continue
        uri, mp4, jsonl = plans[n]
        writes.append({"n": n, "uri": uri, "mp4": str(mp4), "jsonl": str(jsonl) if jsonl else "",
                       "records": json.dumps(stitch_tracks(results))})
    if writes:
        config_json = config.model_dump_json()

        index_file = str(index.resolve()) if index is not None else ""

        def write(row: dict[str, Any]) -> dict[str, Any]:
            report = write_input(row["uri"], Path(row["mp4"]), Path(row["jsonl"]) if row["jsonl"] else None,
                                 PipelineConfig.model_validate_json(config_json), json.loads(row["records"]),
                                 Path(index_file) if index_file else None)
            return {"n": row["n"], "status": report.status, "message": report.message, "frames": report.frames}

        for row in ray.data.from_items(writes, override_num_blocks=len(writes)).map(write, num_cpus=1).iter_rows():
            n = int(row["n"])
            uri, mp4, jsonl = plans[n]
            # seconds: from the start of the run to this input's outputs (its chunks ran beside the others')
            reports[n] = InputReport(uri, mp4 if row["frames"] else None, jsonl, None, int(row["frames"]),
                                     time.perf_counter() - started, row["status"], row["message"])
    if index is not None:
        from streamvis.search.parts import merge_parts

        tracks, scenes, problems = merge_parts(index, [plans[n][1] for n in range(len(plans))])
        for problem in problems:
            log.error("--index: %s (the part is kept)", problem)
        log.info("index %s: %d tracks and %d scene keyframes added", index, tracks, scenes)
    return reports

