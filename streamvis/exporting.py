"""`streamvis export`: a model id to its ONNX graphs. A SAM 2.1 or Florence-2 hub id or folder is exported part by
part (dynamo exporter, with a manifest) in a precision; a YOLOX model (a registry name or an .onnx file) gets its
static int8 copy, calibrated on images or a video. Raises `ConfigError` for what the user asked wrongly and
`StreamvisError` for what failed."""

from __future__ import annotations

import logging
from pathlib import Path

from streamvis.errors import ConfigError
from streamvis.runtime.precision import Int8Range, Precision

log = logging.getLogger(__name__)


def is_detector_file(model: str) -> bool:
    """A YOLOX model: an .onnx file or a registry name (no hub-id slash, no such folder)."""
    return model.endswith(".onnx") or ("/" not in model and not Path(model).expanduser().exists())


def export_int8_detector(model: str, models_dir: Path | None, output: Path | None, calibrate: str,
                         frames: int, int8_range: Int8Range) -> Path:
    """A YOLOX model's static int8 copy, calibrated on `frames` frames of `calibrate`."""
    from streamvis.detection.yolox_int8 import calibration_frames, quantize_yolox
    from streamvis.runtime.export import export_folder
    from streamvis.weights.registry import resolve_model

    weights, _ = resolve_model(model, models_dir)
    target = output or export_folder(model if not model.endswith(".onnx") else weights.stem, "int8")
    if target.suffix != ".onnx":
        target = target / f"{weights.stem}.int8.onnx"
    quantize_yolox(weights, target, calibration_frames(calibrate, frames), int8_range)
    log.info("use it with --set detector.model=%s", target)
    return target


def export_parts(model: str, output: Path | None, precision: Precision, int8_range: Int8Range) -> Path:
    """A SAM 2.1 or Florence-2 model's parts as ONNX graphs in `output` (default: the cache)."""
    from transformers import AutoConfig

    from streamvis.runtime.export import export_folder
    from streamvis.weights.hf import load_pretrained

    config = load_pretrained(AutoConfig, model, "model")
    folder = output or export_folder(model, precision)
    if config.model_type in ("sam2_video", "sam2"):
        from transformers import Sam2VideoModel

        from streamvis.segmentation.sam2_onnx import export_sam2

        export_sam2(load_pretrained(Sam2VideoModel, model, "model"), model, folder, precision, int8_range,
                    fp32_from=export_folder(model))  # the cache's fp32 graphs, where it has them
        field = "segmenter"
    elif config.model_type == "florence2":
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        from streamvis.detection.florence2_onnx import export_florence2

        export_florence2(load_pretrained(Florence2ForConditionalGeneration, model, "model"),
                         load_pretrained(AutoProcessor, model, "model"), model, folder, precision, int8_range)
        field = "detector"
    else:
        raise ConfigError(f"export supports SAM 2.1 (sam2_video) and Florence-2 (florence2); {model} is "
                          f"'{config.model_type}'")
    log.info("wrote %s; use it with --set %s.backend=onnx --set %s.precision=%s --set %s.onnx_dir=%s", folder,
             field, field, precision, field, folder)
    return folder
