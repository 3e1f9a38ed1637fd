"""Shared fixtures and hooks; the helpers they use are in `support` (tests import them from there)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import (
    CAR_VIDEO,
    MEDIA,
    MODELS,
    PERSON_VIDEO,
    ROOT,
    YOLOX_NANO,
    TinyModels,
    need,
)

sys.path.insert(0, str(ROOT / "clients" / "python"))  # the Python client, as the tests and benchmarks use it


def pytest_configure() -> None:
    """Each pytest-xdist worker gets its share of the cores for torch's OpenMP threads, and hands that on to the
    servers and CLIs it starts (before torch is imported: it reads OMP_NUM_THREADS once). Two workers with two
    spinning OpenMP threads each on 2 cores ran the model tests 2.7 times slower (294 s against 110 s)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // workers)))


#: fixtures that bring real media or weights from ../shared
SHARED_FIXTURES = frozenset({"person_video", "car_video", "coco128", "models_dir"})
#: fixtures that build models (tiny random weights, ONNX exports): seconds to minutes each
MODEL_FIXTURES = frozenset({"tiny_models", "sam2_onnx", "sam2_onnx_cache"})
#: modules that start servers, browsers, cameras, SFUs, Ray clusters, exports or whole CLI runs
SLOW_MODULES = frozenset({
    "test_accessibility", "test_aiortc_compat", "test_browser", "test_cli_process", "test_cli_segment",
    "test_examples", "test_fast_path", "test_gpu", "test_interactive", "test_narration_e2e", "test_narration_real",
    "test_network_media", "test_reading_real",
    "test_onnx_parts", "test_onnx_runtime", "test_packaging", "test_prompt_server", "test_ray", "test_readme",
    "test_record", "test_rtsp", "test_serve", "test_sfu", "test_webrtc_interop", "test_yolox_accuracy",
    "test_yolox_int8",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tiers (`-m`): `shared` where a test reads ../shared, `fast` where it needs no shared media, no model
    build and nothing a slow module starts (`scripts/test.sh --fast`)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        module = item.module.__name__ if item.module is not None else ""
        if fixtures & SHARED_FIXTURES:
            item.add_marker(pytest.mark.shared)
        if not fixtures & (SHARED_FIXTURES | MODEL_FIXTURES) and module not in SLOW_MODULES:
            item.add_marker(pytest.mark.fast)


@pytest.fixture(autouse=True)
def _scheduling_unchanged() -> Iterator[None]:
    """No test leaves the test process real-time: a SCHED_FIFO pytest (SVT-AV1 does that as root) starves the
    servers and clients later tests start, which inherit it."""
    before = os.sched_getscheduler(0)
    yield
    assert os.sched_getscheduler(0) == before, "this test left the test process with another scheduling policy"


@pytest.fixture
def person_video() -> Path:
    need(PERSON_VIDEO)
    return PERSON_VIDEO


@pytest.fixture
def car_video() -> Path:
    need(CAR_VIDEO)
    return CAR_VIDEO


@pytest.fixture
def coco128() -> Path:
    need(MEDIA / "coco128")
    return MEDIA / "coco128"


@pytest.fixture
def models_dir() -> Path:
    need(YOLOX_NANO)
    return MODELS


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def sam2_onnx(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny SAM 2.1's four graphs exported once in fp32 (its model id: the folder), for the ONNX tests to
    read (never to write)."""
    from transformers import Sam2VideoModel

    from streamvis.segmentation.sam2_onnx import export_sam2

    model = Sam2VideoModel.from_pretrained(tiny_models.sam2).eval()
    return export_sam2(model, str(tiny_models.sam2), tmp_path_factory.mktemp("sam2-onnx") / "fp32")


@pytest.fixture
def sam2_onnx_cache(tiny_models: TinyModels, sam2_onnx: Path, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A streamvis cache (here and in the subprocesses run with the returned environment) that already holds the
    fp32 export of the tiny SAM 2.1 under its model id, the folder."""
    import shutil

    from streamvis.runtime.export import export_folder

    monkeypatch.setenv("STREAMVIS_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(sam2_onnx, export_folder(str(tiny_models.sam2)))
    return {**tiny_models.offline_env, "STREAMVIS_CACHE_DIR": str(tmp_path / "cache")}


