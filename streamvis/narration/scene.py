"""Where a box is (left / ahead / right, near / far), a cheap scene-change measure, and text similarity for not
repeating a caption. Pure functions; the objects themselves are `scene_model`'s."""

from __future__ import annotations

import re

import cv2
import numpy as np


def locate(xyxy: np.ndarray, resolution_wh: tuple[int, int]) -> tuple[str, str]:
    """(side, distance) of a box: thirds of the width by its centre; near / far by its share of the height."""
    width, height = resolution_wh
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    centre = (x1 + x2) / 2 / max(width, 1)
    side = "left" if centre < 1 / 3 else "right" if centre > 2 / 3 else "ahead"
    share = (y2 - y1) / max(height, 1)
    distance = "near" if share >= 0.45 else "far" if share < 0.15 else "mid"
    return side, distance


def scene_signature(image_bgr: np.ndarray) -> np.ndarray:
    """A small normalised HSV histogram: cheap (under a millisecond at 720p) and robust to noise."""
    small = cv2.resize(image_bgr, (64, 36), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, hist).flatten()


def scene_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two signatures: 0 for the same scene, towards 1 for a different one."""
    return float(cv2.compareHist(a.astype(np.float32), b.astype(np.float32), cv2.HISTCMP_BHATTACHARYYA))


_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"a", "an", "the", "is", "are", "of", "in", "on", "and", "with", "to", "there", "image", "this", "it"}


def text_similarity(a: str, b: str) -> float:
    """Jaccard overlap of content words: 1.0 when two descriptions say the same thing in other words' order."""
    words_a = {w for w in _WORD.findall(a.lower()) if w not in _STOP}
    words_b = {w for w in _WORD.findall(b.lower()) if w not in _STOP}
    if not words_a and not words_b:
        return 1.0
    return len(words_a & words_b) / len(words_a | words_b)
