"""Segmenters with tiny random SAM 2.1 / EdgeTAM / SAM models: identity across keyframes, objects added and removed
mid-stream, bounded session memory, pruning that changes no mask. Detections come from the synthetic source's
exact ground truth (a stand-in detector: it tests the segmenter's bookkeeping, not a model's accuracy)."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv
from support import TinyModels

from streamvis.config import EdgeTamConfig, Sam2Config, SamConfig
from streamvis.segmentation import Segmenter, load_segmenter
from streamvis.segmentation import session as session_mod
from streamvis.segmentation.matching import box_iou, greedy_match, match_detections
from streamvis.segmentation.video import VideoSegmenter
from streamvis.sources import open_source


@pytest.mark.parametrize(("a", "b", "expected"), [
    ([[0, 0, 10, 10]], [[0, 0, 10, 10]], [[1.0]]),
    ([[0, 0, 10, 10]], [[5, 0, 15, 10]], [[1 / 3]]),
    ([[0, 0, 10, 10]], [[20, 20, 30, 30], [0, 0, 0, 0]], [[0.0, 0.0]]),
    (np.zeros((0, 4)), [[0, 0, 1, 1]], np.zeros((0, 1))),
])
def test_box_iou(a, b, expected) -> None:
    np.testing.assert_allclose(box_iou(np.array(a), np.array(b)), np.array(expected), atol=1e-9)


@pytest.mark.parametrize(("iou", "threshold", "pairs", "rows", "cols"), [
    ([[0.9, 0.1], [0.8, 0.7]], 0.3, [(0, 0), (1, 1)], [], []),  # greedy: best pair first, then the rest
    ([[0.2]], 0.3, [], [0], [0]),
    ([[0.5, 0.6]], 0.3, [(0, 1)], [], [0]),
    (np.zeros((0, 2)), 0.3, [], [], [0, 1]),
    (np.zeros((2, 0)), 0.3, [], [0, 1], []),
])
def test_greedy_match(iou, threshold, pairs, rows, cols) -> None:
    assert greedy_match(np.array(iou, float).reshape(np.shape(iou)), threshold) == (pairs, rows, cols)


def test_match_uses_last_detection_when_mask_drifted() -> None:
    detections = np.array([[100, 100, 150, 150]], np.float32)
    drifted_mask_box = np.array([[0, 0, 20, 20]], np.float32)
    last_detection = np.array([[102, 101, 151, 152]], np.float32)
    assert match_detections(detections, drifted_mask_box, last_detection, 0.3)[0] == [(0, 0)]
    assert match_detections(detections, drifted_mask_box, drifted_mask_box, 0.3)[0] == []


def _synthetic(frames: int, enter: int = 0, objects: int = 3):
    return open_source(f"synthetic:?w=320&h=192&frames={frames}&objects={objects}&enter={enter}&seed=3")


def _run(segmenter, source, every: int, detections_at=None):
    """Feed every frame; keyframes get the source's ground truth. Yields (frame index, gt, output) as it goes."""
    for frame in source.frames():
        gt = source.boxes_at(frame.index)
        keyframe = frame.index % every == 0
        given = (detections_at(frame.index, gt) if detections_at else gt) if keyframe else None
        yield frame.index, gt, segmenter.update(frame.image, given)


def _config(tiny: TinyModels, **kw) -> Sam2Config | EdgeTamConfig | SamConfig:
    cls = {"sam2": Sam2Config, "edgetam": EdgeTamConfig, "sam": SamConfig}[kw.pop("type", "sam2")]
    return cls(model=str(kw.pop("model", tiny.sam2)), device="cpu", **kw)


def build_segmenter(config: Sam2Config | EdgeTamConfig | SamConfig) -> Segmenter:
    """A stream's segmenter on a freshly loaded model."""
    model = load_segmenter(config)
    assert model is not None
    return model.new_stream()


@pytest.mark.parametrize("kind", ["sam2", "edgetam"])
def test_ids_stable_and_late_object_added_without_disturbing_others(tiny_models: TinyModels, kind: str) -> None:
    model = tiny_models.sam2 if kind == "sam2" else tiny_models.edgetam
    segmenter = build_segmenter(_config(tiny_models, type=kind, model=model))
    assert isinstance(segmenter, VideoSegmenter)
    records = _run(segmenter, _synthetic(45, enter=22), every=5)  # lazily: segmenter state is per frame
    mapping: dict[int, int] = {}  # ground-truth object id -> segmenter object id
    late_id = None
    for index, gt, out in records:
        assert out.mask is not None and len(out) == len(out.mask)  # masks on every frame from the first keyframe
        assert len(out) == len(segmenter.objects) or index % 5  # keyframes: every known object drawn
        assert out.mask.shape[1:] == (192, 320) and all(m.any() for m in out.mask)
        if index % 5 == 0:
            ids_now = dict(zip(gt.data["object_id"].tolist(), _ids_matching(segmenter, gt), strict=True))
            assert -1 not in ids_now.values() and set(ids_now.values()) == set(out.tracker_id.tolist())
            for g, t in ids_now.items():
                assert mapping.setdefault(g, t) == t, f"object {g} changed id at frame {index}"
            if index >= 22 and late_id is None:
                late_id = mapping[int(gt.data["object_id"][-1])]
    first_ids = {t for g, t in mapping.items() if t != late_id}
    assert len(first_ids) == 2 and late_id is not None and late_id not in first_ids
    assert max(mapping.values()) == 3  # ids 1, 2, 3: no object was ever re-created


