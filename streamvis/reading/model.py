"""Text models: an image in, the text lines on it out (corners, text, recognition score).

`RapidOcrModel` runs PP-OCR's text detection and recognition models, the ones the `rapidocr` wheel carries inside
itself (Apache-2.0; no download), on onnxruntime sessions made by `runtime.session` like every ONNX model here,
through rapidocr's own pre- and post-processing (DB box extraction, CTC decoding). One model is loaded per process
and shared by every stream; runs are one at a time.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streamvis.config import RapidOcrReaderConfig
from streamvis.errors import ModelError
from streamvis.extras import require
from streamvis.runtime.session import PROVIDER_NAMES, create_session, import_onnxruntime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawText:
    """One text line a model found: its four corners (x, y) in the image's pixels, its text, its score."""

    polygon_xy: np.ndarray
    text: str
    score: float


class TextModel(Protocol):
    name: str

    @property
    def provider(self) -> str: ...

    def read(self, image_bgr: np.ndarray) -> list[RawText]:
        """The text lines on a BGR image, in its pixels (thread-safe)."""
        ...


def rapidocr_params(config: RapidOcrReaderConfig, cuda: bool) -> dict[str, Any]:
    """rapidocr's settings for `config`: its text detector limited to `max_side_px` on the longer side (its
    default scales the shorter side up to 736 px: twice the time on a 720p frame for the same text), no score cut
    of its own below ours, quiet logs (it warns on every image without text)."""
    return {
        "Global.log_level": "error",
        "Global.use_cls": config.orientation,
        "Global.text_score": min(0.5, config.min_score),
        "Det.limit_type": "max",
        "Det.limit_side_len": config.max_side_px,
        "EngineConfig.onnxruntime.intra_op_num_threads": config.threads or -1,
        "EngineConfig.onnxruntime.use_cuda": cuda,
    }


def project_sessions(engine: Any, config: RapidOcrReaderConfig, cuda: bool) -> str:
    """Hand rapidocr sessions made by `runtime.session` (the providers asked for, `threads`, the provider really
    in use logged) for the models it would load itself (its default models, found the way its own onnxruntime
    engine finds them), through the custom-session hook its engine has. Returns the provider in use; when the
    models are not where rapidocr keeps them, it is left to make its own sessions (said once)."""
    from omegaconf import flag_override
    from rapidocr.inference_engine.base import FileInfo, InferSession

    providers = ["cuda", "cpu"] if cuda else ["cpu"]
    in_use = "cuda" if cuda else "cpu"
    try:
        for part in ("Det", "Rec", *(("Cls",) if config.orientation else ())):
            section = engine.cfg[part]
            info = InferSession.get_model_url(FileInfo(
                engine_type=section.engine_type, ocr_version=section.ocr_version, task_type=section.task_type,
                lang_type=section.lang_type, model_type=section.model_type))
            path = Path(engine.cfg.Global.model_root_dir) / Path(info["model_dir"]).name
            if not path.is_file():
                raise FileNotFoundError(path)
            session, in_use = create_session(path, providers, f"PP-OCR {part.lower()}", config.threads or None)
            with flag_override(section, "allow_objects", True):
                section.session = session
    except (FileNotFoundError, KeyError, AttributeError, TypeError, ValueError) as exc:
        log.warning("rapidocr runs its own onnxruntime sessions (its models are not where 3.10 keeps them: %s)",
                    exc)
    return in_use


class RapidOcrModel:
    """PP-OCR (rapidocr's default models: PP-OCRv6 small detection and recognition) on onnxruntime."""

    def __init__(self, config: RapidOcrReaderConfig) -> None:
        require("reader.type rapidocr", "ocr")
        ort = import_onnxruntime()
        available = ort.get_available_providers()
        wanted = [p for p in config.providers if p != "tensorrt"]
        cuda = bool(wanted) and wanted[0] == "cuda" and PROVIDER_NAMES["cuda"] in available
        from rapidocr import RapidOCR

        try:
            self._engine = RapidOCR(params=rapidocr_params(config, cuda))
            in_use = project_sessions(self._engine, config, cuda)
            self._engine(np.full((64, 256, 3), 255, np.uint8))  # loads the sessions now: errors surface at load
        except Exception as exc:  # rapidocr raises its own untyped errors (a missing model file, a bad setting)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise ModelError(f"reader.type rapidocr: cannot load PP-OCR: {first}") from exc
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self.name = "PP-OCR (rapidocr)"
        self._provider = f"onnxruntime:{in_use}"
        self._lock = threading.Lock()

    @property
    def provider(self) -> str:
        return self._provider

    def read(self, image_bgr: np.ndarray) -> list[RawText]:
        with self._lock:
            output: Any = self._engine(image_bgr)  # a RapidOCROutput when detection and recognition both run
        boxes, texts, scores = output.boxes, output.txts, output.scores
        if boxes is None or texts is None or scores is None:
            return []
        return [RawText(np.asarray(box, np.float32).reshape(4, 2), str(text), float(score))
                for box, text, score in zip(boxes, texts, scores, strict=True)]


def load_text_model(config: RapidOcrReaderConfig) -> TextModel:
    return RapidOcrModel(config)
