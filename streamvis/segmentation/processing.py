"""SAM / SAM 2 pre- and post-processing as pure numpy/torch functions.

The transformers SAM-family *processors* need torchvision, which this project cannot install (see DESIGN.md);
the *models* do not. So images are resized here to the model's square input, scaled to [0, 1] and normalised
with the ImageNet mean/std; boxes are scaled by size/W and size/H; mask logits are upsampled bilinearly to the
frame and thresholded.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess_square(image_bgr: np.ndarray, size: int) -> np.ndarray:
    """BGR uint8 (H, W, 3) -> float32 (3, size, size): RGB, bilinear resize (aspect not kept), /255, normalised."""
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
    pixels = (resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def preprocess_square_on(image_bgr: np.ndarray, size: int, device: Any, dtype: Any) -> Any:
    """`preprocess_square` on a torch device: the uint8 frame is copied once, then resized (bilinear, antialiased
    as torchvision resizes, rounded to uint8 levels) and normalised there. Returns (3, size, size) in `dtype`."""
    import torch

    frame = torch.from_numpy(np.ascontiguousarray(image_bgr))
    if frame.device.type == "cpu" and torch.device(device).type == "cuda":
        frame = frame.pin_memory()
    frame = frame.to(device, non_blocking=True)
    rgb = frame.flip(-1).permute(2, 0, 1)[None].float()
    resized = torch.nn.functional.interpolate(rgb, size=(size, size), mode="bilinear", align_corners=False,
                                              antialias=True).round_().clamp_(0, 255)[0]
    mean = torch.as_tensor(IMAGENET_MEAN, device=resized.device).view(3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD, device=resized.device).view(3, 1, 1)
    return ((resized / 255.0 - mean) / std).to(dtype)


def scale_boxes_square(xyxy: np.ndarray, resolution_wh: tuple[int, int], size: int) -> np.ndarray:
    """Frame-pixel boxes to the model's square input: x * size / W, y * size / H."""
    width, height = resolution_wh
    scale = np.array([size / width, size / height, size / width, size / height], dtype=np.float32)
    return np.asarray(xyxy, dtype=np.float32).reshape(-1, 4) * scale


def preprocess_longest_side(image_bgr: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """SAM (v1) input: resize the longest side to `size`, normalise, pad bottom/right to (3, size, size).

    Returns the pixels and the resized (height, width) before padding, which the masks are cropped back to.
    """
    height, width = image_bgr.shape[:2]
    scale = size / max(height, width)
    new_h, new_w = int(height * scale + 0.5), int(width * scale + 0.5)
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pixels = np.zeros((size, size, 3), dtype=np.float32)
    pixels[:new_h, :new_w] = (resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)), (new_h, new_w)


def scale_boxes_longest_side(xyxy: np.ndarray, resolution_wh: tuple[int, int], size: int) -> np.ndarray:
    """Frame-pixel boxes to SAM (v1) input coordinates: one scale, size / longest side."""
    width, height = resolution_wh
    return np.asarray(xyxy, dtype=np.float32).reshape(-1, 4) * (size / max(width, height))


def upsample_masks(mask_logits: Any, resolution_wh: tuple[int, int], threshold: float = 0.0,
                   valid_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Mask logits (N, h, w) (torch or numpy) -> bool masks (N, H, W) at the frame size.

    `valid_hw` crops padded logits first (SAM v1 pads to a square): the part of the (h, w) grid that holds
    the image, given as the fraction of the padded square scaled to (h, w).
    """
    import torch

    logits = torch.as_tensor(mask_logits).float()
    if logits.ndim == 2:
        logits = logits[None]
    if logits.ndim != 3:
        raise ValueError(f"mask logits must be (N, h, w), got shape {tuple(logits.shape)}")
    width, height = resolution_wh
    if len(logits) == 0:
        return np.zeros((0, height, width), dtype=bool)
    if valid_hw is not None:
        logits = logits[:, : valid_hw[0], : valid_hw[1]]
    up = torch.nn.functional.interpolate(logits[:, None], size=(height, width), mode="bilinear",
                                         align_corners=False)[:, 0]
    return (up > threshold).cpu().numpy()


def masks_to_xyxy(masks: np.ndarray) -> np.ndarray:
    """Tight boxes around bool masks (N, H, W); an empty mask gives [0, 0, 0, 0]."""
    out = np.zeros((len(masks), 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if len(rows):
            out[i] = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
    return out
