"""Every script in examples/ runs as its comment says, on small inputs: the camera in the browser (read back by
the detections example), the NVR (two cameras, recorded), the narrated camera, a folder of videos to MP4 + JSONL,
and the same folder on Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import PERSON_VIDEO, ROOT, cut_clip, free_port, need

EXAMPLES = ROOT / "examples"
CAMERA = "synthetic:?w=320&h=192&fps=15&objects=2&realtime=1"


@contextmanager
def example_server(script: str, env: dict[str, str], models_dir: Path) -> Iterator[str]:
    """Run a serve example in the background until its /healthz answers; yields its URL; stops it (SIGINT)."""
    port = free_port()
    full_env = {**os.environ, "PORT": str(port), "MODELS_DIR": str(models_dir),
                "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **env}
    proc = subprocess.Popen(["bash", str(EXAMPLES / script)], env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2).read()
                break
            except OSError:
                time.sleep(0.3)
        assert proc.poll() is None, proc.communicate()[0]
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def _streams(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/streams", timeout=5) as answer:
        return json.load(answer)["streams"]


def test_a_camera_in_the_browser_read_back_from_python(models_dir: Path) -> None:
    with example_server("camera_in_browser.sh", {"SOURCE": CAMERA}, models_dir) as url:
        page = urllib.request.urlopen(f"{url}/", timeout=5).read().decode()
        assert "app.js" in page
        result = subprocess.run([sys.executable, str(EXAMPLES / "read_detections.py"), url, "--seconds", "6"],
                                capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("frame ") for line in lines), result.stdout
    assert "frames," in lines[-1] and int(lines[-1].split()[0]) > 10


def test_the_nvr_records_every_camera(models_dir: Path, tmp_path: Path) -> None:
    cameras = f"{CAMERA}&seed=1 {CAMERA}&seed=2"
    recordings = tmp_path / "recordings"
    with example_server("nvr.sh", {"CAMERAS": cameras, "RECORDINGS": str(recordings), "SEGMENT_S": "2"},
                        models_dir) as url:
        assert len(_streams(url)) == 2
        time.sleep(5)
    folders = sorted(p for p in recordings.iterdir() if p.is_dir())
    assert len(folders) == 2
    for folder in folders:
        assert list(folder.glob("*.mp4")) and list(folder.glob("*.jsonl")), list(folder.iterdir())


def test_the_narrated_camera_runs_the_narrate_pipeline(models_dir: Path) -> None:
    with example_server("narrated_camera.sh", {"SOURCE": CAMERA}, models_dir) as url:
        (stream,) = _streams(url)
        assert stream["pipeline"] == "narrate"


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short cuts of the shared person video, made once for this module."""
    need(PERSON_VIDEO)
    folder = tmp_path_factory.mktemp("videos")
    cut_clip(PERSON_VIDEO, folder / "a.mp4", 120)  # the person walks in within its first 12 s
    cut_clip(PERSON_VIDEO, folder / "b.mp4", 30, {"g": "10"})
    return folder


def test_a_folder_of_videos_to_mp4_and_jsonl(videos: Path, tmp_path: Path, models_dir: Path) -> None:
    result = subprocess.run([sys.executable, str(EXAMPLES / "videos_to_mp4_jsonl.py"), str(videos), str(tmp_path),
                             "--models-dir", str(models_dir)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = sorted(result.stdout.splitlines())
    assert len(lines) == 2 and "120 frames" in lines[0] and "30 frames" in lines[1], result.stdout
    assert lines[0].endswith("1 person") and lines[1].endswith("nothing tracked"), result.stdout
    assert (tmp_path / "a.mp4").stat().st_size and (tmp_path / "a.jsonl").is_file()


def test_a_folder_of_videos_on_ray(videos: Path, tmp_path: Path, models_dir: Path) -> None:
    pytest.importorskip("ray")
    result = subprocess.run([sys.executable, str(EXAMPLES / "ray_folder.py"), str(videos), str(tmp_path),
                             "--models-dir", str(models_dir)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert sorted(line.split(":")[1].split()[:2] for line in result.stdout.splitlines()) == [
        ["ok", "120"], ["ok", "30"]], result.stdout
