"""Burn boxes, labels, masks and a caption band into frames; sizes follow the resolution (360p to 4K)."""

from __future__ import annotations

import textwrap

import cv2
import numpy as np
import supervision as sv

from streamvis.config import AnnotatorConfig
from streamvis.frame import TextReading


def label_texts(detections: sv.Detections, show_track_id: bool = True, show_score: bool = True) -> list[str]:
    """`person #3 0.87`: class name, track id when confirmed, score."""
    names = detections.data.get("class_name")
    labels = []
    for i in range(len(detections)):
        parts = [str(names[i]) if names is not None else str(i)]
        if show_track_id and detections.tracker_id is not None and int(detections.tracker_id[i]) >= 0:
            parts.append(f"#{int(detections.tracker_id[i])}")
        if show_score and detections.confidence is not None:
            parts.append(f"{float(detections.confidence[i]):.2f}")
        labels.append(" ".join(parts))
    return labels


def draw_caption(image: np.ndarray, text: str, max_lines: int = 3) -> np.ndarray:
    """A dark band along the bottom with `text` wrapped in white, sized to stay legible from 360p to 1080p."""
    height, width = image.shape[:2]
    scale = max(0.45, height / 900)
    thickness = max(1, round(scale * 2))
    font = cv2.FONT_HERSHEY_SIMPLEX
    char_w = cv2.getTextSize("abcdefghij", font, scale, thickness)[0][0] / 10
    line_h = int(cv2.getTextSize("Ag", font, scale, thickness)[0][1] * 1.9)
    lines = textwrap.wrap(text, max(10, int((width - 2 * line_h) / char_w)))[:max_lines]
    if not lines:
        return image
    band_h = line_h * len(lines) + line_h // 2
    top = height - band_h
    region = image[top:height]
    image[top:height] = (region * 0.35).astype(np.uint8)
    for i, line in enumerate(lines):
        y = top + line_h * (i + 1) - line_h // 4
        cv2.putText(image, line, (line_h // 2, y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return image


def draw_texts(image: np.ndarray, texts: tuple[TextReading, ...]) -> np.ndarray:
    """Each text read: its outline, and the words read above it on a dark label."""
    height = image.shape[0]
    scale = max(0.4, height / 1100)
    thickness = max(1, round(scale * 2))
    font = cv2.FONT_HERSHEY_SIMPLEX
    for reading in texts:
        corners = np.array(reading.polygon_xy, np.int32).reshape(-1, 1, 2)
        cv2.polylines(image, [corners], True, (0, 215, 255), thickness, cv2.LINE_AA)
        (w, h), base = cv2.getTextSize(reading.text, font, scale, thickness)
        x = int(min(p[0] for p in reading.polygon_xy))
        y = max(h + base, int(min(p[1] for p in reading.polygon_xy)) - 3)
        cv2.rectangle(image, (x, y - h - base), (x + w, y + base // 2), (0, 0, 0), -1)
        cv2.putText(image, reading.text, (x, y - base // 2), font, scale, (0, 215, 255), thickness, cv2.LINE_AA)
    return image


class Annotator:
    """supervision annotators, rebuilt when the resolution changes."""

    def __init__(self, config: AnnotatorConfig) -> None:
        self.config = config
        self._resolution_wh: tuple[int, int] | None = None

    def _setup(self, resolution_wh: tuple[int, int]) -> None:
        thickness = sv.calculate_optimal_line_thickness(resolution_wh)
        text_scale = sv.calculate_optimal_text_scale(resolution_wh)
        self._boxes = {lookup: sv.BoxAnnotator(thickness=thickness, color_lookup=lookup)
                       for lookup in (sv.ColorLookup.TRACK, sv.ColorLookup.CLASS)}
        self._labels = {lookup: sv.LabelAnnotator(text_scale=text_scale, text_thickness=max(1, thickness // 2),
                                                  text_padding=max(3, thickness * 2), color_lookup=lookup,
                                                  smart_position=True)
                        for lookup in (sv.ColorLookup.TRACK, sv.ColorLookup.CLASS)}
        self._masks = {lookup: sv.MaskAnnotator(opacity=self.config.mask_opacity, color_lookup=lookup)
                       for lookup in (sv.ColorLookup.TRACK, sv.ColorLookup.CLASS)}
        self._resolution_wh = resolution_wh

    def annotate(self, image: np.ndarray, detections: sv.Detections, caption: str | None = None,
                 texts: tuple[TextReading, ...] = ()) -> np.ndarray:
        """A copy of `image` (BGR) with the detections (the text read, and the caption) drawn on it."""
        resolution_wh = (image.shape[1], image.shape[0])
        if resolution_wh != self._resolution_wh:
            self._setup(resolution_wh)
        scene = image.copy()
        if len(detections):
            tracked = detections.tracker_id is not None and (detections.tracker_id >= 0).all()
            lookup = sv.ColorLookup.TRACK if tracked else sv.ColorLookup.CLASS
            if self.config.masks and detections.mask is not None:
                scene = self._masks[lookup].annotate(scene, detections)
            if self.config.boxes:
                scene = self._boxes[lookup].annotate(scene, detections)
            if self.config.labels:
                labels = label_texts(detections, self.config.show_track_id, self.config.show_score)
                scene = self._labels[lookup].annotate(scene, detections, labels=labels)
        if texts:
            scene = draw_texts(scene, texts)
        if caption and self.config.caption:
            scene = draw_caption(scene, caption)
        return scene
