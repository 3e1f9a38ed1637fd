"""Streaming video segmentation: SAM 2.1 or EdgeTAM, one session for the whole stream, bounded memory.

On a keyframe the detections are matched to the objects already tracked: a match keeps its object id (and is
re-prompted when its mask has drifted off the detection), an unmatched detection becomes a new object added to
the running session, and an object unmatched for `max_missed_keyframes` keyframes is removed. Every frame, the
session propagates all objects' masks; `prune_session` keeps it to SAM 2's memory window.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv

from streamvis.config import EdgeTamConfig, Sam2Config
from streamvis.prompts import PromptError
from streamvis.runtime.torch_compile import SAM2_PARTS, compile_parts
from streamvis.segmentation.base import Batchable, Promptable
from streamvis.segmentation.matching import box_iou, match_detections
from streamvis.segmentation.processing import (
    masks_to_xyxy,
    preprocess_square,
    preprocess_square_on,
    scale_boxes_square,
    upsample_masks,
)
from streamvis.segmentation.propagation import propagate, supports_batching
from streamvis.segmentation.session import (
    add_box_prompts,
    prompt_on_frame,
    prune_session,
    remove_objects,
    session_nbytes,
    set_point_prompt,
)
from streamvis.serialize import empty_detections
from streamvis.weights.hf import load_model

if TYPE_CHECKING:
    from streamvis.batching import Batcher

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TrackedObject:
    object_id: int
    class_id: int
    class_name: str
    confidence: float
    detected_xyxy: np.ndarray  # box of the detection it was last matched to
    xyxy: np.ndarray  # latest box: from its mask, else the detection
    missed_keyframes: int = 0
    pinned: bool = False  # prompted by a person: kept however many keyframes miss it, never re-prompted by them


def _model_classes(kind: str) -> tuple[Any, Any]:
    if kind == "edgetam":
        from transformers import EdgeTamVideoInferenceSession, EdgeTamVideoModel

        return EdgeTamVideoModel, EdgeTamVideoInferenceSession
    from transformers import Sam2VideoInferenceSession, Sam2VideoModel

    return Sam2VideoModel, Sam2VideoInferenceSession


class VideoSegmenterModel(Batchable):
    """SAM 2.1 or EdgeTAM loaded once per process (and, with `backend: onnx`, its onnxruntime graphs);
    `new_stream()` gives each stream its own session. Model calls carry no state between streams."""

    propagates = True

    def __init__(self, config: Sam2Config | EdgeTamConfig) -> None:
        import torch

        self.config = config
        self.name = config.model
        model_cls, self.session_cls = _model_classes(config.type)
        self.model, self.device, self.dtype, self.provider = load_model(
            model_cls, self.name, "segmenter.model", config.device, config.dtype, config.attention)
        size = self.model.config.image_size
        self.image_size = int(size[0] if isinstance(size, (list, tuple)) else size)
        self.num_maskmem = int(self.model.config.num_maskmem)
        self.max_object_pointers = int(self.model.config.max_object_pointers_in_encoder)
        self.torch = torch
        # tracked objects share memory attention and mask decoder calls (SAM 2.1; EdgeTAM runs them one by one)
        wanted = config.batch_objects if isinstance(config, Sam2Config) else False
        self.batch_objects = (self.device == "cuda" if wanted == "auto" else bool(wanted)) \
            and supports_batching(self.model)
        self.onnx_encoder: Any = None
        self.encoder_batcher: Batcher[Any, dict[str, list[Any]]] | None = None
        if isinstance(config, Sam2Config) and config.backend == "onnx":
            self.onnx_encoder = self._onnx_encoder(config)
        # the frame goes to the device once as uint8 and is resized there, or is resized here and copied as floats
        self.preprocess_on_device = config.preprocess == "device" or (
            config.preprocess == "auto" and self.device == "cuda" and self.onnx_encoder is None)
        self.compiled = compile_parts(self.model, list(config.compile), SAM2_PARTS, self.device, config.cuda_graphs,
                                      f"segmenter {self.name}")

    def _onnx_encoder(self, config: Sam2Config) -> Any:
        """The image encoder, and per `onnx_parts` the memory parts, on onnxruntime (exported on first use)."""
        from pathlib import Path

        from streamvis.runtime.export import export_folder
        from streamvis.segmentation.sam2_onnx import attach, export_sam2, is_exported

        precision = config.precision
        folder = Path(config.onnx_dir) if config.onnx_dir else export_folder(self.name, precision)
        if not config.onnx_dir and not is_exported(folder, self.name, precision):
            export_sam2(self.model, self.name, folder, precision, fp32_from=export_folder(self.name))
            self.model.to(self.device, self.dtype)
        encoder, parts = attach(self.model, folder, self.name, list(config.providers), precision,
                                list(config.onnx_parts) if config.onnx_parts is not None else None)
        log.info("segmenter: on onnxruntime: %s", ", ".join(p.removeprefix("sam2_") for p in parts))
        self.provider = f"onnxruntime:{encoder.provider} {precision} + {self.provider}"
        return encoder

    def pixels(self, image_bgr: np.ndarray) -> Any:
        """A BGR frame as the model's (3, S, S) input, on the model's device and dtype."""
        if self.preprocess_on_device:
            return preprocess_square_on(image_bgr, self.image_size, self.device, self.dtype)
        return self.torch.from_numpy(preprocess_square(image_bgr, self.image_size)).to(self.device, self.dtype)

    def encode_frames(self, pixels: list[Any]) -> list[dict[str, list[Any]]]:
        """The image encoder on preprocessed frames (3, S, S), in one batch on torch (one run each on
        onnxruntime, whose graph takes one frame): each frame's features as a session caches them."""
        torch = self.torch
        if self.onnx_encoder is not None:
            runs = [self.onnx_encoder.run_torch({"pixel_values": p[None].float().cpu()}) for p in pixels]
            levels = len(runs[0]) // 2
            return [{"vision_feats": [t.to(self.device, self.dtype) for t in out[:levels]],
                     "vision_pos_embeds": [t.to(self.device, self.dtype) for t in out[levels:]]} for out in runs]
        batch = torch.stack([p.to(self.device, self.dtype) for p in pixels])
        with torch.inference_mode():
            out = self.model.get_image_features(batch, return_dict=True)
        feats, pos = out.fpn_hidden_states, out.fpn_position_encoding  # per level (HW, batch, C)
        if len(pixels) == 1:
            return [{"vision_feats": list(feats), "vision_pos_embeds": list(pos)}]
        return [{"vision_feats": [f[:, i:i + 1].contiguous() for f in feats],
                 "vision_pos_embeds": [e[:, i:i + 1].contiguous() for e in pos]} for i in range(len(pixels))]

    def batch_across_streams(self, max_batch: int, batch_wait_ms: float) -> None:
        """From now on, every stream's image encoding joins a shared batch (`batching.Batcher`)."""
        from streamvis.batching import Batcher

        self.encoder_batcher = Batcher(f"encode-{self.name}", self.encode_frames, max_batch, batch_wait_ms)

    def new_stream(self) -> VideoSegmenter:
        return VideoSegmenter(self)


