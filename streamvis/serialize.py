"""Detections and results as JSON-ready dicts: the JSONL events file and the live data channel share this."""

from __future__ import annotations

from typing import Any

import numpy as np
import supervision as sv

from streamvis.frame import Result, TextReading


def masks_to_rle(masks: np.ndarray) -> list[dict[str, Any]]:
    """Bool masks (N, H, W) to COCO RLE dicts `{"size": [h, w], "counts": "..."}` (compressed string counts)."""
    from pycocotools import mask as mask_utils

    if len(masks) == 0:
        return []
    encoded = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")} for rle in encoded]


def rle_to_masks(rles: list[dict[str, Any]]) -> np.ndarray:
    """The inverse of `masks_to_rle`: (N, H, W) bool."""
    from pycocotools import mask as mask_utils

    if not rles:
        return np.zeros((0, 0, 0), dtype=bool)
    coded = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]
    return np.asarray(mask_utils.decode(coded), dtype=bool).transpose(2, 0, 1)


def detections_to_json(detections: sv.Detections, decimals: int = 1) -> list[dict[str, Any]]:
    """One dict per detection: xyxy pixels, class name and id, score, track id (None while unconfirmed; the
    segmenter's object id when SAM 2 carries the objects) and, when masks exist, the mask as COCO RLE."""
    names = detections.data.get("class_name")
    rles = masks_to_rle(np.asarray(detections.mask)) if detections.mask is not None else None
    out = []
    for i in range(len(detections)):
        item: dict[str, Any] = {"xyxy": [round(float(v), decimals) for v in detections.xyxy[i]]}
        if detections.class_id is not None:
            item["class_id"] = int(detections.class_id[i])
        item["class_name"] = str(names[i]) if names is not None else None
        item["score"] = round(float(detections.confidence[i]), 4) if detections.confidence is not None else None
        track = detections.tracker_id[i] if detections.tracker_id is not None else -1
        item["track_id"] = int(track) if track is not None and int(track) >= 0 else None
        if rles is not None:
            item["mask"] = rles[i]
        out.append(item)
    return out


def detections_from_json(items: list[dict[str, Any]]) -> sv.Detections:
    """The inverse of `detections_to_json` (boxes, scores, classes, track ids and masks as written)."""
    if not items:
        return empty_detections()
    tracks = [item.get("track_id") for item in items]
    masks = [item["mask"] for item in items if "mask" in item]
    return sv.Detections(
        xyxy=np.array([item["xyxy"] for item in items], np.float32),
        confidence=np.array([item.get("score") if item.get("score") is not None else 1.0 for item in items],
                            np.float32),
        class_id=np.array([item.get("class_id", 0) for item in items], int),
        tracker_id=np.array([-1 if t is None else t for t in tracks], int) if any(t is not None for t in tracks)
        else None,
        mask=rle_to_masks(masks) if len(masks) == len(items) else None,
        data={"class_name": np.array([item.get("class_name") or "" for item in items], dtype=str)})


def texts_to_json(texts: tuple[TextReading, ...]) -> list[dict[str, Any]]:
    """The text in view: each reading's words, score, corners (the frame's pixels), id, place and the object it
    is on; `new` marks the readings first made (or changed) at this frame."""
    return [{"text": r.text, "score": r.score, "polygon_xy": [list(p) for p in r.polygon_xy], "text_id": r.text_id,
             "side": r.side, "distance": r.distance, "object": r.object, "object_track": r.object_track,
             "new": r.new, "first_pts": round(r.first_pts, 6)} for r in texts]


def result_to_json(result: Result) -> dict[str, Any]:
    """The per-frame record: frame index, pts (seconds), source id, the frame's size (detections are in its
    pixels, even where the video letterboxes it), keyframe flag, detections; the text in view (`texts`) and the
    narration (`description`) when there are any."""
    record: dict[str, Any] = {
        "frame_index": result.frame.index,
        "pts": round(result.frame.pts, 6),
        "source_id": result.frame.source_id,
        "resolution_wh": list(result.frame.resolution_wh),
        "keyframe": result.keyframe,
        "detections": detections_to_json(result.detections),
    }
    if result.texts:
        record["texts"] = texts_to_json(result.texts)
    if result.description is not None:
        d = result.description
        record["description"] = {"text": d.text, "frame_index": d.frame_index, "reason": d.reason,
                                 "urgent": d.urgent, "tracks": list(d.tracks)}
    return record


def empty_detections() -> sv.Detections:
    return sv.Detections(xyxy=np.zeros((0, 4), np.float32), confidence=np.zeros(0, np.float32),
                         class_id=np.zeros(0, int), data={"class_name": np.array([], dtype=str)})
