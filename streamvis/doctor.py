"""`streamvis doctor`: what this machine and environment hold, in one report a user pastes into a bug report.

Versions of streamvis and what it runs on; the CPU (model, cores, the SIMD flags that matter, the int8 class);
onnxruntime's providers, each tried on a one-node graph (a GPU build lists CUDA even where no GPU answers);
torch, CUDA and the GPU when torch is installed; FFmpeg's codecs as PyAV sees them; the extras installed; the
programs the viewer, speech and tests use; the models folder and the cache. Nothing is downloaded or changed.
"""

from __future__ import annotations

import base64
import importlib.metadata
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from streamvis import __version__, env
from streamvis.extras import EXTRA_MODULES, missing_module, onnxruntime_conflict, opencv_conflict

#: y = Identity(x), float[1], opset 13: a graph any provider can run, to see which providers really start
PROBE_GRAPH = base64.b64decode("CAg6OwoQCgF4EgF5IghJZGVudGl0eRIFcHJvYmVaDwoBeBIKCggIARIECgIIAWIPCgF5EgoKCAgB"
                               "EgQKAggBQgQKABAN")
PACKAGES = ("numpy", "av", "opencv-python", "opencv-python-headless", "supervision", "trackers", "pydantic", "aiortc",
            "aioice", "aiohttp", "onnxruntime", "onnxruntime-gpu", "torch", "transformers", "onnx", "pycocotools",
            "rapidocr", "duckdb", "ray")
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "f16c", "fma")
#: what `process`/`serve` encode and decode with (encoders: H.264 out, VP8 for WebRTC viewers; decoders: inputs)
CODECS = {"encoders": ("libx264", "libvpx", "libvpx-vp9", "libsvtav1", "aac", "libopus"),
          "decoders": ("h264", "hevc", "vp8", "vp9", "av1", "libdav1d", "mpeg4", "mjpeg")}
PROGRAMS = {"chromium": "the viewer tests, browser clients", "espeak-ng": "spoken narration",
            "gst-launch-1.0": "RTSP test cameras", "janus": "the SFU tests", "nvidia-smi": "NVIDIA GPUs"}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu() -> dict[str, Any]:
    from streamvis.runtime.precision import cpu_int8_class

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "cores": len(os.sched_getaffinity(0)), "flags": [f for f in CPU_FLAGS if f in flags],
            "int8_class": cpu_int8_class()}


def onnxruntime_providers() -> dict[str, Any]:
    """Each provider onnxruntime lists, tried on `PROBE_GRAPH`: the provider a session really got."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return {"error": f"onnxruntime cannot be imported ({exc})"}
    usable: dict[str, str] = {}
    ort.set_default_logger_severity(4)
    for provider in ort.get_available_providers():
        try:
            session = ort.InferenceSession(PROBE_GRAPH, providers=[provider])
            got = session.get_providers()[0]
            usable[provider] = "usable" if got == provider else f"falls back to {got}"
        except Exception as exc:  # a provider's own failure (a missing CUDA library, no GPU)
            usable[provider] = f"fails: {str(exc).splitlines()[0][:120]}"
    return {"version": ort.__version__, "providers": usable, "conflict": onnxruntime_conflict()}


def torch_report() -> dict[str, Any]:
    if _version("torch") is None:
        return {"installed": False}
    import torch

    cuda = torch.cuda.is_available()
    return {"installed": True, "version": torch.__version__, "cuda": torch.version.cuda, "cuda_available": cuda,
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []}


def codecs() -> dict[str, Any]:
    import av

    def has(name: str, mode: Literal["r", "w"]) -> bool:
        try:
            av.Codec(name, mode)
        except Exception:  # PyAV raises its own errors for an unknown codec
            return False
        return True

    return {"pyav": av.__version__, "ffmpeg": av.library_versions.get("libavcodec"),
            "encoders": {name: has(name, "w") for name in CODECS["encoders"]},
            "decoders": {name: has(name, "r") for name in CODECS["decoders"]}}


def report() -> dict[str, Any]:
    """The whole report, as data (`--json`)."""
    models = env.models_dir()
    cache = env.cache_dir()
    return {
        "streamvis": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "opencv_conflict": opencv_conflict(),
        "extras": {extra: missing_module(extra) is None for extra in EXTRA_MODULES},
        "cpu": cpu(), "onnxruntime": onnxruntime_providers(), "torch": torch_report(), "ffmpeg": codecs(),
        "programs": {name: shutil.which(name) is not None or (name == "chromium" and shutil.which(
            "chromium-browser") is not None) for name in PROGRAMS},
        "models_dir": {"path": str(models) if models else None,
                       "models": sorted(p.name for p in models.iterdir() if p.is_dir()) if models and models.is_dir()
                       else []},
        "cache": {"path": str(cache), "exists": cache.is_dir()},
    }


def lines(data: dict[str, Any]) -> list[str]:
    """The report as text, a line a fact."""
    cpu_ = data["cpu"]
    ort = data["onnxruntime"]
    out = [f"streamvis {data['streamvis']}, Python {data['python']}, {data['platform']}",
           f"cpu: {cpu_['model']}, {cpu_['cores']} cores, flags {' '.join(cpu_['flags']) or 'none of note'}, "
           f"int8 class {cpu_['int8_class']}",
           "packages: " + ", ".join(f"{p} {v}" for p, v in data["packages"].items() if v),
           "extras: " + ", ".join(f"{e} {'yes' if ok else 'no'}" for e, ok in data["extras"].items())]
    if data.get("opencv_conflict"):
        out.append(f"opencv: {data['opencv_conflict']}")
    if "error" in ort:
        out.append(f"onnxruntime: {ort['error']}")
    else:
        out.append(f"onnxruntime {ort['version']}: " + ", ".join(f"{p} {s}" for p, s in ort["providers"].items()))
        if ort["conflict"]:
            out.append(f"onnxruntime: {ort['conflict']}")
    torch = data["torch"]
    out.append("torch: not installed (the CPU path needs none)" if not torch["installed"] else
               f"torch {torch['version']}, CUDA {torch['cuda'] or 'none'}, "
               f"GPUs: {', '.join(torch['gpus']) or 'none available'}")
    ffmpeg = data["ffmpeg"]
    version = ".".join(map(str, ffmpeg["ffmpeg"])) if ffmpeg["ffmpeg"] else "?"
    for kind in ("encoders", "decoders"):
        out.append(f"ffmpeg (PyAV {ffmpeg['pyav']}, libavcodec {version}) {kind}: "
                   + ", ".join(f"{c} {'yes' if ok else 'no'}" for c, ok in ffmpeg[kind].items()))
    out.append("programs: " + ", ".join(f"{name} {'yes' if ok else 'no'} ({PROGRAMS[name]})"
                                        for name, ok in data["programs"].items()))
    models = data["models_dir"]
    out.append(f"models folder: {models['path'] or 'not set (--models-dir or STREAMVIS_MODELS_DIR)'}"
               + (f" ({', '.join(models['models'])})" if models["models"] else ""))
    out.append(f"cache: {data['cache']['path']}{'' if data['cache']['exists'] else ' (not made yet)'}")
    return out
