"""Florence-2 detection (transformers `Florence2ForConditionalGeneration`): objects, open vocabulary, phrase
grounding, dense region captions and OCR regions, parsed into detections with class names.

Pre-processing is the model's own processor (it falls back to a Pillow image processor without torchvision);
the generated text is parsed by the processor's `post_process_generation`, then turned into boxes and class ids
here by pure functions.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import numpy as np
import supervision as sv

from streamvis.config import PROMPTED_TASKS, Florence2Config, Florence2NarratorConfig, OnnxSettings
from streamvis.errors import ModelError
from streamvis.runtime.torch_compile import FLORENCE_PARTS, compile_parts, static_decoding
from streamvis.weights.hf import load_model, load_pretrained

log = logging.getLogger(__name__)

ALL_TASKS = ("<OD>", "<OPEN_VOCABULARY_DETECTION>", "<CAPTION_TO_PHRASE_GROUNDING>", "<DENSE_REGION_CAPTION>",
             "<OCR_WITH_REGION>")


def split_prompt(prompt: str) -> list[str]:
    """`"person. dog. red car"` -> `["person", "dog", "red car"]` (order kept, duplicates dropped)."""
    phrases: list[str] = []
    for part in prompt.replace(";", ".").replace("\n", ".").split("."):
        phrase = " ".join(part.split())
        if phrase and phrase not in phrases:
            phrases.append(phrase)
    return phrases


def task_text(task: str, prompt: str) -> str:
    """The text handed to the processor: the task token, plus the prompt for prompted tasks."""
    if task not in ALL_TASKS:
        raise ModelError(f"Florence-2 task {task} is not a detection task (expected one of {', '.join(ALL_TASKS)})")
    if task in PROMPTED_TASKS:
        return task + prompt.strip()
    return task


def _polygon_xyxy(polygon: list[Any]) -> list[float]:
    """A Florence-2 polygon (a list of flat [x0, y0, x1, y1, ...] rings) to its bounding box."""
    rings = polygon if polygon and isinstance(polygon[0], (list, tuple)) else [polygon]
    xs = [float(v) for ring in rings for v in ring[0::2]]
    ys = [float(v) for ring in rings for v in ring[1::2]]
    return [min(xs), min(ys), max(xs), max(ys)]


def answer_to_boxes(task: str, answer: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """`post_process_generation(...)[task]` to (xyxy float32 (N, 4), labels).

    OCR regions are quadrilaterals and open-vocabulary answers may be polygons: both become their bounding box.
    """
    boxes: list[list[float]] = []
    labels: list[str] = []
    if task == "<OCR_WITH_REGION>":
        for quad, text in zip(answer.get("quad_boxes", []), answer.get("labels", []), strict=False):
            boxes.append(_polygon_xyxy(list(quad)))
            labels.append(str(text).replace("</s>", "").replace("<s>", "").strip())
    elif task == "<OPEN_VOCABULARY_DETECTION>":
        boxes += [[float(v) for v in box] for box in answer.get("bboxes", [])]
        labels += [str(label) for label in answer.get("bboxes_labels", [])]
        boxes += [_polygon_xyxy(poly) for poly in answer.get("polygons", [])]
        labels += [str(label) for label in answer.get("polygons_labels", [])]
    else:
        boxes += [[float(v) for v in box] for box in answer.get("bboxes", [])]
        labels += [str(label) for label in answer.get("labels", [])]
    labels = [" ".join(label.split()) for label in labels]
    xyxy = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return xyxy, labels


_TOKEN_FRAGMENT = re.compile(r"[<>]|^/?loc_\d+$")


def is_token_fragment(label: str) -> bool:
    """True for 'labels' that are pieces of special tokens (`loc_12>`, `OD>`): malformed output, not a class."""
    return bool(_TOKEN_FRAGMENT.search(label))


class ClassVocabulary:
    """Stable class ids for open-vocabulary labels: prompt phrases first (in order), new labels appended."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names: list[str] = []
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()  # one detector serves every stream's detector thread
        for name in names or []:
            self.id_of(name)

    def id_of(self, name: str) -> int:
        key = name.lower()
        with self._lock:
            if key not in self._ids:
                self._ids[key] = len(self.names)
                self.names.append(name)
            return self._ids[key]


def boxes_to_detections(xyxy: np.ndarray, labels: list[str], vocabulary: ClassVocabulary,
                        resolution_wh: tuple[int, int]) -> sv.Detections:
    """Clip to the frame; drop empty boxes and empty or malformed labels. Florence-2 gives no scores: 1."""
    width, height = resolution_wh
    xyxy = xyxy.copy()
    if len(xyxy):
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
    keep = [i for i in range(len(labels)) if labels[i] and not is_token_fragment(labels[i])
            and xyxy[i, 2] > xyxy[i, 0] and xyxy[i, 3] > xyxy[i, 1]]
    names = [labels[i] for i in keep]
    return sv.Detections(
        xyxy=xyxy[keep].reshape(-1, 4).astype(np.float32),
        confidence=np.ones(len(keep), np.float32),
        class_id=np.array([vocabulary.id_of(name) for name in names], dtype=int),
        data={"class_name": np.array(names, dtype=str)},
    )


