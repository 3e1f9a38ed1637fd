"""The models of a pipeline, loaded once per process and shared by every stream that runs it.

`load_models` is the one place models are assembled: `process` calls it once for all its inputs, `serve` once
for all its sources and WHIP publishers. Per-stream state (a SAM 2 session, a tracker, a narration policy) is
made by `Pipeline` from these shared models, never stored in them. A Florence-2 that both detects and narrates
(the same model id, device and dtype) is loaded once and serves both roles.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, overload

from streamvis.config import (
    BatchingConfig,
    ClipEmbedderConfig,
    Florence2Config,
    Florence2NarratorConfig,
    PipelineConfig,
    RapidOcrReaderConfig,
)
from streamvis.detection import Detector, NoDetector, load_detector
from streamvis.extras import check_installed
from streamvis.narration.backends import FlorenceNarrator, NarratorBackend, load_narrator_backend
from streamvis.reading.model import TextModel, load_text_model
from streamvis.runtime.threads import thread_budget, usable_cores
from streamvis.segmentation import Batchable, SegmenterModel, load_segmenter
from streamvis.weights.hf import check_reachable

if TYPE_CHECKING:
    from streamvis.detection.florence2 import Florence2Model
    from streamvis.search.embedder import ImageTextEmbedder

log = logging.getLogger(__name__)
class Loaded(Protocol):
    """What every loaded model says of itself: its name and the runtime really in use."""

    name: str

    @property
    def provider(self) -> str: ...


T = TypeVar("T", bound=Loaded)


@dataclass(frozen=True, slots=True)
class Models:
    """What a pipeline runs: a detector, and optionally a segmenter model, a narrator model and a text reader.
    `florence`: the Florence-2 the detector or the narrator runs, when one does (it grounds viewers' words)."""

    detector: Detector
    segmenter: SegmenterModel | None = None
    narrator: NarratorBackend | None = None
    florence: Florence2Model | None = None
    reader: TextModel | None = None
    embedder: ImageTextEmbedder | None = None  # image-text embeddings for the index (`streamvis.search`)

    def providers(self) -> dict[str, str]:
        """Role -> the runtime really in use (`onnxruntime:cuda fp16`, `torch:cpu:float32`), for stats and logs."""
        out = {"detector": self.detector.provider}
        if self.segmenter is not None:
            out["segmenter"] = self.segmenter.provider
        if self.narrator is not None:
            out["narrator"] = self.narrator.provider
        if self.reader is not None:
            out["reader"] = self.reader.provider
        if self.embedder is not None:
            out["embedder"] = self.embedder.provider
        return out


@overload
def _timed(role: str, load: Callable[[], T]) -> T: ...


@overload
def _timed(role: str, load: Callable[[], T | None]) -> T | None: ...


def _timed(role: str, load: Callable[[], T | None]) -> T | None:
    """`load()`, then one log line per model loaded: `loaded segmenter facebook/sam2.1-hiera-tiny on ...`."""
    start = time.perf_counter()
    loaded = load()
    if loaded is not None:
        log.info("loaded %s %s on %s in %.1f s", role, loaded.name, loaded.provider, time.perf_counter() - start)
    return loaded


def shares_florence(config: PipelineConfig) -> bool:
    """Whether the detector and the narrator are one Florence-2 (same model id, device and dtype)."""
    detector, narrator = config.detector, config.narrator
    return isinstance(detector, Florence2Config) and isinstance(narrator, Florence2NarratorConfig) and (
        (detector.model, detector.device, detector.dtype) == (narrator.model, narrator.device, narrator.dtype))


def on_gpu(provider: str) -> bool:
    """Whether a provider string (`torch:cuda:bfloat16`, `cuda`, `tensorrt`, `onnxruntime:cpu ...`) is a GPU's."""
    return any(name in provider for name in ("cuda", "tensorrt"))


def batches_across_streams(config: BatchingConfig, provider: str) -> bool:
    return on_gpu(provider) if config.enabled == "auto" else bool(config.enabled)


def detector_queue_batch(config: BatchingConfig, provider: str) -> int | None:
    """The batch size of the one queue every stream's keyframes go through in `serve`, or None for none (each
    stream then calls the detector from its own thread, all at once). A GPU batches (`max_batch`); on a CPU,
    where a batch costs what its frames cost one by one, `auto` still queues them, one at a time and the streams
    in turn: at 16 cameras on 2 cores that cut the p95 from a frame to its result from 140 to 56 ms
    (`benchmarks/density.py`), since a run no longer shares the cores with fifteen others."""
    if config.enabled == "auto":
        return config.max_batch if on_gpu(provider) else 1
    return config.max_batch if config.enabled else None


def detector_queue_workers(config: BatchingConfig, streams: int, cores: int | None = None) -> int:
    """Keyframes the shared detector queue runs at once on a CPU: `cpu_workers`, or by default one per core, at
    most one per stream (one stream runs one at a time, with every core's intra-op thread; see
    `batching.Batcher`'s workers)."""
    return config.cpu_workers or max(1, min(cores or usable_cores(), streams))


def load_models(config: PipelineConfig, models_dir: str | Path | None = None,
                detector_threads: int | None = None, cross_stream: bool = False, streams: int = 1) -> Models:
    """Load every model `config` names, once each, logging what was loaded and how long it took. A hub model
    that is neither cached nor downloadable fails first, before any is loaded. `detector_threads`: the ONNX
    detector's intra-op threads (offline with frames in flight: 1; None: onnxruntime's default).
    `cross_stream`: the models serve several live streams, so keyframe detection and SAM 2 image encoding are
    batched across them as `config.batching` says; on a CPU the shared detector queue then runs
    `detector_queue_workers(streams)` keyframes at once, each with its share of the cores' intra-op threads
    (measured at 16 cameras on 2 cores: 18-23% more detector runs a second than one run at a time on two
    threads, `benchmarks/density.py`)."""
    check_installed(config)  # an extra the pipeline needs and lacks fails here, before anything loads
    finds_objects = config.segmenter.finds_objects  # SAM 3: no detector is loaded or run
    for role, hub_id in config.hub_models().items():
        if not (role == "detector" and finds_objects):
            check_reachable(hub_id, f"{role}.model")
    detector_config, narrator_config = config.detector, config.narrator
    queued = cross_stream and config.batching.enabled is not False
    queue_workers = detector_queue_workers(config.batching, streams) if queued else 1
    if queue_workers > 1 and detector_threads is None:
        detector_threads = thread_budget(queue_workers)
    florence: Florence2Model | None = None
    detector: Detector
    if finds_objects:
        detector = NoDetector()
    elif isinstance(detector_config, Florence2Config):
        from streamvis.detection.florence2 import Florence2Model

        roles = "detector and narrator" if shares_florence(config) else "detector"
        florence = _timed(f"Florence-2 ({roles})", lambda: Florence2Model(detector_config))
        detector = load_detector(detector_config, models_dir, florence)
    else:
        detector = _timed("detector", lambda: load_detector(detector_config, models_dir, threads=detector_threads))
    segmenter = None
    if config.segmenter.enabled:
        segmenter = _timed("segmenter", lambda: load_segmenter(config.segmenter))
    narrator = None
    if florence is not None and shares_florence(config):
        narrator = load_narrator_backend(narrator_config, florence)
        log.info("narrator: on the detector's Florence-2 (loaded once for both)")
    elif narrator_config.enabled:
        narrator = _timed("narrator", lambda: load_narrator_backend(narrator_config))
    batching = config.batching
    batch = detector_queue_batch(batching, detector.provider) if cross_stream and not finds_objects else None
    if batch is not None:
        from streamvis.detection.batched import BatchedDetector

        detector = BatchedDetector(detector, batch, batching.batch_wait_ms if batch > 1 else 0.0,
                                   workers=queue_workers if batch == 1 else 1)
        if batch > 1:
            log.info("detector: keyframes batched across streams (up to %d, waiting at most %.1f ms)",
                     batch, batching.batch_wait_ms)
        elif queue_workers > 1:
            log.info("detector: one queue for every stream's keyframes, %d runs at once (one intra-op thread "
                     "each), the streams in turn", queue_workers)
        else:
            log.info("detector: one queue for every stream's keyframes, run one at a time, the streams in turn")
    if cross_stream and isinstance(segmenter, Batchable) and batches_across_streams(batching, segmenter.provider):
        segmenter.batch_across_streams(batching.max_batch, batching.batch_wait_ms)
        log.info("segmenter: image encoding batched across streams")
    if florence is None and isinstance(narrator, FlorenceNarrator):
        florence = narrator.runner
    reader_config = config.reader
    reader = _timed("reader", lambda: load_text_model(reader_config)) \
        if isinstance(reader_config, RapidOcrReaderConfig) else None
    embedder = None
    embedder_config = config.embedder
    if isinstance(embedder_config, ClipEmbedderConfig):
        from streamvis.search.embedder import ImageTextEmbedder

        embedder = _timed("embedder", lambda: ImageTextEmbedder(embedder_config))
        if cross_stream and batches_across_streams(batching, embedder.provider):
            embedder.batch_across_streams(batching.max_batch, batching.batch_wait_ms)
            log.info("embedder: every stream's crops batched together")
    return Models(detector, segmenter, narrator, florence, reader, embedder)
