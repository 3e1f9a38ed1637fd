"""Shared fixtures: where ../shared is, skipping with a reason when it is absent, and small media helpers."""

from __future__ import annotations

import os
import subprocess
import sys
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


def _need(path: Path) -> None:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing in CI: ../shared must be beside the checkout")
        pytest.skip(f"needs {path} (the shared media/models folder beside the checkout; absent here)")


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