def _ids_matching(segmenter: VideoSegmenter, gt: sv.Detections) -> list[int]:
    """After a keyframe: for each ground-truth box, the id of the object that box was matched to or added as."""
    ids = []
    for box in gt.xyxy:
        found = [o.object_id for o in segmenter.objects.values() if np.allclose(o.detected_xyxy, box)]
        ids.append(found[0] if len(found) == 1 else -1)
    return ids


def test_unseen_objects_removed_after_k_keyframes(tiny_models: TinyModels) -> None:
    segmenter = build_segmenter(_config(tiny_models, max_missed_keyframes=2))
    assert isinstance(segmenter, VideoSegmenter)

    def detections_at(index: int, gt: sv.Detections) -> sv.Detections:
        return gt if index < 10 else gt[gt.data["object_id"] != 0]  # object 0 undetected from frame 10 on

    records = _run(segmenter, _synthetic(30), every=5, detections_at=detections_at)
    counts = {index: len(ids) for index, ids in _object_counts(records)}
    assert counts[9] == 3 and counts[14] == 3  # missed once (frame 10): kept
    assert counts[15] == 2 and counts[29] == 2  # missed twice (frame 15): removed, the others carried on
    assert segmenter.session.get_obj_num() == 2


def _object_counts(records):
    return [(index, out.tracker_id.tolist()) for index, _, out in records]


def test_no_detections_means_no_objects(tiny_models: TinyModels) -> None:
    segmenter = build_segmenter(_config(tiny_models))
    records = _run(segmenter, _synthetic(8), every=4, detections_at=lambda i, gt: gt[:0])
    assert all(len(out) == 0 for _, _, out in records)


def test_max_objects(tiny_models: TinyModels) -> None:
    segmenter = build_segmenter(_config(tiny_models, max_objects=2))
    records = list(_run(segmenter, _synthetic(3, objects=4), every=1))
    assert len(records[-1][2]) == 2


def test_pruning_changes_no_mask_and_keeps_memory_flat(tiny_models: TinyModels, monkeypatch) -> None:
    config = _config(tiny_models, reprompt_iou=0.0)
    pruned = build_segmenter(config)
    pruned_sizes = []
    records = []
    for _index, _gt, out in _run(pruned, _synthetic(60, enter=20), every=10):
        records.append(out)
        pruned_sizes.append(pruned.session_bytes)
    monkeypatch.setattr("streamvis.segmentation.video.prune_session", lambda *a, **k: None)
    unpruned = build_segmenter(config)
    unpruned_sizes = []
    for (index, _gt, out), reference in zip(_run(unpruned, _synthetic(60, enter=20), every=10), records,
                                           strict=True):
        unpruned_sizes.append(unpruned.session_bytes)
        assert out.tracker_id.tolist() == reference.tracker_id.tolist()
        np.testing.assert_array_equal(out.mask, reference.mask, err_msg=f"frame {index}")
    assert max(pruned_sizes[30:]) <= 1.02 * pruned_sizes[29]  # flat once the window is full
    assert unpruned_sizes[-1] > 3 * pruned_sizes[-1]  # what pruning saves already at 60 frames


def test_remove_objects_reindexes_session(tiny_models: TinyModels) -> None:
    segmenter = build_segmenter(_config(tiny_models))
    list(_run(segmenter, _synthetic(3), every=1))
    session = segmenter.session
    assert session.obj_ids == [1, 2, 3]
    kept_outputs = session.output_dict_per_obj[2]
    session_mod.remove_objects(session, [2])
    assert session.obj_ids == [1, 3] and session.obj_id_to_idx(3) == 1 and session.obj_idx_to_id(1) == 3
    assert session.output_dict_per_obj[1] is kept_outputs
    assert sorted(session.output_dict_per_obj) == [0, 1]


def test_sam_image_segmenter_masks_boxes(tiny_models: TinyModels) -> None:
    segmenter = build_segmenter(_config(tiny_models, type="sam", model=tiny_models.sam))
    assert segmenter is not None and not segmenter.propagates
    source = _synthetic(1)
    frame = next(iter(source.frames()))
    gt = source.boxes_at(0)
    out = segmenter.update(frame.image, gt)
    assert out.mask is not None and out.mask.shape == (len(gt), 192, 320)
    np.testing.assert_array_equal(out.xyxy, gt.xyxy)  # boxes kept; masks added
    assert list(out.data["class_name"]) == list(gt.data["class_name"])
    assert segmenter.update(frame.image, None) is not None
