"""Cross-stream batching: the batcher's rules with a stand-in model (order, fairness, the latency budget, overflow,
errors), then tiny real models whose batched outputs equal their one-at-a-time outputs."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest
import torch
from support import TinyModels

from streamvis.batching import Batcher, BatcherClosed
from streamvis.config import Florence2Config, PipelineConfig, Sam2Config, YoloxConfig
from streamvis.detection.batched import BatchedDetector
from streamvis.detection.florence2 import Florence2Detector, Florence2Model
from streamvis.pipeline.loading import (
    batches_across_streams,
    detector_queue_batch,
    detector_queue_workers,
    load_models,
)
from streamvis.segmentation.processing import preprocess_square
from streamvis.segmentation.video import VideoSegmenterModel
from streamvis.sources import open_source


class StandIn:
    """A scheduler stand-in for a model: doubles each item and records every batch it was given."""

    def __init__(self, seconds: float = 0.0, fail_on: object = None) -> None:
        self.batches: list[list[object]] = []
        self.seconds = seconds
        self.fail_on = fail_on
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        self.entered.set()
        self.release.wait(10)
        time.sleep(self.seconds)
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [2 * item[1] if isinstance(item, tuple) else 2 * item for item in items]


@pytest.fixture
def make():
    made: list[Batcher] = []

    def build(model, **kwargs) -> Batcher:
        batcher = Batcher("test", model, **kwargs)
        made.append(batcher)
        return batcher

    yield build
    for batcher in made:
        batcher.close()


def _hold(model: StandIn, batcher: Batcher) -> None:
    """Keep the worker busy in a batch so later requests queue up behind it."""
    model.release.clear()
    model.entered.clear()
    batcher.submit(("hold", 0), lane="hold")
    assert model.entered.wait(5)


def test_each_lane_completes_in_submission_order(make) -> None:
    model = StandIn()
    batcher = make(model, max_batch=3, batch_wait_ms=1, max_pending=16)
    _hold(model, batcher)
    futures = [batcher.submit(("a", i), lane="a") for i in range(7)]
    model.release.set()
    assert [f.result(5) for f in futures] == [2 * i for i in range(7)]
    seen = [item[1] for batch in model.batches[1:] for item in batch]
    assert seen == list(range(7)) and max(len(b) for b in model.batches) <= 3


def test_a_busy_lane_cannot_crowd_out_another(make) -> None:
    model = StandIn()
    batcher = make(model, max_batch=4, batch_wait_ms=1, max_pending=16)
    _hold(model, batcher)
    busy = [batcher.submit(("busy", i), lane="busy") for i in range(8)]
    quiet = [batcher.submit(("quiet", i), lane="quiet") for i in range(2)]
    model.release.set()
    for future in busy + quiet:
        future.result(5)
    first = [lane for lane, _ in model.batches[1]]
    assert first == ["busy", "quiet", "busy", "quiet"]  # round robin: one each per turn
    assert all(lane == "busy" for batch in model.batches[2:] for lane, _ in batch)


def test_a_watched_lane_goes_first_and_no_lane_is_starved(make) -> None:
    """A queue of one request at a time (a CPU): the lane with priority (a stream someone watches) is served
    first while it has requests, and a lane passed over STARVE_AFTER batches in a row goes next."""
    from streamvis.batching import STARVE_AFTER

    model = StandIn()
    batcher = make(model, max_batch=1, batch_wait_ms=1, max_pending=16)
    batcher.set_priority(1, lane="watched")
    _hold(model, batcher)
    futures = [batcher.submit((lane, i), lane=lane) for i in range(8) for lane in ("idle-a", "watched", "idle-b")]
    model.release.set()
    for future in futures:
        future.result(5)
    order = [batch[0][0] for batch in model.batches[1:]]
    assert order[0] == "watched"
    first_idle = [order.index(lane) for lane in ("idle-a", "idle-b")]
    assert max(first_idle) <= STARVE_AFTER + 1  # each idle lane served within a few batches, not after all 8
    watched_turns = [i for i, lane in enumerate(order) if lane == "watched"]
    assert watched_turns[-1] < len(order) - 4  # the watched lane's requests done well before the others'


def test_a_lone_stream_never_waits_for_company(make) -> None:
    model = StandIn()
    batcher = make(model, max_batch=8, batch_wait_ms=10_000)
    start = time.monotonic()
    assert batcher(3, lane="only") == 6
    assert time.monotonic() - start < 5  # far below the 10 s budget: nobody else is active


def test_a_request_waits_at_most_the_budget_for_others(make) -> None:
    model = StandIn()
    batcher = make(model, max_batch=8, batch_wait_ms=300)
    batcher(1, lane="other")  # another stream was active a moment ago, so the next request waits for it
    batcher.stats.waits_ms.clear()
    assert batcher(2, lane="me") == 4
    (waited,) = batcher.stats.waits_ms
    assert 250 <= waited < 5000
    assert model.batches[-1] == [2]  # the budget ran out: it went alone


def test_a_full_batch_starts_without_waiting_out_the_budget(make) -> None:
    model = StandIn()
    batcher = make(model, max_batch=4, batch_wait_ms=10_000)
    _hold(model, batcher)
    start = time.monotonic()
    futures = [batcher.submit(i, lane=lane) for i, lane in enumerate("abcdef")]  # seven active streams
    model.release.set()
    assert [f.result(5) for f in futures[:4]] == [0, 2, 4, 6]
    assert time.monotonic() - start < 5 and model.batches[1] == [0, 1, 2, 3]
    assert not futures[4].done()  # the other two wait for company or the budget


def test_overflow_drops_the_oldest_of_a_lane(make) -> None:
    model = StandIn()
    batcher = make(model, max_batch=4, batch_wait_ms=1, max_pending=2)
    _hold(model, batcher)
    first, second, third = (batcher.submit(("a", i), lane="a") for i in range(3))
    model.release.set()
    with pytest.raises(CancelledError):
        first.result(5)
    assert (second.result(5), third.result(5)) == (2, 4)
    assert batcher.stats.dropped == 1


def test_a_failing_batch_fails_its_requests_and_the_worker_goes_on(make) -> None:
    model = StandIn(fail_on=13)
    batcher = make(model, max_batch=4, batch_wait_ms=1)
    with pytest.raises(ValueError, match="bad item 13"):
        batcher(13)
    assert batcher(5) == 10


def test_close_fails_what_has_not_started() -> None:
    model = StandIn()
    batcher = Batcher("test", model, max_batch=2, batch_wait_ms=1)
    _hold(model, batcher)
    waiting = batcher.submit(("a", 1), lane="a")
    closer = threading.Thread(target=batcher.close)
    closer.start()
    model.release.set()
    closer.join(10)
    with pytest.raises(BatcherClosed):
        waiting.result(5)
    with pytest.raises(BatcherClosed):
        batcher.submit(1).result(5)


def test_threads_calling_at_once_share_batches(make) -> None:
    model = StandIn(seconds=0.02)
    batcher = make(model, max_batch=8, batch_wait_ms=50)
    results: dict[int, list[int]] = {}

    def stream(k: int) -> None:
        results[k] = [batcher(k * 100 + i) for i in range(5)]

    threads = [threading.Thread(target=stream, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {k: [2 * (k * 100 + i) for i in range(5)] for k in range(6)}
    assert batcher.stats.largest >= 3 and batcher.stats.batches < 30


class Concurrency:
    """A stand-in model that records how many calls ran at once, overall and per lane (the item's first part)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.now: dict[str, int] = {}
        self.most = 0
        self.most_in_a_lane = 0
        self.done: dict[str, list[int]] = {}

    def __call__(self, items: list) -> list:
        lanes = [lane for lane, _ in items]
        with self.lock:
            for lane in lanes:
                self.now[lane] = self.now.get(lane, 0) + 1
            self.most = max(self.most, sum(self.now.values()))
            self.most_in_a_lane = max(self.most_in_a_lane, *self.now.values())
        time.sleep(self.seconds)
        with self.lock:
            for lane, value in items:
                self.now[lane] -= 1
                self.done.setdefault(lane, []).append(value)
        return [2 * value for _, value in items]


def test_workers_run_the_lanes_at_once_and_each_lane_in_order(make) -> None:
    model = Concurrency(seconds=0.05)
    batcher = make(model, max_batch=1, batch_wait_ms=0, max_pending=16, workers=2)
    futures = {lane: [batcher.submit((lane, i), lane=lane) for i in range(6)] for lane in ("a", "b", "c")}
    assert {lane: [f.result(10) for f in fs] for lane, fs in futures.items()} == \
        {lane: [2 * i for i in range(6)] for lane in futures}
    assert model.most == 2  # two runs at once, never more
    assert model.most_in_a_lane == 1  # a lane's next request waits for its last
    assert model.done == {lane: list(range(6)) for lane in futures}  # and they ran in the order submitted
    with pytest.raises(ValueError, match="workers"):
        Batcher("test", model, workers=0)


def test_serve_runs_as_many_keyframes_at_once_as_cores_and_streams_allow(models_dir) -> None:
    batching = PipelineConfig().batching
    assert detector_queue_workers(batching, streams=1, cores=2) == 1  # one stream: one at a time, on every core
    assert detector_queue_workers(batching, streams=16, cores=2) == 2
    assert detector_queue_workers(batching, streams=3, cores=8) == 3
    one = PipelineConfig.model_validate({"batching": {"cpu_workers": 1}}).batching
    assert detector_queue_workers(one, streams=16, cores=2) == 1  # as asked
    many = load_models(PipelineConfig(), models_dir, cross_stream=True, streams=16).detector
    assert isinstance(many, BatchedDetector)
    assert many.batcher.workers == detector_queue_workers(batching, 16)
    many.close()


# -- tiny real models: a batch gives what one at a time gives ---------------------------------------------------
def _frames(count: int, size_wh: tuple[int, int] = (320, 192)) -> list[np.ndarray]:
    source = open_source(f"synthetic:?w={size_wh[0]}&h={size_wh[1]}&frames={count}&objects=3&seed=11")
    return [frame.image for frame in source.frames()]


def test_sam2_encoder_batch_equals_one_frame_at_a_time(tiny_models: TinyModels) -> None:
    model = VideoSegmenterModel(Sam2Config(model=str(tiny_models.sam2), device="cpu"))
    pixels = [torch.from_numpy(preprocess_square(image, model.image_size)) for image in _frames(3)]
    batched = model.encode_frames(pixels)
    for one, got in zip(pixels, batched, strict=True):
        (alone,) = model.encode_frames([one])
        for key in ("vision_feats", "vision_pos_embeds"):
            for a, b in zip(alone[key], got[key], strict=True):
                assert a.shape == b.shape
                assert float((a - b).abs().max()) <= 1e-4


def test_streams_sharing_an_encoder_batch_get_their_own_masks(tiny_models: TinyModels) -> None:
    """Two streams on one model with the encoder batched across them, against each alone."""
    alone = VideoSegmenterModel(Sam2Config(model=str(tiny_models.sam2), device="cpu"))
    shared = VideoSegmenterModel(Sam2Config(model=str(tiny_models.sam2), device="cpu"))
    shared.batch_across_streams(max_batch=4, batch_wait_ms=2000)
    sources = [open_source(f"synthetic:?w=320&h=192&frames=10&objects=3&seed={seed}") for seed in (1, 2)]
    clips = [[(f.image, s.boxes_at(f.index) if f.index % 5 == 0 else None) for f in s.frames()] for s in sources]
    expected = []
    for clip in clips:
        stream = alone.new_stream()
        expected.append([stream.update(image, given) for image, given in clip])
    got: dict[int, list] = {}

    def run(k: int) -> None:
        stream = shared.new_stream()
        got[k] = [stream.update(image, given) for image, given in clips[k]]

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert shared.encoder_batcher is not None and shared.encoder_batcher.stats.largest == 2
    shared.encoder_batcher.close()
    for k in (0, 1):
        for a, b in zip(expected[k], got[k], strict=True):
            assert a.tracker_id.tolist() == b.tracker_id.tolist()
            for m1, m2 in zip(a.mask, b.mask, strict=True):
                assert (m1 != m2).sum() <= 0.001 * max(1, m1.sum())


def _detect_from_threads(detector, frames: list[np.ndarray]) -> list:
    got: dict[int, object] = {}

    def run(k: int) -> None:
        got[k] = detector.detect(frames[k])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(frames))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return [got[k] for k in range(len(frames))]


