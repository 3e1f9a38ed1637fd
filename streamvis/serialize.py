"""Detections and results as JSON-ready dicts: the JSONL events file and the live data channel share this."""

from __future__ import annotations

from typing import Any

import numpy as np
import supervision as sv

from streamvis.frame import Result


def detections_to_json(detections: sv.Detections, decimals: int = 1) -> list[dict[str, Any]]:
    """One dict per detection: xyxy pixels, class name and id, score, track id (None while unconfirmed)."""
    names = detections.data.get("class_name")
    out = []
    for i in range(len(detections)):
        item: dict[str, Any] = {"xyxy": [round(float(v), decimals) for v in detections.xyxy[i]]}
        if detections.class_id is not None:
            item["class_id"] = int(detections.class_id[i])
        item["class_name"] = str(names[i]) if names is not None else None
        item["score"] = round(float(detections.confidence[i]), 4) if detections.confidence is not None else None
        track = detections.tracker_id[i] if detections.tracker_id is not None else -1
        item["track_id"] = int(track) if track is not None and int(track) >= 0 else None
        out.append(item)
    return out


def result_to_json(result: Result) -> dict[str, Any]:
    """The per-frame record: frame index, pts (seconds), source id, keyframe flag, detections."""
    record: dict[str, Any] = {
        "frame_index": result.frame.index,
        "pts": round(result.frame.pts, 6),
        "source_id": result.frame.source_id,
        "keyframe": result.keyframe,
        "detections": detections_to_json(result.detections),
    }
    if result.description is not None:
        record["description"] = {"text": result.description.text, "frame_index": result.description.frame_index}
    return record


def empty_detections() -> sv.Detections:
    return sv.Detections(xyxy=np.zeros((0, 4), np.float32), confidence=np.zeros(0, np.float32),
                         class_id=np.zeros(0, int), data={"class_name": np.array([], dtype=str)})
