"""What an install holds: the optional parts (pip extras) a pipeline or a command needs, checked before anything
loads, and the one onnxruntime build an environment may have.

`pip install streamvis` is the CPU path: sources, YOLOX on onnxruntime, tracking, annotation, objects narration,
`serve` with the viewer, WHIP/WHEP, recording. The rest is an extra named by what it enables:

| extra | adds | for |
|---|---|---|
| `sam` | torch, transformers, pycocotools | `segmenter.type` sam2, edgetam, sam3, sam (masks as COCO RLE) |
| `florence` | torch, transformers | `detector.type florence2`, `narrator.type florence2` |
| `vlm` | torch, transformers | `narrator.type vlm` |
| `openai` | httpx | `narrator.type openai` (a VLM on an OpenAI-compatible server: Ollama, vLLM, llama.cpp, Gemini) |
| `eval` | pycocotools, rapidfuzz | `streamvis eval` on labelled images (COCO box mAP; text read: character errors) |
| `ocr` | rapidocr (PP-OCR models inside its wheel) | `reader.type rapidocr`: text read aloud (the `narrate` pipeline) |
| `search` | torch, transformers, duckdb | `embedder.type clip`, `process --index`, `streamvis search` |
| `export` | the above, onnx, onnxscript | `streamvis export` (SAM 2.1, Florence-2, int8 YOLOX), `backend: onnx` |
| `ray` | ray[data] | `process --ray` |
| `gpu` | onnxruntime-gpu | CUDA / TensorRT for the ONNX models (instead of onnxruntime: see below) |
| `all` | sam, florence, vlm, openai, eval, ocr, search, export, ray | everything but `gpu` |

onnxruntime and onnxruntime-gpu both install the `onnxruntime` module, so an environment must hold exactly one:
`pip install 'streamvis[gpu]'` brings onnxruntime-gpu beside the CPU build the base depends on, and
`onnxruntime_conflict()` then says how to keep one (`scripts/setup.sh` with `STREAMVIS_GPU=1` does it).
OpenCV is the same story: rapidocr depends on opencv-python-headless, trackers on opencv-python, and both own the
`cv2` module; `opencv_conflict()` says how to keep one (`scripts/setup.sh` keeps opencv-python).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass

from streamvis.config import PipelineConfig
from streamvis.config.roles import OnnxSettings
from streamvis.errors import ConfigError

TORCH_MODULES = ("torch", "transformers")
#: extra -> the modules it provides (the first one missing is named)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "sam": (*TORCH_MODULES, "pycocotools"),
    "florence": TORCH_MODULES,
    "vlm": TORCH_MODULES,
    "export": (*TORCH_MODULES, "onnx", "onnxscript"),
    "ray": ("ray",),
    "openai": ("httpx",),
    "eval": ("pycocotools", "rapidfuzz"),
    "ocr": ("rapidocr",),
    "search": (*TORCH_MODULES, "duckdb"),
}


@dataclass(frozen=True, slots=True)
class Need:
    field: str  # what asked for it, as the user wrote it: "segmenter.type sam2"
    extra: str
    instead: str = ""  # how to run without it, where that is a choice: "--set reader.type=none"


def needs(config: PipelineConfig) -> list[Need]:
    """The extras `config`'s models need, each with the field that asks for it."""
    wanted: list[Need] = []
    if config.detector.type == "florence2":
        wanted.append(Need("detector.type florence2", "florence"))
    if config.segmenter.enabled:
        wanted.append(Need(f"segmenter.type {config.segmenter.type}", "sam"))
    if config.narrator.type == "florence2":
        wanted.append(Need("narrator.type florence2", "florence"))
    elif config.narrator.type == "vlm":
        wanted.append(Need("narrator.type vlm", "vlm"))
    elif config.narrator.type == "openai":
        wanted.append(Need("narrator.type openai", "openai"))
    if config.embedder.type == "clip":
        wanted.append(Need("embedder.type clip", "search"))
    if config.reader.type == "rapidocr":
        wanted.append(Need("reader.type rapidocr", "ocr", "--set reader.type=none to run without reading text"))
    for role, section in (("detector", config.detector), ("segmenter", config.segmenter)):
        if isinstance(section, OnnxSettings) and section.backend == "onnx" and section.onnx_dir is None:
            wanted.append(Need(f"{role}.backend onnx (graphs exported on first use)", "export"))
    return wanted


def missing_module(extra: str) -> str | None:
    """The first module of `extra` this environment cannot import, or None."""
    return next((m for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None), None)


def require(field: str, extra: str, instead: str = "") -> None:
    """Raise `ConfigError` (exit 2) naming the field, the missing module and the extra to install (and how to do
    without, where that is a choice)."""
    module = missing_module(extra)
    if module is not None:
        raise ConfigError(f"{field} needs {module}: pip install 'streamvis[{extra}]'" + (f" (or {instead})"
                                                                                          if instead else ""))


def check_installed(config: PipelineConfig) -> None:
    """Before anything loads: every extra the pipeline needs is installed (else one line naming it)."""
    for need in needs(config):
        require(need.field, need.extra, need.instead)


def installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def onnxruntime_conflict() -> str | None:
    """Why this environment's onnxruntime cannot be trusted (both builds installed, or neither), with the fix."""
    cpu, gpu = installed("onnxruntime"), installed("onnxruntime-gpu")
    if cpu and gpu:
        return ("onnxruntime and onnxruntime-gpu are both installed and own the same module: keep one "
                "(GPU: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu; "
                "CPU: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime)")
    if not cpu and not gpu:
        return "onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu for CUDA/TensorRT)"
    return None


def opencv_conflict() -> str | None:
    """Why this environment's cv2 cannot be trusted: opencv-python and opencv-python-headless both installed (the
    `ocr` extra's rapidocr brings the headless one) own the same module, and removing either breaks it."""
    if installed("opencv-python") and installed("opencv-python-headless"):
        return ("opencv-python and opencv-python-headless are both installed and own the same module (cv2): keep "
                "one: pip uninstall -y opencv-python opencv-python-headless && pip install opencv-python")
    return None
