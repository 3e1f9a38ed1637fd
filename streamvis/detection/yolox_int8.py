"""Static int8 copies of a YOLOX graph, calibrated on the user's own images or video (`streamvis export --int8`).

Convolutions become QDQ int8 (weights per output channel, activation ranges from the calibration frames), except
the ones int8 hurts most on YOLOX: the first convolution (on raw 0-255 pixels), the depthwise convolutions (few
weights per channel, wide ranges) and the prediction convolutions that write the boxes and scores. Per-channel
QDQ needs opset 13, so older exports (the official ones are opset 11) are converted first. On x86 CPUs without
VNNI, onnxruntime's u8s8 kernels saturate on full-range weights, so there (`int8_range: auto`) weights keep
7 bits (see `runtime.precision`), which runs exactly on both CPU classes.

Measured on YOLOX-nano (benchmarks/yolox_int8.py): this copy is not faster than fp32 on a 2-core CPU (the model
is small and the quantize/dequantize steps around every SiLU cost what the int8 convolutions save) and loses
about 0.03 mAP@0.5:0.95 on coco128, more than the 0.005 that would make it a default. So it stays an option,
for larger YOLOX models and for checking on your own CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from streamvis.errors import ModelError, SourceError
from streamvis.runtime.precision import Int8Range, reduce_range_for
from streamvis.runtime.quiet import quiet_tools
from streamvis.sources.pixels import to_bgr

log = logging.getLogger(__name__)

QDQ_OPSET = 13
DEFAULT_CALIBRATION_FRAMES = 128


def calibration_frames(source: str, limit: int = DEFAULT_CALIBRATION_FRAMES) -> Iterator[np.ndarray]:
    """Up to `limit` BGR frames: the images of a folder or glob, or frames spread evenly over a video file."""
    from streamvis.sources.images import list_images
    from streamvis.sources.uri import IMAGE_SUFFIXES

    path = Path(source).expanduser()
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES or any(c in source for c in "*?["):
        images = list_images(source)
        if not images:
            raise SourceError(f"no images to calibrate on in {source}")
        for image_path in images[:: max(1, len(images) // limit)][:limit]:
            image = cv2.imread(str(image_path))
            if image is None:
                raise SourceError(f"cannot read calibration image {image_path}")
            yield image
        return
    yield from _video_frames(path, limit)


def _video_frames(path: Path, limit: int) -> Iterator[np.ndarray]:
    import av

    if not path.is_file():
        raise SourceError(f"calibration input not found: {path}")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            total = stream.frames or 0
            step = max(1, total // limit) if total else 1
            taken = 0
            for index, frame in enumerate(container.decode(stream)):
                if index % step == 0:
                    yield to_bgr(frame)  # the pixels the pipeline will see
                    taken += 1
                    if taken >= limit:
                        return
    except (av.error.FFmpegError, IndexError) as exc:
        raise SourceError(f"cannot read calibration video {path}: {exc}") from exc


def kept_fp32(model: object) -> list[str]:
    """The convolutions left in fp32: the first, the depthwise ones and those whose output leaves the backbone
    as a prediction (followed by a Sigmoid or Concat and not by SiLU's Mul)."""
    graph = model.graph  # type: ignore[attr-defined]
    consumers: dict[str, list[object]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    convs = [node for node in graph.node if node.op_type == "Conv"]

    def feeds_silu(name: str) -> bool:
        return any(c.op_type == "Mul" for c in consumers.get(name, []))  # type: ignore[attr-defined]

    def is_prediction(node: object) -> bool:
        output = node.output[0]  # type: ignore[attr-defined]
        if feeds_silu(output):
            return False
        return any(c.op_type == "Concat" or (c.op_type == "Sigmoid" and not feeds_silu(c.output[0]))  # type: ignore[attr-defined]
                   for c in consumers.get(output, []))

    def is_depthwise(node: object) -> bool:
        return any(a.name == "group" and a.i > 1 for a in node.attribute)  # type: ignore[attr-defined]

    kept = [node.name for node in convs if is_depthwise(node) or is_prediction(node)]
    return ([convs[0].name] if convs and convs[0].name not in kept else []) + kept


class _Frames:
    """onnxruntime's CalibrationDataReader over letterboxed frames."""

    def __init__(self, frames: Iterator[np.ndarray], input_name: str, input_hw: tuple[int, int]) -> None:
        self.frames, self.input_name, self.input_hw = frames, input_name, input_hw
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        from streamvis.detection.yolox import letterbox

        frame = next(self.frames, None)
        if frame is None:
            return None
        self.count += 1
        return {self.input_name: letterbox(frame, self.input_hw)[0]}


def quantize_yolox(weights: Path, target: Path, frames: Iterator[np.ndarray], int8_range: Int8Range = "auto") -> Path:
    """Write a static int8 copy of the YOLOX graph `weights` to `target`, calibrated on `frames`."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        model = onnx.load(str(weights))
    except Exception as exc:  # onnx raises DecodeError, OSError and others
        raise ModelError(f"cannot read {weights} as ONNX: {str(exc).splitlines()[0]}") from exc
    inputs = model.graph.input
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] if inputs else []
    if len(dims) != 4 or dims[2] <= 0 or dims[3] <= 0:
        raise ModelError(f"{weights}: expected a YOLOX input [1,3,H,W] with fixed H and W, found {dims}")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    reader = _Frames(frames, inputs[0].name, (dims[2], dims[3]))
    reduce_range = reduce_range_for(int8_range)
    staged = target.with_name(target.stem + ".prepared.onnx")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with quiet_tools():
            if opset < QDQ_OPSET:
                model = version_converter.convert_version(model, QDQ_OPSET)
            onnx.save(model, str(staged))
            quant_pre_process(str(staged), str(staged))
            prepared = onnx.load(str(staged))
            # the reader has CalibrationDataReader's one method (get_next), without importing onnxruntime early
            quantize_static(staged, target, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            reduce_range=reduce_range, op_types_to_quantize=["Conv"],
                            nodes_to_exclude=kept_fp32(prepared))
    except SourceError:
        raise
    except Exception as exc:  # the converter and the quantizer raise many kinds
        raise ModelError(f"int8 quantization of {weights} failed: {str(exc).splitlines()[0]}") from exc
    finally:
        staged.unlink(missing_ok=True)
    if reader.count == 0:
        target.unlink(missing_ok=True)
        raise SourceError("no calibration frames: give a folder of images or a video with --calibrate")
    log.info("wrote %s: int8 (%s-bit weights), calibrated on %d frames", target, 7 if reduce_range else 8,
             reader.count)
    return target
