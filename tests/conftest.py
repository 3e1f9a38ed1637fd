"""Shared fixtures: where ../shared is, skipping with a reason when it is absent, and small media helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
MEDIA = SHARED / "media"
MODELS = SHARED / "models"
VIDEOS = MEDIA / "videos"
PERSON_VIDEO = VIDEOS / "intel_one-by-one-person-detection.mp4"
CAR_VIDEO = VIDEOS / "intel_car-detection.mp4"
YOLOX_NANO = MODELS / "yolox-nano" / "yolox_nano.onnx"
sys.path.insert(0, str(ROOT / "clients" / "python"))  # the Python client, as the tests and benchmarks use it


def pytest_configure() -> None:
    """Each pytest-xdist worker gets its share of the cores for torch's OpenMP threads, and hands that on to the
    servers and CLIs it starts (before torch is imported: it reads OMP_NUM_THREADS once). Two workers with two
    spinning OpenMP threads each on 2 cores ran the model tests 2.7 times slower (294 s against 110 s)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // workers)))


def _need(path: Path) -> None:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing in CI: ../shared must be beside the checkout")
        pytest.skip(f"needs {path} (the shared media/models folder beside the checkout; absent here)")


@pytest.fixture(autouse=True)
def _scheduling_unchanged() -> Iterator[None]:
    """No test leaves the test process real-time: a SCHED_FIFO pytest (SVT-AV1 does that as root) starves the
    servers and clients later tests start, which inherit it."""
    before = os.sched_getscheduler(0)
    yield
    assert os.sched_getscheduler(0) == before, "this test left the test process with another scheduling policy"


@pytest.fixture
def person_video() -> Path:
    _need(PERSON_VIDEO)
    return PERSON_VIDEO


@pytest.fixture
def car_video() -> Path:
    _need(CAR_VIDEO)
    return CAR_VIDEO


@pytest.fixture
def coco128() -> Path:
    _need(MEDIA / "coco128")
    return MEDIA / "coco128"


@pytest.fixture
def models_dir() -> Path:
    _need(YOLOX_NANO)
    return MODELS


def make_clip(path: Path, frames: int = 30, fps: int = 10, size_wh: tuple[int, int] = (160, 96),
              audio: str | None = None, codec: str = "libx264") -> Path:
    """Write a small clip with PyAV: a moving white square, optionally a 440 Hz tone (`aac` or `pcm_s16le`)."""
    width, height = size_wh
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        astream = None
        if audio:
            astream = container.add_stream(audio, rate=48000)
            astream.layout = "mono"
        for i in range(frames):
            image = np.full((height, width, 3), 40, np.uint8)
            x = (i * 4) % (width - 20)
            image[30:50, x : x + 20] = 255
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if astream is not None:
            total = int(48000 * frames / fps)
            t = np.arange(total) / 48000
            tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
            step = 1024
            for start in range(0, total, step):
                chunk = tone[start : start + step]
                aframe = av.AudioFrame.from_ndarray(chunk[None], format="s16", layout="mono")
                aframe.sample_rate = 48000
                aframe.pts = start
                aframe.time_base = Fraction(1, 48000)
                for packet in astream.encode(aframe):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `streamvis ARGS` as a user would: a subprocess of the installed entry point."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("COLUMNS", None)
    exe = Path(sys.executable).parent / "streamvis"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd or ROOT)


def publish_to_hf_cache(folder: Path, repo_id: str, cache_dir: Path) -> None:
    """Lay out `folder` in a Hugging Face hub cache as snapshot `repo_id`@main, as `hf download` would."""
    import shutil

    commit = "0" * 40
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(folder, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


class TinyModels:
    """Random-weight tiny models as local folders and as hub ids in a private HF cache (offline)."""

    FLORENCE = "streamvis-test/tiny-florence2"
    SAM2 = "streamvis-test/tiny-sam2.1"
    EDGETAM = "streamvis-test/tiny-edgetam"
    SAM = "streamvis-test/tiny-sam"
    SAM3 = "streamvis-test/tiny-sam3"
    IDEFICS3 = "streamvis-test/tiny-smolvlm"
    PALIGEMMA = "streamvis-test/tiny-paligemma2"

    def __init__(self, root: Path) -> None:
        from streamvis.testing.models import build_florence2, build_sam, build_sam2_video, build_sam3_video
        from streamvis.testing.vlm import build_idefics3, build_paligemma

        self.root = root
        self.florence = build_florence2(root / "florence2")
        self.sam2 = build_sam2_video(root / "sam2")
        self.edgetam = build_sam2_video(root / "edgetam", kind="edgetam")
        self.sam = build_sam(root / "sam")
        self.sam3 = build_sam3_video(root / "sam3")
        self.idefics3 = build_idefics3(root / "idefics3")
        self.paligemma = build_paligemma(root / "paligemma")
        self.hf_cache = root / "hf-cache"
        for folder, repo_id in ((self.florence, self.FLORENCE), (self.sam2, self.SAM2),
                                (self.edgetam, self.EDGETAM), (self.sam, self.SAM), (self.sam3, self.SAM3),
                                (self.idefics3, self.IDEFICS3), (self.paligemma, self.PALIGEMMA)):
            publish_to_hf_cache(folder, repo_id, self.hf_cache)

    @property
    def offline_env(self) -> dict[str, str]:
        """Environment in which the hub ids above resolve from the private cache, as a user's would offline."""
        return {"HF_HUB_CACHE": str(self.hf_cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}


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


def cut_clip(source: Path, path: Path, frames: int, options: dict[str, str] | None = None,
             pts: Callable[[int], int] | None = None) -> Path:
    """The first `frames` frames of `source` re-encoded (H.264, x264 `options` on top of ultrafast) into `path`'s
    container, for short real-media tests; `pts(i)` (in frame periods) gives frame `i` variable timing."""
    with av.open(str(source)) as src, av.open(str(path), "w") as dst:
        stream = src.streams.video[0]
        out = dst.add_stream("libx264", rate=stream.average_rate)
        out.width, out.height, out.pix_fmt = stream.width, stream.height, "yuv420p"
        out.options = {"preset": "ultrafast", "crf": "18", **(options or {})}
        period = Fraction(1, 1) / stream.average_rate
        if pts is not None:
            out.codec_context.time_base = period
        for i, frame in enumerate(src.decode(stream)):
            if i >= frames:
                break
            image = av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), format="bgr24")
            if pts is not None:
                image.pts, image.time_base = pts(i), period
            for packet in out.encode(image):
                dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)
    return path
