"""Matching keyframe detections to the objects a segmenter already tracks (pure functions)."""

from __future__ import annotations

import numpy as np


def box_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)); boxes with no area overlap nothing."""
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    left_top = np.maximum(a[:, None, :2], b[None, :, :2])
    right_bottom = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(right_bottom - left_top, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def greedy_match(iou: np.ndarray, threshold: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Pairs (row, col) taken in order of falling IoU, each at least `threshold`; then unmatched rows and cols."""
    rows, cols = iou.shape
    pairs: list[tuple[int, int]] = []
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    if rows and cols:
        order = np.argsort(-iou, axis=None, kind="stable")
        for flat in order:
            r, c = divmod(int(flat), cols)
            if iou[r, c] < threshold:
                break
            if r in used_rows or c in used_cols:
                continue
            pairs.append((r, c))
            used_rows.add(r)
            used_cols.add(c)
    return (pairs, [r for r in range(rows) if r not in used_rows], [c for c in range(cols) if c not in used_cols])


def match_detections(detection_xyxy: np.ndarray, propagated_xyxy: np.ndarray, last_detected_xyxy: np.ndarray,
                     threshold: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Match detections (rows) to tracked objects (cols).

    An object's overlap is the better of its propagated mask box and its box at the last keyframe, so a mask
    that drifted or vanished for a moment still keeps its identity while the detector sees it where it was.
    """
    iou = np.maximum(box_iou(detection_xyxy, propagated_xyxy), box_iou(detection_xyxy, last_detected_xyxy))
    return greedy_match(iou, threshold)
