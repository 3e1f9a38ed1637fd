"""SAM 3 in a stream: concepts named in words ("person. red car") are found on every frame and tracked with stable
ids, new instances joining as they appear; viewers add concepts mid-stream (`add_concept`). transformers'
`Sam3VideoModel` runs detection and SAM 2-style tracking on each streamed frame; its session keeps every frame and
every per-frame record, so `prune_sam3_session` keeps it to what the model still reads (flat memory).

Pre-processing is done here (resize to the model's square size, /255, mean and std 0.5), because transformers'
SAM 3 processors need torchvision; the tokenizer is the checkpoint's own (`AutoTokenizer`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import cv2
import numpy as np
import supervision as sv

from streamvis.config import Sam3Config
from streamvis.detection.florence2 import split_prompt
from streamvis.segmentation.base import ConceptSegmenter
from streamvis.segmentation.processing import masks_to_xyxy, upsample_masks
from streamvis.segmentation.session import prune_session
from streamvis.serialize import empty_detections
from streamvis.weights.hf import load_model, load_pretrained

log = logging.getLogger(__name__)

TEXT_TOKENS = 32  # SAM 3 reads each concept as 32 token ids


def preprocess_sam3(image_bgr: np.ndarray, size: int) -> np.ndarray:
    """BGR uint8 (H, W, 3) -> float32 (3, size, size): RGB, bilinear resize, /255, normalised with mean and std
    0.5 (SAM 3's image processor)."""
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(((resized.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1))


def prune_sam3_session(session: Any, frame_idx: int, window: int, num_maskmem: int, max_object_pointers: int,
                       max_conditioning_frames: int) -> None:
    """Forget what the model can no longer read after `frame_idx`: the tracker's outputs (as SAM 2's, see
    `prune_session`), and the per-frame records of detection and hot-start older than `window` frames."""
    prune_session(session, frame_idx, num_maskmem, max_object_pointers, max_conditioning_frames)
    oldest = frame_idx - window
    for frames in (session.suppressed_obj_ids, session.obj_id_to_tracker_score_frame_wise):
        for t in [t for t in frames if isinstance(t, int) and t < oldest]:
            del frames[t]
    for per_object in (session.unmatched_frame_inds, session.overlap_pair_to_frame_inds):
        for key in list(per_object):
            kept = [t for t in per_object[key] if t >= oldest]
            if kept:
                per_object[key] = kept
            else:
                del per_object[key]


def streaming_session_class(base: type) -> type:
    """`base` (transformers' SAM 3 session) whose `num_frames` counts every frame it was given, pruned or not:
    the model reads it to size its object pointers, so a pruned session must still report the frames it saw."""

    class StreamingSession(base):  # type: ignore[misc]  # a class known at run time (transformers')
        frames_seen = 0

        @property
        def num_frames(self) -> int:
            return self.frames_seen

        def add_new_frame(self, pixel_values: Any, frame_idx: int | None = None) -> int:
            index = int(super().add_new_frame(pixel_values, frame_idx))
            self.frames_seen = max(self.frames_seen, index + 1)
            return index

    return StreamingSession


class Sam3SegmenterModel:
    """SAM 3 loaded once per process with its tokenizer; `new_stream()` gives each stream its own session."""

    propagates = True

    def __init__(self, config: Sam3Config) -> None:
        import torch
        from transformers import AutoTokenizer, Sam3VideoInferenceSession, Sam3VideoModel

        self.config = config
        self.name = config.model
        self.model, self.device, self.dtype, self.provider = load_model(
            Sam3VideoModel, self.name, "segmenter.model", config.device, config.dtype, config.attention)
        self.tokenizer = load_pretrained(AutoTokenizer, self.name, "segmenter.model")
        self.session_cls = streaming_session_class(Sam3VideoInferenceSession)
        self.model.max_num_objects = config.max_objects
        size = self.model.config.image_size
        self.image_size = int(size[0] if isinstance(size, (list, tuple)) else size)
        tracker = self.model.tracker_model.config
        self.num_maskmem = int(tracker.num_maskmem)
        self.max_object_pointers = int(tracker.max_object_pointers_in_encoder)
        self.max_conditioning_frames = int(tracker.max_cond_frame_num)
        # per-frame records are read back over the hot-start delay, the memory window and the reconditioning period
        self.window = max(int(self.model.config.hotstart_delay), self.num_maskmem, self.max_object_pointers,
                          int(self.model.config.recondition_every_nth_frame)) + 1
        self.torch = torch

    def tokens(self, text: str) -> tuple[Any, Any]:
        encoded = self.tokenizer(text, return_tensors="pt", padding="max_length", max_length=TEXT_TOKENS,
                                 truncation=True)
        return encoded.input_ids.to(self.device), encoded.attention_mask.to(self.device)

    def new_stream(self) -> Sam3Segmenter:
        return Sam3Segmenter(self)


class Sam3Segmenter(ConceptSegmenter):
    """One stream's SAM 3 session: call `update` once per frame, in order; `add_concept` between frames."""

    propagates = True

    def __init__(self, model: Sam3SegmenterModel) -> None:
        self.model = model
        self.config = model.config
        self.name, self.provider = model.name, model.provider
        self.session = model.session_cls(inference_device=model.device, inference_state_device=model.device,
                                         video_storage_device=model.device, dtype=model.dtype)
        self.frame_idx = -1
        self.concepts: list[str] = []
        self.last_timings_ms: dict[str, float] = {}
        if self.config.prompt.strip():
            self.add_concept(self.config.prompt)

    def add_concept(self, text: str) -> list[int]:
        """Find and track every instance of what `text` names ("red car. dog": two concepts) from the next frame
        on. Returns no ids: instances join, each with its own, as SAM 3 finds them."""
        for phrase in split_prompt(text):
            if phrase in self.concepts:
                continue
            prompt_id = self.session.add_prompt(phrase)
            ids, mask = self.model.tokens(phrase)
            self.session.prompt_input_ids[prompt_id] = ids
            self.session.prompt_attention_masks[prompt_id] = mask
            self.concepts.append(phrase)
            log.info("segmenter: SAM 3 now finds '%s'", phrase)
        return []

    def update(self, image_bgr: np.ndarray, detections: sv.Detections | None = None) -> sv.Detections:
        """Segment one frame (`detections` is ignored: SAM 3 detects the concepts itself)."""
        t0 = time.perf_counter()
        if not self.concepts:
            self.last_timings_ms = {"segment": 0.0}
            return empty_detections()
        self.frame_idx += 1
        height, width = image_bgr.shape[:2]
        model, session = self.model, self.session
        session.video_height, session.video_width = height, width
        pixels = model.torch.from_numpy(preprocess_sam3(image_bgr, model.image_size)).to(model.device, model.dtype)
        t1 = time.perf_counter()
        with model.torch.inference_mode():
            out = model.model(inference_session=session, frame_idx=self.frame_idx, frame=pixels)
        t2 = time.perf_counter()
        result = self._detections(out, (width, height))
        prune_sam3_session(session, self.frame_idx, model.window, model.num_maskmem, model.max_object_pointers,
                           model.max_conditioning_frames)
        self.last_timings_ms = {"segment_pre": (t1 - t0) * 1e3, "segment": (t2 - t1) * 1e3,
                                "segment_post": (time.perf_counter() - t2) * 1e3}
        return result

    def _detections(self, out: Any, resolution_wh: tuple[int, int]) -> sv.Detections:
        hidden = set(out.suppressed_obj_ids or ()) | set(self.session.hotstart_removed_obj_ids)
        ids = [i for i in sorted(out.obj_id_to_mask) if i not in hidden]
        if not ids:
            return empty_detections()
        logits = self.model.torch.cat([out.obj_id_to_mask[i].float().reshape(1, *out.obj_id_to_mask[i].shape[-2:])
                                       for i in ids])
        masks = upsample_masks(logits, resolution_wh, self.config.mask_threshold)
        keep = [k for k in range(len(ids)) if masks[k].any()]
        if not keep:
            return empty_detections()
        prompts = self.session.obj_id_to_prompt_id
        names = [self.session.prompts.get(prompts.get(ids[k]), "object") for k in keep]
        return sv.Detections(
            xyxy=masks_to_xyxy(masks[keep]),
            mask=masks[keep],
            confidence=np.array([float(out.obj_id_to_score.get(ids[k], 1.0)) for k in keep], np.float32),
            class_id=np.array([int(prompts.get(ids[k], 0)) for k in keep], int),
            tracker_id=np.array([ids[k] + 1 for k in keep], int),  # ids from 1, as the other segmenters give
            data={"class_name": np.array(names, dtype=str)},
        )
