"""YOLOX detectors exported to ONNX (any size: nano 416 ... x 640), run by onnxruntime.

Pre- and post-processing are pure functions; only `YoloxDetector.detect` touches onnxruntime.
Layout of the official exports: input `images` float32 [1,3,H,W], BGR 0-255, letterboxed top-left
with pad value 114, no normalisation; output [1, A, 5+C] = per anchor (cx, cy, w, h) offsets on the
stride-8/16/32 grids, objectness and C class scores (already sigmoid).
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from streamvis.errors import ModelError, reason
from streamvis.runtime.session import create_session

STRIDES = (8, 16, 32)
PAD_VALUE = 114


def letterbox(image_bgr: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Resize keeping aspect ratio into the top-left of an `input_hw` canvas of 114s; NCHW float32 and scale."""
    height, width = image_bgr.shape[:2]
    ratio = min(input_hw[0] / height, input_hw[1] / width)
    new_w, new_h = int(width * ratio), int(height * ratio)
    canvas = np.full((input_hw[0], input_hw[1], 3), PAD_VALUE, dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    tensor = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32)
    return tensor, ratio


def make_grids(input_hw: tuple[int, int], strides: tuple[int, ...] = STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Anchor-point grid (x, y) and stride for every output row, in the export's order (stride by stride)."""
    grids, expanded = [], []
    for stride in strides:
        rows, cols = input_hw[0] // stride, input_hw[1] // stride
        yv, xv = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        grids.append(np.stack((xv, yv), axis=2).reshape(-1, 2))
        expanded.append(np.full((rows * cols, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(expanded).astype(np.float32)


def decode_boxes(raw: np.ndarray, grids: np.ndarray, strides: np.ndarray) -> np.ndarray:
    """Grid offsets to xyxy in input pixels: xy = (o + grid) * stride, wh = exp(o) * stride."""
    centers = (raw[:, :2] + grids) * strides
    sizes = np.exp(np.clip(raw[:, 2:4], -20, 20)) * strides
    return np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1)


def postprocess(
    raw: np.ndarray,
    grids: np.ndarray,
    strides: np.ndarray,
    ratio: float,
    confidence: float,
    nms_iou: float,
    image_wh: tuple[int, int],
    max_detections: int = 300,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw [A, 5+C] rows to (xyxy in image pixels, score, class id), after class-aware NMS."""
    if raw.shape[0] != grids.shape[0]:
        raise ModelError(f"YOLOX output has {raw.shape[0]} rows, expected {grids.shape[0]} for this input size")
    class_scores = raw[:, 5:] * raw[:, 4:5]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(class_ids)), class_ids]
    keep = scores >= confidence
    if not keep.any():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int)
    boxes = decode_boxes(raw[keep], grids[keep], strides[keep]) / ratio
    scores, class_ids = scores[keep], class_ids[keep]
    width, height = image_wh
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), class_ids.tolist(), confidence, nms_iou)
    picked = np.asarray(kept, dtype=int).reshape(-1)
    picked = picked[np.argsort(-scores[picked], kind="stable")][:max_detections]
    return boxes[picked].astype(np.float32), scores[picked].astype(np.float32), class_ids[picked]


def load_class_names(path: Path | None, num_classes: int) -> list[str]:
    """One name a line; COCO's 80 by default; `class_N` when nothing fits."""
    if path is None:
        bundled = Path(__file__).resolve().parent.parent / "data" / "coco_classes.txt"
        names = bundled.read_text(encoding="utf-8").split("\n")
        names = [n.strip() for n in names if n.strip()]
        return names if len(names) == num_classes else [f"class_{i}" for i in range(num_classes)]
    try:
        names = [n.strip() for n in path.read_text(encoding="utf-8").splitlines() if n.strip()]
    except OSError as exc:
        raise ModelError(f"cannot read class-names file {path}: {reason(exc)}") from exc
    if len(names) != num_classes:
        raise ModelError(f"class-names file {path} has {len(names)} names, the model predicts {num_classes}")
    return names


class YoloxDetector:
    """A YOLOX ONNX model as a `Detector` (onnxruntime sessions may run from several threads at once)."""

    open_vocabulary = False

    def __init__(self, weights: Path, providers: list[str], confidence: float = 0.3, nms_iou: float = 0.45,
                 classes_file: Path | None = None, name: str | None = None, threads: int | None = None,
                 spin_wait: bool = False) -> None:
        self.name = name or weights.stem
        self.session, self.provider = create_session(weights, providers, self.name, threads, spin_wait)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = inputs[0].shape
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
            raise ModelError(f"{weights}: expected a YOLOX input [1,3,H,W] with fixed H and W, found {shape}")
        self.input_name = inputs[0].name
        self.input_hw = (int(shape[2]), int(shape[3]))
        self.batches = not isinstance(shape[0], int)  # an export with a dynamic batch axis
        out_shape = outputs[0].shape
        if len(out_shape) != 3 or not isinstance(out_shape[2], int) or out_shape[2] < 6:
            raise ModelError(f"{weights}: expected a YOLOX output [1,A,5+C], found {out_shape}")
        self.class_names = load_class_names(classes_file, int(out_shape[2]) - 5)
        self._class_name_array = np.array(self.class_names, dtype=str)
        self.grids, self.strides = make_grids(self.input_hw)
        self.confidence = confidence
        self.nms_iou = nms_iou
        self.last_timings_ms: dict[str, float] = {}

    def detect(self, image_bgr: np.ndarray) -> sv.Detections:
        return self.detect_batch([image_bgr])[0]

    def detect_batch(self, images_bgr: list[np.ndarray]) -> list[sv.Detections]:
        """One onnxruntime run for all images when the export has a dynamic batch axis, else one run each."""
        t0 = time.perf_counter()
        letterboxed = [letterbox(image, self.input_hw) for image in images_bgr]
        t1 = time.perf_counter()
        if self.batches and len(letterboxed) > 1:
            stacked = np.concatenate([tensor for tensor, _ in letterboxed])
            raws = list(self.session.run(None, {self.input_name: stacked})[0])
        else:
            raws = [self.session.run(None, {self.input_name: tensor})[0][0] for tensor, _ in letterboxed]
        t2 = time.perf_counter()
        out = []
        for image, (_, ratio), raw in zip(images_bgr, letterboxed, raws, strict=True):
            height, width = image.shape[:2]
            xyxy, scores, class_ids = postprocess(raw, self.grids, self.strides, ratio, self.confidence,
                                                  self.nms_iou, (width, height))
            out.append(sv.Detections(xyxy=xyxy, confidence=scores, class_id=class_ids.astype(int),
                                     data={"class_name": self._class_name_array[class_ids]}))
        t3 = time.perf_counter()
        self.last_timings_ms = {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3}
        return out