def _same_detections(a, b) -> None:
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
    assert a.data["class_name"].tolist() == b.data["class_name"].tolist()


def test_florence2_batch_equals_one_frame_at_a_time(tiny_models: TinyModels) -> None:
    config = Florence2Config(model=str(tiny_models.florence), device="cpu", max_new_tokens=16)
    detector = Florence2Detector(Florence2Model(config), config)
    frames = _frames(3)
    one_by_one = [detector.generate_text([image])[0] for image in frames]
    assert detector.generate_text(frames) == one_by_one  # one generate() call for the three
    expected = [detector.detect(image) for image in frames]
    batched = BatchedDetector(detector, max_batch=3, batch_wait_ms=3000)
    batched.detect(frames[0])  # three lanes become known only as they submit; the budget lets them meet
    got = _detect_from_threads(batched, frames)
    assert batched.batcher.stats.largest == 3
    batched.close()
    for a, b in zip(expected, got, strict=True):
        _same_detections(a, b)


def test_yolox_from_many_threads_gets_its_own_detections(models_dir) -> None:
    from streamvis.detection import load_yolox

    detector = load_yolox(YoloxConfig(), models_dir)
    batched = BatchedDetector(detector, max_batch=4, batch_wait_ms=20)
    frames = _frames(4, (640, 360))
    expected = [detector.detect(image) for image in frames]
    got = _detect_from_threads(batched, frames)
    batched.close()
    for a, b in zip(expected, got, strict=True):
        _same_detections(a, b)


