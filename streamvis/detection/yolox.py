"""YOLOX detectors exported to ONNX (any size: nano 416 ... x 640), run by onnxruntime.

Pre- and post-processing are pure functions; only `YoloxDetector.detect` touches onnxruntime.
Layout of the official exports: input `images` float32 [1,3,H,W], BGR 0-255, letterboxed top-left
with pad value 114, no normalisation; output [1, A, 5+C] = per anchor (cx, cy, w, h) offsets on the
stride-8/16/32 grids, objectness and C class scores (already sigmoid).

On the CPU a frame goes in at its own shape (`fit_input`, `fitted_input_hw`): at the scale the square H x W input
would give it, padded only to the largest stride, through the graph loaded with a free input size
(`detection.yolox_free_size`). A 16:9 frame then costs about 0.62 of a square run (YOLOX-nano on one core of a
2-core EPYC: 17.8 ms against 26.1 ms) and finds the same objects (coco128 mAP@0.5:0.95 0.333 against 0.3345).
GPU providers keep the square input: TensorRT builds an engine per input shape.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import supervision as sv

from streamvis.errors import ModelError, reason
from streamvis.runtime.session import PROVIDER_NAMES, choose_providers, create_session, import_onnxruntime

log = logging.getLogger(__name__)

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


def fitted_input_hw(image_hw: tuple[int, int], model_hw: tuple[int, int], max_scale: float | None = None,
                    stride: int = STRIDES[-1]) -> tuple[int, int]:
    """The smallest input, in whole multiples of `stride`, that holds the image at the scale `model_hw` would give
    it (letterbox's ratio), or at most `max_scale` (a small picture is enlarged no further: that costs work and
    adds no detail): 432 x 768 into 416 x 416 -> 256 x 416. Never larger than `model_hw`."""
    height, width = image_hw
    ratio = min(model_hw[0] / height, model_hw[1] / width, max_scale or math.inf)
    return (min(model_hw[0], math.ceil(height * ratio / stride) * stride),
            min(model_hw[1], math.ceil(width * ratio / stride) * stride))


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


FitInput = bool | Literal["auto"]


class YoloxDetector:
    """A YOLOX ONNX model as a `Detector` (onnxruntime sessions may run from several threads at once).

    `fit_input`: each frame goes in at its own shape (`fitted_input_hw`) rather than letterboxed into the model's
    square; auto: where the CPU runs the model (GPU providers keep the square), and only when the graph proves
    to run at another size (checked once at load; an export that fixes its anchor count keeps the square).
    `max_upscale`: with a fitted input, a motion crop (`detect_crop`) is enlarged at most about this much (to the
    next whole stride); None: to fill the input, as a whole picture is."""

    open_vocabulary = False

    def __init__(self, weights: Path, providers: list[str], confidence: float = 0.3, nms_iou: float = 0.45,
                 classes_file: Path | None = None, name: str | None = None, threads: int | None = None,
                 spin_wait: bool = False, fit_input: FitInput = "auto", max_upscale: float | None = None) -> None:
        self.name = name or weights.stem
        on_cpu = choose_providers(providers, import_onnxruntime().get_available_providers())[0] == PROVIDER_NAMES["cpu"]
        wants_fit = fit_input is True or (fit_input == "auto" and on_cpu)
        graph = self._free_size_graph(weights, required=fit_input is True) if wants_fit else None
        self.session, self.provider = create_session(weights, providers, self.name, threads, spin_wait,
                                                     graph=graph[0] if graph else None)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = inputs[0].shape
        self.batches = bool(shape) and not isinstance(shape[0], int)  # an export with a dynamic batch axis
        if graph is not None:
            self.input_hw = graph[1]
        elif len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
            raise ModelError(f"{weights}: expected a YOLOX input [1,3,H,W] with fixed H and W, found {shape}")
        else:
            self.input_hw = (int(shape[2]), int(shape[3]))
        self.input_name = inputs[0].name
        out_shape = outputs[0].shape
        if len(out_shape) != 3 or not isinstance(out_shape[2], int) or out_shape[2] < 6:
            raise ModelError(f"{weights}: expected a YOLOX output [1,A,5+C], found {out_shape}")
        self.class_names = load_class_names(classes_file, int(out_shape[2]) - 5)
        self._class_name_array = np.array(self.class_names, dtype=str)
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.fit_input = graph is not None and self._runs_at_other_sizes(required=fit_input is True)
        self.max_upscale = max_upscale
        self.confidence = confidence
        self.nms_iou = nms_iou
        self.last_timings_ms: dict[str, float] = {}
        self.last_input_hw = self.input_hw  # the input size of the last run

    def _free_size_graph(self, weights: Path, required: bool) -> tuple[bytes, tuple[int, int]] | None:
        """The graph with a free input size and the export's own size, or None to keep the square when it
        cannot be made (said once, or an error when `required`)."""
        from streamvis.detection.yolox_free_size import free_size_graph

        try:
            return free_size_graph(weights)
        except ModelError as exc:
            if required:
                raise ModelError(f"{self.name}: fit_input needs a graph with a free input size: {exc}") from exc
            log.info("%s: keeps its square input (%s)", self.name, exc)
            return None

    def _runs_at_other_sizes(self, required: bool) -> bool:
        """Whether the graph runs at a 16:9 frame's fitted size and gives that size's anchor count."""
        probe_hw = fitted_input_hw((9, 16), self.input_hw)
        try:
            raw = self.session.run(None, {self.input_name: np.zeros((1, 3, *probe_hw), np.float32)})[0]
            anchors = len(self.grids(probe_hw)[0])
            ok = raw.shape[1] == anchors
            problem = f"{raw.shape[1]} anchors at {probe_hw}, expected {anchors}"
        except Exception as exc:  # onnxruntime raises its own untyped errors for a graph fixed inside
            ok, problem = False, reason(exc)
        if ok:
            return True
        if required:
            raise ModelError(f"{self.name}: cannot fit the input to the frame, the graph fixes its size: {problem}")
        log.info("%s: keeps its square input: the graph fixes its size (%s)", self.name, problem)
        return False

    def grids(self, input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The anchor grid and strides of an input size (made once per size)."""
        if input_hw not in self._grids:
            self._grids[input_hw] = make_grids(input_hw)
        return self._grids[input_hw]

    def input_hw_for(self, images_bgr: list[np.ndarray], max_upscale: float | None = None) -> tuple[int, int]:
        """The input size one run of these images takes: the model's square, or with `fit_input` the smallest
        that holds each of them at its scale (enlarged at most `max_upscale` times)."""
        if not self.fit_input:
            return self.input_hw
        sizes = [fitted_input_hw(image.shape[:2], self.input_hw, max_upscale) for image in images_bgr]
        return max(h for h, _ in sizes), max(w for _, w in sizes)

    def detect(self, image_bgr: np.ndarray) -> sv.Detections:
        return self.detect_batch([image_bgr])[0]

    def detect_crop(self, crop_bgr: np.ndarray) -> sv.Detections:
        """A part of a frame (a motion crop), enlarged at most `max_upscale` times with a fitted input: it costs
        about what the whole frame does, where filling the input would cost a square run."""
        return self._run([crop_bgr], self.max_upscale)[0]

    def detect_batch(self, images_bgr: list[np.ndarray]) -> list[sv.Detections]:
        """One onnxruntime run for all images when the export has a dynamic batch axis, else one run each."""
        return self._run(images_bgr, None)

    def _run(self, images_bgr: list[np.ndarray], max_upscale: float | None) -> list[sv.Detections]:
        t0 = time.perf_counter()
        together = self.batches and len(images_bgr) > 1
        sizes = ([self.input_hw_for(images_bgr, max_upscale)] * len(images_bgr) if together
                 else [self.input_hw_for([image], max_upscale) for image in images_bgr])
        letterboxed = [letterbox(image, input_hw) for image, input_hw in zip(images_bgr, sizes, strict=True)]
        t1 = time.perf_counter()
        if together:
            stacked = np.concatenate([tensor for tensor, _ in letterboxed])
            raws = list(self.session.run(None, {self.input_name: stacked})[0])
        else:
            raws = [self.session.run(None, {self.input_name: tensor})[0][0] for tensor, _ in letterboxed]
        t2 = time.perf_counter()
        out = []
        for image, input_hw, (_, ratio), raw in zip(images_bgr, sizes, letterboxed, raws, strict=True):
            height, width = image.shape[:2]
            grids, strides = self.grids(input_hw)
            xyxy, scores, class_ids = postprocess(raw, grids, strides, ratio, self.confidence,
                                                  self.nms_iou, (width, height))
            out.append(sv.Detections(xyxy=xyxy, confidence=scores, class_id=class_ids.astype(int),
                                     data={"class_name": self._class_name_array[class_ids]}))
        t3 = time.perf_counter()
        self.last_input_hw = sizes[-1] if sizes else self.input_hw
        self.last_timings_ms = {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3}
        return out