class VideoSegmenter(Promptable):
    """One stream's objects and streaming session: masks on every frame with stable object ids; call `update`
    once per frame, in order."""

    propagates = True

    def __init__(self, model: VideoSegmenterModel) -> None:
        self.model = model
        self.config = model.config
        self.name, self.provider = model.name, model.provider
        self.objects: dict[int, TrackedObject] = {}
        self._next_id = 1
        self.frame_idx = -1
        self.session = model.session_cls(inference_device=model.device, inference_state_device=model.device,
                                         video_storage_device=model.device, dtype=model.dtype)
        self.last_timings_ms: dict[str, float] = {}

    @property
    def session_bytes(self) -> int:
        return session_nbytes(self.session)

    def _on_keyframe(self, detections: sv.Detections) -> list[int]:
        """Match, add, re-prompt and remove objects; returns the ids to prompt on this frame."""
        ids = list(self.objects)
        tracked = [self.objects[i] for i in ids]
        propagated = np.array([o.xyxy for o in tracked], np.float32).reshape(-1, 4)
        last = np.array([o.detected_xyxy for o in tracked], np.float32).reshape(-1, 4)
        pairs, new_rows, missed_cols = match_detections(detections.xyxy, propagated, last, self.config.match_iou)
        names = detections.data.get("class_name", np.array([""] * len(detections)))
        confidence = detections.confidence if detections.confidence is not None else np.ones(len(detections))
        class_ids = detections.class_id if detections.class_id is not None else np.zeros(len(detections), int)
        prompt_ids: list[int] = []
        for row, col in pairs:
            obj = tracked[col]
            box = detections.xyxy[row].astype(np.float32)
            obj.detected_xyxy, obj.missed_keyframes = box, 0
            if obj.pinned:  # a person's object keeps its own label and prompt; the match only stops a duplicate
                continue
            drifted = float(box_iou(box, obj.xyxy)[0, 0]) < self.config.reprompt_iou
            obj.class_id, obj.class_name = int(class_ids[row]), str(names[row])
            obj.confidence = float(confidence[row])
            if drifted:
                obj.xyxy = box
                prompt_ids.append(obj.object_id)
        gone = []
        for col in missed_cols:
            if tracked[col].pinned:
                continue
            tracked[col].missed_keyframes += 1
            if tracked[col].missed_keyframes >= self.config.max_missed_keyframes:
                gone.append(tracked[col].object_id)
        for object_id in gone:
            del self.objects[object_id]
        remove_objects(self.session, gone)
        for row in new_rows:
            if len(self.objects) >= self.config.max_objects:
                log.warning("segmenter: %d objects tracked (segmenter.max_objects); new ones ignored",
                            len(self.objects))
                break
            box = detections.xyxy[row].astype(np.float32)
            obj = TrackedObject(self._next_id, int(class_ids[row]), str(names[row]), float(confidence[row]), box,
                                box)
            self.objects[obj.object_id] = obj
            prompt_ids.append(obj.object_id)
            self._next_id += 1
        if gone or prompt_ids:
            log.debug("segmenter: frame %d prompts %s, removed %s", self.frame_idx, prompt_ids, gone)
        return prompt_ids

    # -- prompts from people (`streamvis.prompts`) ----------------------------------------------------------
    def prompt(self, image_bgr: np.ndarray, frame_idx: int, points_xy: np.ndarray | None = None,
               labels: list[int] | None = None, box_xyxy: np.ndarray | None = None, object_id: int | None = None,
               class_name: str = "object", class_id: int = -1) -> int:
        """Prompt on this segmenter's frame `frame_idx` (its image, `image_bgr`, as the viewer saw it): points
        (frame pixels; labels 1 and 0) and/or a box, for a new object or to refine `object_id`. Returns the
        object's id; its mask is on the next frame `update` returns."""
        if object_id is not None and object_id not in self.objects:
            raise PromptError(f"prompt: no object {object_id} on this stream (objects: "
                              f"{', '.join(map(str, self.objects)) or 'none'})")
        if object_id is None and len(self.objects) >= self.config.max_objects:
            raise PromptError(f"prompt: {len(self.objects)} objects are tracked already (segmenter.max_objects)")
        height, width = image_bgr.shape[:2]
        size = self.model.image_size
        corners: list[np.ndarray] = []
        values: list[int] = []
        if box_xyxy is not None:
            corners.append(scale_boxes_square(np.asarray(box_xyxy, np.float32), (width, height), size).reshape(2, 2))
            values += [2, 3]
        if points_xy is not None and len(points_xy):
            corners.append(np.asarray(points_xy, np.float32).reshape(-1, 2) * np.array([size / width, size / height],
                                                                                     np.float32))
            values += list(labels or [1] * len(points_xy))
        if not values:
            raise PromptError("prompt: needs points or a box")
        if object_id is None:
            object_id = self._next_id
            self._next_id += 1
            if box_xyxy is not None:
                box = np.asarray(box_xyxy, np.float32)
            else:
                positive = np.asarray(points_xy, np.float32).reshape(-1, 2)[np.asarray(values) == 1]
                box = np.concatenate([positive.min(axis=0) - 1, positive.max(axis=0) + 1]).astype(np.float32)
            self.objects[object_id] = TrackedObject(object_id, class_id, class_name, 1.0, box, box, pinned=True)
        else:
            self.objects[object_id].pinned = True
        session, model = self.session, self.model
        session.video_height, session.video_width = height, width
        if not session.processed_frames or frame_idx not in session.processed_frames:
            pixels = model.pixels(image_bgr)
            session.add_new_frame(pixels, frame_idx)
            if model.onnx_encoder is not None or model.encoder_batcher is not None:
                session.cache.cache_vision_features(frame_idx, model.encode_frames([pixels])[0])
        set_point_prompt(session, frame_idx, object_id, np.concatenate(corners), values,
                         add=box_xyxy is None)
        with model.torch.inference_mode():
            prompt_on_frame(model.model, session, frame_idx, object_id)
        if frame_idx != self.frame_idx:  # the old frame was needed once; the session keeps only the newest
            session.processed_frames.pop(frame_idx, None)
        log.info("segmenter: object %d prompted on frame %d (%s)", object_id, frame_idx,
                 "box" if box_xyxy is not None else f"{len(values)} point(s)")
        return object_id

    def remove(self, object_id: int) -> None:
        """Stop tracking `object_id` (a person removed it)."""
        if object_id not in self.objects:
            raise PromptError(f"prompt: no object {object_id} on this stream (objects: "
                              f"{', '.join(map(str, self.objects)) or 'none'})")
        del self.objects[object_id]
        remove_objects(self.session, [object_id])

    def update(self, image_bgr: np.ndarray, detections: sv.Detections | None = None) -> sv.Detections:
        """Segment one frame. `detections` on keyframes (possibly empty), None between keyframes."""
        t0 = time.perf_counter()
        self.frame_idx += 1
        height, width = image_bgr.shape[:2]
        self.session.video_height, self.session.video_width = height, width
        prompt_ids = self._on_keyframe(detections) if detections is not None else []
        if not self.objects:
            self.last_timings_ms = {"segment": (time.perf_counter() - t0) * 1e3}
            return empty_detections()
        if prompt_ids:
            boxes = np.array([self.objects[i].detected_xyxy for i in prompt_ids], np.float32)
            add_box_prompts(self.session, self.frame_idx, prompt_ids,
                            scale_boxes_square(boxes, (width, height), self.model.image_size))
        model = self.model
        pixels = model.pixels(image_bgr)
        t1 = time.perf_counter()
        # features computed here (a batch shared with other streams, or onnxruntime) go where the model looks for
        # this frame's; otherwise the model encodes the frame itself
        if model.encoder_batcher is not None:
            self.session.cache.cache_vision_features(self.frame_idx, model.encoder_batcher(pixels))
        elif model.onnx_encoder is not None:
            self.session.cache.cache_vision_features(self.frame_idx, model.encode_frames([pixels])[0])
        with model.torch.inference_mode():
            out = propagate(model.model, self.session, self.frame_idx, pixels, model.batch_objects)
        t2 = time.perf_counter()
        masks = upsample_masks(out.pred_masks[:, 0].float(), (width, height), self.config.mask_threshold)
        present = (out.object_score_logits.float().reshape(-1) > 0).cpu().numpy()
        prune_session(self.session, self.frame_idx, model.num_maskmem, model.max_object_pointers,
                      self.config.max_conditioning_frames)
        result = self._detections(list(out.object_ids), masks, present)
        self.last_timings_ms = {"segment_pre": (t1 - t0) * 1e3, "segment": (t2 - t1) * 1e3,
                                "segment_post": (time.perf_counter() - t2) * 1e3}
        return result

    def _detections(self, object_ids: list[int], masks: np.ndarray, present: np.ndarray) -> sv.Detections:
        """Objects the model sees on this frame, with their masks; boxes are the masks' extents."""
        mask_boxes = masks_to_xyxy(masks)
        keep = []
        for i, object_id in enumerate(object_ids):
            obj = self.objects.get(int(object_id))
            if obj is None or not present[i] or not masks[i].any():
                continue  # occluded or out of view on this frame: kept in the session, not drawn
            obj.xyxy = mask_boxes[i]
            keep.append((i, obj))
        if not keep:
            return empty_detections()
        rows = [i for i, _ in keep]
        objs = [obj for _, obj in keep]
        return sv.Detections(
            xyxy=mask_boxes[rows],
            mask=masks[rows],
            confidence=np.array([o.confidence for o in objs], np.float32),
            class_id=np.array([o.class_id for o in objs], int),
            tracker_id=np.array([o.object_id for o in objs], int),
            data={"class_name": np.array([o.class_name for o in objs], dtype=str)},
        )
