"""Model resolution (models folder, cache, sha256-checked download from a loopback server) and sessions."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamvis.errors import ModelError
from streamvis.runtime.session import choose_providers, create_session
from streamvis.weights.registry import REGISTRY, ModelFile, download, resolve_model


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def test_download_checks_sha256_and_caches(file_server, tmp_path: Path) -> None:
    base, root = file_server
    (root / "m.onnx").write_bytes(b"weights" * 1000)
    good = ModelFile("m.onnx", f"{base}/m.onnx", hashlib.sha256(b"weights" * 1000).hexdigest())
    target = tmp_path / "cache" / "m" / "m.onnx"
    assert download(good, target, show_progress=False) == target
    assert target.read_bytes() == b"weights" * 1000
    bad = ModelFile("m.onnx", f"{base}/m.onnx", "0" * 64)
    other = tmp_path / "cache2" / "m.onnx"
    with pytest.raises(ModelError, match="failed its checksum"):
        download(bad, other, show_progress=False)
    assert not other.exists() and list(other.parent.iterdir()) == []  # nothing half-written is left


def test_download_unreachable_says_how_to_go_offline(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("STREAMVIS_MODELS_DIR", raising=False)
    entry = REGISTRY["yolox-nano"]
    unreachable = ModelFile(entry.weights.name, "http://127.0.0.1:9/yolox_nano.onnx", entry.weights.sha256)
    monkeypatch.setitem(REGISTRY, "yolox-nano", type(entry)(entry.name, entry.kind, unreachable))
    with pytest.raises(ModelError, match=r"cannot download yolox_nano.onnx .*--models-dir"):
        resolve_model("yolox-nano", None, cache_dir=tmp_path)


def test_offline_mode_never_downloads(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("STREAMVIS_MODELS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"yolox-nano is not in the models folder .* put yolox_nano.onnx in"):
        resolve_model("yolox-nano", None, cache_dir=tmp_path)


def test_models_folder_and_cache_lookup(models_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("STREAMVIS_MODELS_DIR", raising=False)  # scripts/test.sh sets it
    path, entry = resolve_model("yolox-nano", models_dir, cache_dir=tmp_path)
    assert path == models_dir / "yolox-nano" / "yolox_nano.onnx" and entry is REGISTRY["yolox-nano"]
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "yolox_nano.onnx").symlink_to(path)
    assert resolve_model("yolox-nano", flat, cache_dir=tmp_path)[0] == flat / "yolox_nano.onnx"
    cached = tmp_path / "yolox-nano" / "yolox_nano.onnx"
    cached.parent.mkdir()
    cached.symlink_to(path)
    assert resolve_model("yolox-nano", None, cache_dir=tmp_path)[0] == cached


@pytest.mark.parametrize(
    ("name", "message"),
    [("yolox-huge", "unknown model 'yolox-huge': give a path to an .onnx file or one of: yolox-nano"),
     ("/no/such/model.onnx", "model file not found: /no/such/model.onnx")],
)
def test_bad_model_names(name: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        resolve_model(name)


@pytest.mark.parametrize(
    ("wanted", "available", "chosen"),
    [(["tensorrt", "cuda", "cpu"], ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
     (["tensorrt", "cuda", "cpu"], ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
      ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]),
     (["cuda"], ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
     (["cpu", "cuda"], ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider",
                                                                           "CUDAExecutionProvider"])],
)
def test_choose_providers(wanted, available, chosen) -> None:
    assert choose_providers(wanted, available) == chosen


def test_session_reports_the_provider_in_use(models_dir: Path, caplog) -> None:
    caplog.set_level("INFO", logger="streamvis")
    _, in_use = create_session(models_dir / "yolox-nano" / "yolox_nano.onnx", ["tensorrt", "cuda", "cpu"], "nano")
    assert in_use == "cpu"  # no GPU here: what is really used, not what was asked for
    assert "provider in use: cpu" in caplog.text


def test_corrupt_model_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=f"cannot load bad from {bad}"):
        create_session(bad, ["cpu"], "bad")
