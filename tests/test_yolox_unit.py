"""YOLOX pre- and post-processing as pure functions (table-driven, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from streamvis.detection.yolox import PAD_VALUE, decode_boxes, letterbox, make_grids, postprocess


@pytest.mark.parametrize(
    ("image_hw", "input_hw", "ratio", "resized_hw"),
    [((432, 768), (416, 416), 416 / 768, (233, 416)), ((480, 640), (416, 416), 0.65, (312, 416)),
     ((100, 50), (416, 416), 4.16, (416, 208)), ((640, 640), (640, 640), 1.0, (640, 640))],
)
def test_letterbox_top_left_with_pad(image_hw, input_hw, ratio, resized_hw) -> None:
    """Sizes truncate like YOLOX's own preprocessing: 432 * 416/768 = 233.99.. -> 233 rows."""
    image = np.full((*image_hw, 3), 7, np.uint8)
    tensor, got = letterbox(image, input_hw)
    assert tensor.shape == (1, 3, *input_hw) and tensor.dtype == np.float32
    assert got == pytest.approx(ratio)
    rows, cols = resized_hw
    assert (tensor[0, :, :rows, :cols] == 7).all()  # BGR 0-255, no normalisation
    assert (tensor[0, :, rows:, :] == PAD_VALUE).all() and (tensor[0, :, :, cols:] == PAD_VALUE).all()


@pytest.mark.parametrize(("input_hw", "anchors"), [((416, 416), 3549), ((640, 640), 8400), ((384, 640), 5040)])
def test_grid_sizes(input_hw, anchors) -> None:
    grids, strides = make_grids(input_hw)
    assert grids.shape == (anchors, 2) and strides.shape == (anchors, 1)
    first_16 = int((input_hw[0] // 8) * (input_hw[1] // 8))
    assert strides[0, 0] == 8 and strides[first_16, 0] == 16 and strides[-1, 0] == 32
    assert tuple(grids[1]) == (1, 0)  # x runs fastest


@pytest.mark.parametrize(
    ("raw", "grid", "stride", "xyxy"),
    [([0, 0, 0, 0], (0, 0), 8, (-4, -4, 4, 4)),
     ([0.5, 0.5, np.log(2), np.log(4)], (3, 2), 16, (40, 8, 72, 72))],
)
def test_decode_boxes(raw, grid, stride, xyxy) -> None:
    out = decode_boxes(np.array([raw], np.float32), np.array([grid], np.float32), np.array([[stride]], np.float32))
    np.testing.assert_allclose(out[0], xyxy, atol=1e-4)


def _raw_row(center, size, obj, class_id, num_classes=3, grid=(0, 0), stride=8):
    row = np.zeros(5 + num_classes, np.float32)
    row[:2] = np.array(center) / stride - np.array(grid)
    row[2:4] = np.log(np.array(size) / stride)
    row[4] = obj
    row[5 + class_id] = 1.0
    return row


def test_postprocess_class_aware_nms_and_rescale() -> None:
    grids = np.zeros((4, 2), np.float32)
    strides = np.full((4, 1), 8, np.float32)
    raw = np.stack([
        _raw_row((100, 100), (40, 40), 0.9, 0),   # kept
        _raw_row((102, 100), (40, 40), 0.8, 0),   # same class, overlapping: suppressed
        _raw_row((102, 100), (40, 40), 0.7, 1),   # other class, overlapping: kept
        _raw_row((300, 300), (40, 40), 0.05, 2),  # below the threshold
    ])
    xyxy, scores, classes = postprocess(raw, grids, strides, ratio=0.5, confidence=0.3, nms_iou=0.45,
                                        image_wh=(1000, 1000))
    assert classes.tolist() == [0, 1]
    np.testing.assert_allclose(scores, [0.9, 0.7], atol=1e-6)
    np.testing.assert_allclose(xyxy[0], [160, 160, 240, 240], atol=1e-3)  # divided by the letterbox ratio


def test_postprocess_clips_to_the_image_and_handles_nothing() -> None:
    grids = np.zeros((1, 2), np.float32)
    strides = np.full((1, 1), 8, np.float32)
    raw = _raw_row((10, 10), (60, 60), 0.9, 0)[None]
    xyxy, _, _ = postprocess(raw, grids, strides, 1.0, 0.3, 0.45, image_wh=(30, 30))
    np.testing.assert_allclose(xyxy[0], [0, 0, 30, 30])
    empty = postprocess(raw * 0, grids, strides, 1.0, 0.3, 0.45, image_wh=(30, 30))
    assert empty[0].shape == (0, 4) and len(empty[1]) == 0
