"""Helpers the tests share (a package, imported as `support`; fixtures stay in `conftest.py`): where ../shared
is, skipping with a reason when it is absent (failing in CI), small media made with PyAV, the CLI run as a user
runs it, tiny random-weight models published as hub ids, and ports reserved per test worker."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SHARED = ROOT.parent / "shared"
MEDIA = SHARED / "media"
MODELS = SHARED / "models"
VIDEOS = MEDIA / "videos"
PERSON_VIDEO = VIDEOS / "intel_one-by-one-person-detection.mp4"
CAR_VIDEO = VIDEOS / "intel_car-detection.mp4"
YOLOX_NANO = MODELS / "yolox-nano" / "yolox_nano.onnx"
sys.path.insert(0, str(ROOT / "clients" / "python"))  # the Python client, as the tests and benchmarks use it


def need(path: Path) -> None:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing in CI: ../shared must be beside the checkout")
        pytest.skip(f"needs {path} (the shared media/models folder beside the checkout; absent here)")



#: ports a test reserves live below the kernel's ephemeral range (32768-60999 by default), where a server bound to
#: port 0 never lands, in a block per pytest-xdist worker, never handed out twice in one worker: a port a test
#: gives up for a while (a camera restarted on its port) cannot be taken by another test meanwhile
PORT_BLOCK = 400
_ports = itertools.count()


SYSTEM_PYTHON = "/usr/bin/python3"  # the one with `gi` (GStreamer's RTSP server, webrtcbin)
RTSP_SERVER_SCRIPT = ROOT / "tests" / "rtsp_server.py"


def has_rtsp_server() -> bool:
    """Whether GStreamer's rtsp-server (with x264enc) runs under the system Python."""
    probe = ("import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer; "
             "from gi.repository import Gst; Gst.init(None); assert Gst.ElementFactory.find('x264enc')")
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def need_rtsp_server() -> None:
    """Skip the calling module without GStreamer's RTSP server; in CI, fail: it must be installed there."""
    if has_rtsp_server():
        return
    if os.environ.get("CI"):
        raise RuntimeError("CI needs GStreamer's RTSP server: python3-gi gir1.2-gst-rtsp-server-1.0 "
                           "gstreamer1.0-plugins-{base,good,ugly} (scripts/test.sh installs them)")
    import pytest

    pytest.skip("needs GStreamer's RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0)", allow_module_level=True)


@contextlib.contextmanager
def rtsp_camera(name: str, video: Path, audio: bool = False) -> Iterator[str]:
    """`video` as a real RTSP camera (GStreamer's rtsp-server on 127.0.0.1 replaying it without re-encoding, with
    its audio when `audio`): yields the camera's rtsp:// URL."""
    need_rtsp_server()
    need(video)
    port = free_port()
    server = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), "--port", str(port),
                               *(["--audio"] if audio else []), "--file", f"{name}={video}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("ready"), line
        yield line.split()[-1]
    finally:
        server.kill()
        server.wait()


def free_port() -> int:
    """A port on 127.0.0.1 that is free now and that no other test of this run will be given."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ... under pytest-xdist
    block = int(worker[2:]) + 1 if worker.startswith("gw") else 0
    base = 20000 + PORT_BLOCK * block
    for _ in range(PORT_BLOCK):
        port = base + next(_ports) % PORT_BLOCK
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # something outside the suite holds it
            return port
    raise RuntimeError(f"no free port in {base}-{base + PORT_BLOCK - 1}")


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
    CLIP = "streamvis-test/tiny-clip"
    SIGLIP = "streamvis-test/tiny-siglip"
    SIGLIP2 = "streamvis-test/tiny-siglip2"

    def __init__(self, root: Path) -> None:
        from streamvis.testing.models import build_clip, build_florence2, build_sam, build_sam2_video, build_sam3_video
        from streamvis.testing.vlm import build_idefics3, build_paligemma

        self.root = root
        self.florence = build_florence2(root / "florence2")
        self.sam2 = build_sam2_video(root / "sam2")
        self.edgetam = build_sam2_video(root / "edgetam", kind="edgetam")
        self.sam = build_sam(root / "sam")
        self.sam3 = build_sam3_video(root / "sam3")
        self.idefics3 = build_idefics3(root / "idefics3")
        self.paligemma = build_paligemma(root / "paligemma")
        self.clip = build_clip(root / "clip")
        self.siglip = build_clip(root / "siglip", kind="siglip")
        self.siglip2 = build_clip(root / "siglip2", kind="siglip2")
        self.hf_cache = root / "hf-cache"
        for folder, repo_id in ((self.florence, self.FLORENCE), (self.sam2, self.SAM2),
                                (self.edgetam, self.EDGETAM), (self.sam, self.SAM), (self.sam3, self.SAM3),
                                (self.idefics3, self.IDEFICS3), (self.paligemma, self.PALIGEMMA),
                                (self.clip, self.CLIP), (self.siglip, self.SIGLIP),
                                (self.siglip2, self.SIGLIP2)):
            publish_to_hf_cache(folder, repo_id, self.hf_cache)

    @property
    def offline_env(self) -> dict[str, str]:
        """Environment in which the hub ids above resolve from the private cache, as a user's would offline."""
        return {"HF_HUB_CACHE": str(self.hf_cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}


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