@pytest.mark.parametrize(("enabled", "provider", "expected"), [
    ("auto", "torch:cuda:bfloat16", True), ("auto", "tensorrt", True), ("auto", "cpu", False),
    ("auto", "torch:cpu:float32", False), (True, "cpu", True), (False, "torch:cuda:float16", False)])
def test_batching_switch(enabled, provider, expected) -> None:
    config = PipelineConfig.model_validate({"batching": {"enabled": enabled}})
    assert batches_across_streams(config.batching, provider) is expected


@pytest.mark.parametrize(("enabled", "provider", "expected"), [
    ("auto", "onnxruntime:cuda fp16", 8), ("auto", "cpu", 1), (True, "cpu", 8), (False, "cpu", None),
    (False, "torch:cuda:float16", None)])
def test_serve_queues_keyframes_on_a_cpu_and_batches_them_on_a_gpu(enabled, provider, expected) -> None:
    config = PipelineConfig.model_validate({"batching": {"enabled": enabled}})
    assert detector_queue_batch(config.batching, provider) == expected


def test_serve_loads_models_with_batching_when_asked(models_dir) -> None:
    config = PipelineConfig.model_validate({"batching": {"enabled": True, "max_batch": 3}})
    models = load_models(config, models_dir, cross_stream=True)
    assert isinstance(models.detector, BatchedDetector) and models.detector.batcher.max_batch == 3
    models.detector.close()
    assert not isinstance(load_models(config, models_dir).detector, BatchedDetector)  # offline: one stream
    on_cpu = load_models(PipelineConfig(), models_dir, cross_stream=True).detector  # serve's default on a CPU
    assert isinstance(on_cpu, BatchedDetector) and on_cpu.batcher.max_batch == 1
    on_cpu.close()
    off = PipelineConfig.model_validate({"batching": {"enabled": False}})
    assert not isinstance(load_models(off, models_dir, cross_stream=True).detector, BatchedDetector)
