"""The package as a user installs it: a wheel, built from the sources and installed the ordinary way (not
editable) into a fresh environment, carries the built-in pipelines and the viewer page. From a folder with no
`pipelines/` of its own, `streamvis process -p detect` runs and `streamvis serve` serves a page that loads and
a viewer that gets frames, with none of the extras installed (no torch, transformers, onnx, pycocotools, Ray):
the light install is the CPU path. A pipeline that needs an extra says which, before anything loads.

The fresh environment borrows the test environment's installed dependencies, all but the extras', through a
path entry (links to each installed package), so that this test needs no downloads; only streamvis itself comes
from the wheel, and the test checks that it is that copy that runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
from support import ROOT, cut_clip

#: what only the extras bring (and their own dependencies that nothing else needs): kept out of the light install
EXTRAS_ONLY = frozenset({"torch", "torchgen", "functorch", "transformers", "tokenizers", "onnx", "onnxscript",
                         "onnx_ir", "pycocotools", "ray", "nvidia", "triton", "huggingface_hub", "safetensors"})

SKIP_COPY = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".mypy_cache",
                                   ".ruff_cache", ".pytest_cache", "out", "tests", "benchmarks")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with streamvis installed from a wheel; returns its bin folder."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "src"
    shutil.copytree(ROOT, source, ignore=SKIP_COPY, symlinks=True)  # streamvis/pipelines -> ../pipelines, as in git
    dist = root / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("streamvis-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    fresh_python = venv / "bin" / "python"
    site = subprocess.run([str(fresh_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    light = root / "light-dependencies"  # the test environment's packages but the extras'
    light.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        top = entry.name.split("-")[0].split(".")[0].lower()
        if top not in EXTRAS_ONLY and not top.startswith(("__editable__", "streamvis")) and entry.suffix != ".pth":
            (light / entry.name).symlink_to(entry)
    Path(site, "borrowed-dependencies.pth").write_text(f"{light}\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh_python), "install", "--no-deps",
                              "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    return venv / "bin"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STREAMVIS_MODELS_DIR")}


def test_the_wheel_carries_pipelines_and_the_viewer(installed: Path, tmp_path: Path) -> None:
    code = ("import json, streamvis, streamvis.config as c, streamvis.server.routes as r; print(json.dumps("
            "[streamvis.__file__, sorted(p.name for p in c.BUILTIN_PIPELINES_DIR.glob('*.yaml')), "
            "sorted(p.name for p in r.WEB_DIR.iterdir())]))")
    out = subprocess.run([str(installed / "python"), "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env=_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    module, pipelines, web = json.loads(out.stdout)
    assert module.startswith(str(installed.parent)) and "site-packages" in module  # the wheel's copy, not ours
    assert pipelines == ["detect.yaml", "grounded.yaml", "narrate.yaml", "segment.yaml"]
    assert {"index.html", "app.js", "style.css"} <= set(web)


def test_the_light_install_has_no_extras(installed: Path, tmp_path: Path) -> None:
    code = ("import importlib.util as u; print([m for m in ('torch', 'transformers', 'onnx', 'pycocotools', 'ray') "
            "if u.find_spec(m)])")
    out = subprocess.run([str(installed / "python"), "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env=_env(), timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_pipeline_that_needs_an_extra_names_it(installed: Path, tmp_path: Path) -> None:
    result = subprocess.run([str(installed / "streamvis"), "process", "synthetic:?frames=5", "-o", "o.mp4", "-p",
                             "detect", "--set", "segmenter.type=sam2"], capture_output=True, text=True,
                            cwd=tmp_path, env=_env(), timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == \
        "error: segmenter.type sam2 needs torch: pip install 'streamvis[sam]'"
    assert not (tmp_path / "o.mp4").exists()


def test_process_with_a_builtin_pipeline_from_another_folder(installed: Path, tmp_path: Path, person_video: Path,
                                                             models_dir: Path) -> None:
    clip = cut_clip(person_video, tmp_path / "clip.mp4", 20)
    result = subprocess.run([str(installed / "streamvis"), "process", str(clip), "-o", "out.mp4", "-p", "detect",
                             "--events", "out.jsonl", "--models-dir", str(models_dir), "-q"],
                            capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 20 and (tmp_path / "out.mp4").stat().st_size


def test_serve_from_another_folder_serves_the_page(installed: Path, tmp_path: Path, person_video: Path,
                                                   models_dir: Path) -> None:
    from support import free_port

    port = free_port()
    server = subprocess.Popen([str(installed / "streamvis"), "serve", "--source", str(person_video), "--port",
                               str(port), "--models-dir", str(models_dir)], cwd=tmp_path, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, page = time.monotonic() + 60, ""
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    page = response.read().decode()
                break
            except OSError:
                time.sleep(0.3)
        assert "<html" in page.lower() and "app.js" in page
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/web/app.js", timeout=5) as response:
            assert response.status == 200 and b"RTCPeerConnection" in response.read()
        viewer = subprocess.run([str(installed / "python"), str(ROOT / "clients" / "python" / "streamvis_client.py"),
                                 f"http://127.0.0.1:{port}", "--frames", "10"], capture_output=True, text=True,
                                cwd=tmp_path, env=_env(), timeout=120)
        assert viewer.returncode == 0 and "10 frames" in viewer.stderr, viewer.stderr
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=15)
    assert "serving" in output
