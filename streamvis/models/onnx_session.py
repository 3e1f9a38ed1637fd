"""The one place that creates onnxruntime sessions and chooses execution providers."""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path
from typing import Any

from streamvis.errors import ModelError

log = logging.getLogger(__name__)

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def import_onnxruntime() -> Any:
    """Import onnxruntime, or say how to install it (the package has a cpu and a gpu extra, never both)."""
    installed = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(dist)
            installed.append(dist)
        except metadata.PackageNotFoundError:
            pass
    if len(installed) == 2:
        log.warning("both onnxruntime and onnxruntime-gpu are installed; they overwrite each other's "
                    "files: uninstall both and install one (pip install 'streamvis[cpu]' or '[gpu]')")
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelError("onnxruntime is not installed: pip install 'streamvis[cpu]' "
                         "(or 'streamvis[gpu]' on an NVIDIA GPU)") from exc
    return onnxruntime


def choose_providers(wanted: list[str], available: list[str]) -> list[str]:
    """The wanted providers (short names, in order) that this onnxruntime build offers; CPU always last."""
    chosen = [PROVIDER_NAMES[name] for name in wanted if PROVIDER_NAMES[name] in available]
    if PROVIDER_NAMES["cpu"] not in chosen:
        chosen.append(PROVIDER_NAMES["cpu"])
    return chosen


def tensorrt_options(cache: Path) -> dict[str, Any]:
    """TensorRT with fp16 and persistent engine and timing caches (the first build takes minutes)."""
    cache.mkdir(parents=True, exist_ok=True)
    return {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache)}


def create_session(path: Path, providers: list[str], name: str) -> tuple[Any, str]:
    """An InferenceSession and the provider really in use (a GPU build lists CUDA even without a GPU)."""
    ort = import_onnxruntime()
    chosen: list[Any] = choose_providers(providers, ort.get_available_providers())
    if PROVIDER_NAMES["tensorrt"] in chosen:
        cache = path.parent / "tensorrt-cache"
        chosen = [(p, tensorrt_options(cache)) if p == PROVIDER_NAMES["tensorrt"] else p for p in chosen]
        log.info("%s: TensorRT engine cache in %s (building an engine the first time takes minutes)", name, cache)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"cannot load {name} from {path}: {first}") from exc
    in_use = session.get_providers()[0]
    short = next((k for k, v in PROVIDER_NAMES.items() if v == in_use), in_use)
    if PROVIDER_NAMES[providers[0]] != in_use:
        log.info("%s: %s requested, running on %s", name, providers[0], short)
    log.info("%s: onnxruntime %s, provider in use: %s", name, ort.__version__, short)
    return session, short
