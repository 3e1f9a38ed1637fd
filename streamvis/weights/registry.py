"""Known models by name: found in a local models folder, else in the cache, else downloaded once and
checked by sha256. A path is used as it is."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from streamvis import env
from streamvis.errors import ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelFile:
    name: str
    url: str
    sha256: str


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A model streamvis knows by name: its files, where they come from, and how to check them."""

    name: str
    kind: str
    weights: ModelFile
    classes_file: str | None = None  # a class-names file looked for beside the weights
    licence: str = ""


REGISTRY: dict[str, RegisteredModel] = {
    "yolox-nano": RegisteredModel(
        name="yolox-nano",
        kind="yolox",
        weights=ModelFile(
            "yolox_nano.onnx",
            "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx",
            "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
        ),
        classes_file="coco_classes.txt",
        licence="Apache-2.0 (Megvii YOLOX)",
    ),
}


def default_cache_dir() -> Path:
    return env.cache_dir() / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(file: ModelFile, destination: Path, show_progress: bool = True) -> Path:
    """Fetch `file.url` to `destination` atomically; a wrong sha256 leaves nothing behind."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from %s", file.name, file.url)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{file.name}.", dir=destination.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(file.url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                          TransferSpeedColumn(), disable=not show_progress, transient=True) as progress:
                task = progress.add_task(f"downloading {file.name}", total=total)
                while block := response.read(1 << 16):
                    out.write(block)
                    progress.advance(task, len(block))
        actual = sha256_of(tmp)
        if actual != file.sha256:
            raise ModelError(f"{file.name} from {file.url} failed its checksum (sha256 {actual}, expected "
                             f"{file.sha256}); nothing was cached")
        tmp.replace(destination)
        return destination
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ModelError(f"cannot download {file.name} from {file.url}: {reason}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def resolve_model(name_or_path: str, models_dir: str | Path | None = None,
                  cache_dir: Path | None = None, allow_download: bool = True) -> tuple[Path, RegisteredModel | None]:
    """Where the weights of `name_or_path` are on disk, fetching a registered model once if needed."""
    path = Path(name_or_path).expanduser()
    if name_or_path not in REGISTRY:
        if path.suffix or os.sep in name_or_path:
            if not path.is_file():
                raise ModelError(f"model file not found: {path}")
            return path, None
        known = ", ".join(sorted(REGISTRY))
        raise ModelError(f"unknown model '{name_or_path}': give a path to an .onnx file or one of: {known}")
    entry = REGISTRY[name_or_path]
    models_dir = models_dir or env.models_dir()
    if models_dir:
        for candidate in (Path(models_dir) / entry.name / entry.weights.name, Path(models_dir) / entry.weights.name):
            if candidate.is_file():
                log.info("%s: using %s", entry.name, candidate)
                return candidate, entry
    cached = (cache_dir or default_cache_dir()) / entry.name / entry.weights.name
    if cached.is_file():
        return cached, entry
    if not allow_download or env.offline():
        raise ModelError(f"{entry.name} is not in the models folder ({models_dir or 'none set'}) nor the cache "
                         f"({cached.parent}); put {entry.weights.name} in <models-dir>/{entry.name}/")
    try:
        return download(entry.weights, cached), entry
    except ModelError as exc:
        raise ModelError(f"{exc}; for offline use put {entry.weights.name} in <models-dir>/{entry.name}/ and "
                         f"pass --models-dir (or set {env.MODELS_DIR})") from exc