class Florence2Model:
    """Florence-2 loaded once (processor, weights, and with `backend: onnx` its onnxruntime graphs): it writes
    text for images and a task. The detector and the narrator share one when they name the same model."""

    def __init__(self, config: Florence2Config | Florence2NarratorConfig, field: str = "detector.model") -> None:
        import torch
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        self.name = config.model
        self.processor = load_pretrained(AutoProcessor, self.name, field)
        self.model, self.device, self.dtype, self.provider = load_model(
            Florence2ForConditionalGeneration, self.name, field, config.device, config.dtype,
            config.attention)
        self._torch = torch
        self.onnx = self._onnx_runner(config) if isinstance(config, OnnxSettings) and config.backend == "onnx" \
            else None
        # the fast path is the detector's setting (the narrator's Florence-2 runs as loaded)
        parts: list[str] = list(config.compile) if isinstance(config, Florence2Config) else []
        cuda_graphs = config.cuda_graphs if isinstance(config, Florence2Config) else False
        compile_parts(self.model, [p for p in parts if p != "decoder"], FLORENCE_PARTS, self.device, cuda_graphs,
                      f"Florence-2 {self.name}")
        if "decoder" in parts:
            static_decoding(self.model, self.device, cuda_graphs)
            log.info("Florence-2 %s: decode step compiled over a static KV cache", self.name)
        self.last_timings_ms: dict[str, float] = {}

    def _onnx_runner(self, config: OnnxSettings) -> Any:
        """Greedy decoding over onnxruntime; the graphs are exported into the cache on first use."""
        from pathlib import Path

        from streamvis.detection.florence2_onnx import OnnxFlorence2, export_florence2, is_exported
        from streamvis.runtime.export import export_folder

        precision = config.precision
        folder = Path(config.onnx_dir) if config.onnx_dir else export_folder(self.name, precision)
        if not config.onnx_dir and not is_exported(folder, self.name, precision):
            export_florence2(self.model, self.processor, self.name, folder, precision)
            self.model.to(self.device, self.dtype)
        runner = OnnxFlorence2(folder, self.name, self.model.generation_config, list(config.providers),
                               precision)
        self.provider = f"onnxruntime:{runner.provider}" + ("" if precision == "fp32" else f" {precision}")
        return runner

    def generate_text(self, images_bgr: list[np.ndarray], text: str, max_new_tokens: int,
                      num_beams: int = 1) -> list[str]:
        """The raw generated text (special tokens kept: the parser needs `<loc_*>`) for each image; `text` is
        the task token (plus a prompt). Thread-safe: the detector and the narrator may call it at once."""
        from PIL import Image

        t0 = time.perf_counter()
        pil = [Image.fromarray(np.ascontiguousarray(image[:, :, ::-1])) for image in images_bgr]
        inputs = self.processor(text=[text] * len(pil), images=pil, return_tensors="pt")
        inputs = inputs.to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        t1 = time.perf_counter()
        if self.onnx is not None:
            generated = self.onnx.generate(inputs["input_ids"].numpy(), inputs["pixel_values"].float().numpy(),
                                           inputs["attention_mask"].numpy(), max_new_tokens)
        else:
            with self._torch.inference_mode():
                generated = self.model.generate(
                    input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"],
                    attention_mask=inputs.get("attention_mask"), max_new_tokens=max_new_tokens,
                    num_beams=num_beams, do_sample=False)
        t2 = time.perf_counter()
        texts = self.processor.batch_decode(generated, skip_special_tokens=False)
        self.last_timings_ms = {"preprocess": (t1 - t0) * 1e3, "generate": (t2 - t1) * 1e3}
        return list(texts)


class Florence2Detector:
    """Florence-2 on keyframes: a detection task's text parsed into boxes; `detect_batch` runs several frames
    in one `generate` call."""

    open_vocabulary = True

    def __init__(self, model: Florence2Model, config: Florence2Config) -> None:
        self.config = config
        self.model = model
        self.name = model.name
        self.task = config.task
        self.text = task_text(config.task, config.prompt)
        self.processor = model.processor
        phrases = split_prompt(config.prompt) if config.task in PROMPTED_TASKS else []
        self.vocabulary = ClassVocabulary(phrases)
        self.last_timings_ms: dict[str, float] = {}
        log.info("detector: Florence-2 %s task %s on %s", self.name, self.task, self.provider)

    @property
    def provider(self) -> str:
        return self.model.provider

    @property
    def class_names(self) -> list[str]:
        return list(self.vocabulary.names)

    def detect(self, image_bgr: np.ndarray) -> sv.Detections:
        return self.detect_batch([image_bgr])[0]

    def generate_text(self, images_bgr: list[np.ndarray]) -> list[str]:
        """The raw text the model writes for this detector's task, for each image."""
        texts = self.model.generate_text(images_bgr, self.text, self.config.max_new_tokens, self.config.num_beams)
        self.last_timings_ms = dict(self.model.last_timings_ms)
        return texts

    def detect_batch(self, images_bgr: list[np.ndarray]) -> list[sv.Detections]:
        out: list[sv.Detections] = []
        for start in range(0, len(images_bgr), self.config.batch_size):
            chunk = images_bgr[start:start + self.config.batch_size]
            texts = self.generate_text(chunk)
            t0 = time.perf_counter()
            for image, text in zip(chunk, texts, strict=True):
                resolution_wh = (image.shape[1], image.shape[0])
                answer = self.processor.post_process_generation(text, task=self.task, image_size=resolution_wh)
                xyxy, labels = answer_to_boxes(self.task, answer.get(self.task, {}))
                out.append(boxes_to_detections(xyxy, labels, self.vocabulary, resolution_wh))
            self.last_timings_ms["postprocess"] = (time.perf_counter() - t0) * 1e3
        return out
