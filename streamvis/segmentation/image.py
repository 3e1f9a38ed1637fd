"""Image-only box-to-mask segmentation with SAM (v1): each box the detector (and tracker) gives becomes a mask.

There is no memory between frames, so masks exist on the frames the segmenter runs on (keyframes); the tracker
carries boxes and ids in between.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import supervision as sv

from streamvis.config import SamConfig
from streamvis.segmentation.processing import preprocess_longest_side, scale_boxes_longest_side, upsample_masks
from streamvis.weights.hf import load_model

log = logging.getLogger(__name__)


class ImageSegmenter:
    """SAM (v1): `update(image, detections)` returns the detections with `mask` filled in."""

    propagates = False

    def __init__(self, config: SamConfig) -> None:
        import torch
        from transformers import SamModel

        self.config = config
        self.name = config.model
        self.model, self.device, self.dtype, self.provider = load_model(
            SamModel, self.name, "segmenter.model", config.device, config.dtype,
            config.attention)
        size = self.model.config.vision_config.image_size
        self.image_size = int(size[0] if isinstance(size, (list, tuple)) else size)
        self._torch = torch
        self.last_timings_ms: dict[str, float] = {}
        log.info("segmenter: SAM %s on %s", self.name, self.provider)

    def new_stream(self) -> ImageSegmenter:
        """Stateless between frames: every stream uses the model as it is."""
        return self

    def update(self, image_bgr: np.ndarray, detections: sv.Detections | None = None) -> sv.Detections:
        if detections is None or not len(detections):
            return detections if detections is not None else sv.Detections.empty()
        t0 = time.perf_counter()
        height, width = image_bgr.shape[:2]
        pixels, resized_hw = preprocess_longest_side(image_bgr, self.image_size)
        boxes = scale_boxes_longest_side(detections.xyxy, (width, height), self.image_size)
        torch = self._torch
        t1 = time.perf_counter()
        with torch.inference_mode():
            out = self.model(pixel_values=torch.from_numpy(pixels)[None].to(self.device, self.dtype),
                             input_boxes=torch.from_numpy(boxes)[None].to(self.device, self.dtype),
                             multimask_output=False)
        t2 = time.perf_counter()
        logits = out.pred_masks[0, :, 0].float()  # (N, h, w) over the padded square
        grid = logits.shape[-1] / self.image_size
        valid_hw = (max(1, round(resized_hw[0] * grid)), max(1, round(resized_hw[1] * grid)))
        masks = upsample_masks(logits, (width, height), self.config.mask_threshold, valid_hw=valid_hw)
        result = sv.Detections(xyxy=detections.xyxy, mask=masks, confidence=detections.confidence,
                               class_id=detections.class_id, tracker_id=detections.tracker_id,
                               data=dict(detections.data))
        self.last_timings_ms = {"segment_pre": (t1 - t0) * 1e3, "segment": (t2 - t1) * 1e3,
                                "segment_post": (time.perf_counter() - t2) * 1e3}
        return result
