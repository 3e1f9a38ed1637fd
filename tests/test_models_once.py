"""Models are loaded once per process and shared by every stream: three served sources and a WHIP publisher run
one Florence-2 (detecting and narrating), one SAM 2.1 and one processor, each stream with its own SAM 2 session
and narration policy. Tiny random models, loaded from folders in-process, and by hub id (offline) by `serve`."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from support import TinyModels

from streamvis.config import load_pipeline
from streamvis.detection.batched import BatchedDetector
from streamvis.live.settings import LiveSettings
from streamvis.server.serve import build_streams
from streamvis.sources import open_source

SOURCE = "synthetic:?w=160&h=96&fps=20&frames=0&objects=2&realtime=1&seed={seed}"  # endless, like a camera


def _segment_and_narrate(florence: str, sam2: str) -> list[str]:
    return [f"detector.model={florence}", "detector.max_new_tokens=12", "detector.every_n_frames=10",
            f"segmenter.model={sam2}", "narrator.type=florence2", f"narrator.model={florence}",
            "narrator.max_new_tokens=8"]


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts `from_pretrained` calls per transformers class: what loading a model costs."""
    import transformers

    counts: Counter[str] = Counter()
    for name in ("Florence2ForConditionalGeneration", "Sam2VideoModel", "AutoProcessor"):
        cls = getattr(transformers, name)
        original = cls.from_pretrained.__func__

        def counted(klass: Any, *args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            counts[_name] += 1
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(counted))
    return counts


def test_three_streams_and_a_publisher_share_one_load_of_each_model(tiny_models: TinyModels,
                                                                      loads: Counter[str]) -> None:
    config = load_pipeline("segment", _segment_and_narrate(str(tiny_models.florence), str(tiny_models.sam2)))
    sources = [SOURCE.format(seed=seed) for seed in (1, 2, 3)]
    streams, make_stream = build_streams(sources, config, None, LiveSettings())
    streams["phone"] = make_stream("phone", lambda: open_source(SOURCE.format(seed=4)))  # as a WHIP publisher
    assert loads == {"Florence2ForConditionalGeneration": 1, "Sam2VideoModel": 1, "AutoProcessor": 1}

    pipelines = [s.pipeline for s in streams.values()]
    assert len(pipelines) == 4
    shared = pipelines[0].models
    assert all(p.models is shared for p in pipelines)  # one detector, one segmenter model, one narrator model
    detector = shared.detector
    assert isinstance(detector, BatchedDetector)  # on a CPU too: every stream's keyframes through one queue
    assert shared.narrator is not None and shared.narrator.runner is detector.inner.model  # type: ignore[attr-defined]
    assert len({id(p.segmenter) for p in pipelines}) == 4  # a SAM 2 session per stream
    assert len({id(p.segmenter.session) for p in pipelines}) == 4  # type: ignore[union-attr]
    assert len({id(p.narrator) for p in pipelines}) == 4  # a narration policy per stream

    for stream in streams.values():
        stream.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(s.stats.frames_out < 10 or s.detection.calls < 1
                                              for s in streams.values()):
        time.sleep(0.2)
    for stream in streams.values():
        stream.stop()
    assert all(s.stats.frames_out >= 10 for s in streams.values())
    assert all(s.detection.calls >= 1 for s in streams.values())
    assert loads == {"Florence2ForConditionalGeneration": 1, "Sam2VideoModel": 1, "AutoProcessor": 1}


def test_serve_logs_one_load_per_model_for_three_sources(tiny_models: TinyModels) -> None:
    """The same as a user sees it: `streamvis serve` with three sources says once what it loaded."""
    from test_serve import Server

    overrides = [arg for item in _segment_and_narrate(tiny_models.FLORENCE, tiny_models.SAM2)
                 for arg in ("--set", item)]
    sources = [arg for seed in (1, 2, 3) for arg in ("--source", SOURCE.format(seed=seed))]
    server = Server(*sources, "-p", "segment", *overrides, env=tiny_models.offline_env)
    try:
        for stream in ("synthetic", "synthetic-2", "synthetic-3"):
            server.wait_ready(timeout=120, stream=stream)
    finally:
        log = server.stop()
    loaded = [line for line in log.splitlines() if line.startswith("info: loaded ")]
    assert len([line for line in loaded if "Florence-2 (detector and narrator)" in line]) == 1, log
    assert len([line for line in loaded if "loaded segmenter" in line]) == 1, log
    assert len(loaded) == 2, log  # Florence-2 and the segmenter; the narrator runs on the same Florence-2
    assert "narrator: on the detector's Florence-2" in log
