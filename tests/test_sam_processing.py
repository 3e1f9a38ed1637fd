"""SAM / SAM 2 pre- and post-processing (done here because the transformers processors need torchvision)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamvis.segmentation.processing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    masks_to_xyxy,
    preprocess_longest_side,
    preprocess_square,
    scale_boxes_longest_side,
    scale_boxes_square,
    upsample_masks,
)
from streamvis.serialize import masks_to_rle, rle_to_masks


@pytest.mark.parametrize(("bgr", "size"), [((0, 0, 255), 32), ((255, 255, 255), 16), ((0, 0, 0), 64)])
def test_preprocess_square_normalises_rgb(bgr: tuple[int, int, int], size: int) -> None:
    image = np.zeros((30, 50, 3), np.uint8)
    image[:] = bgr
    pixels = preprocess_square(image, size)
    assert pixels.shape == (3, size, size) and pixels.dtype == np.float32
    rgb = np.array(bgr[::-1], np.float32) / 255
    np.testing.assert_allclose(pixels[:, size // 2, size // 2], (rgb - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-5)


def test_preprocess_square_stretches_both_axes() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :100] = 255  # left half white
    pixels = preprocess_square(image, 64)
    white = (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert pixels[0, 10, 5] == pytest.approx(white, abs=1e-4)  # left half of the square is white
    assert pixels[0, 10, 60] < 0  # right half is black


@pytest.mark.parametrize(("xyxy", "wh", "size", "expected"), [
    ([[0, 0, 640, 480]], (640, 480), 1024, [[0, 0, 1024, 1024]]),
    ([[320, 240, 640, 480]], (640, 480), 1024, [[512, 512, 1024, 1024]]),
    ([[10, 20, 30, 40]], (100, 200), 256, [[25.6, 25.6, 76.8, 51.2]]),
    (np.zeros((0, 4)), (100, 100), 256, np.zeros((0, 4))),
])
def test_scale_boxes_square(xyxy, wh, size, expected) -> None:
    np.testing.assert_allclose(scale_boxes_square(np.array(xyxy), wh, size), np.array(expected).reshape(-1, 4),
                               rtol=1e-5)


@pytest.mark.parametrize(("wh", "size", "resized_hw", "box", "expected_box"), [
    ((640, 480), 1024, (768, 1024), [0, 0, 640, 480], [0, 0, 1024, 768]),
    ((480, 640), 1024, (1024, 768), [240, 320, 480, 640], [384, 512, 768, 1024]),
    ((100, 100), 256, (256, 256), [50, 50, 100, 100], [128, 128, 256, 256]),
])
def test_longest_side(wh, size, resized_hw, box, expected_box) -> None:
    image = np.full((wh[1], wh[0], 3), 255, np.uint8)
    pixels, got_hw = preprocess_longest_side(image, size)
    assert pixels.shape == (3, size, size) and got_hw == resized_hw
    assert pixels[0, resized_hw[0] - 1, resized_hw[1] - 1] > 0  # image (white) inside
    if resized_hw[0] < size:
        assert pixels[0, size - 1, 0] == 0  # zero padding below
    np.testing.assert_allclose(scale_boxes_longest_side(np.array([box]), wh, size)[0], expected_box)


def test_upsample_masks_thresholds_bilinear_logits() -> None:
    logits = torch.full((2, 4, 4), -5.0)
    logits[0, :2, :2] = 5.0  # top-left quarter
    logits[1, :, 2:] = 5.0  # right half
    masks = upsample_masks(logits, (80, 40))
    assert masks.shape == (2, 40, 80) and masks.dtype == bool
    # bilinear: straight edges stay where they were (the quarter's inner corner is rounded off)
    assert masks[0, :15, :32].all() and not masks[0, 20:, :].any() and not masks[0, :, 40:].any()
    assert masks[0, :, :40].sum() > 0.95 * 20 * 40
    assert masks[1, :, 40:].all() and not masks[1, :, :40].any()
    assert upsample_masks(logits, (80, 40), threshold=10.0).sum() == 0
    assert upsample_masks(np.zeros((0, 4, 4), np.float32), (8, 6)).shape == (0, 6, 8)


def test_upsample_masks_crops_padding() -> None:
    logits = torch.full((1, 8, 8), -5.0)
    logits[0, :4, :] = 5.0  # the image occupies the top half of the padded square
    masks = upsample_masks(logits, (100, 50), valid_hw=(4, 8))
    assert masks.all()  # all of the cropped part is mask


def test_upsample_masks_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match="must be"):
        upsample_masks(np.zeros((1, 1, 4, 4)), (4, 4))


def test_masks_to_xyxy() -> None:
    masks = np.zeros((2, 10, 20), bool)
    masks[0, 2:5, 3:9] = True
    assert masks_to_xyxy(masks).tolist() == [[3, 2, 9, 5], [0, 0, 0, 0]]


def test_rle_round_trip_is_coco() -> None:
    from pycocotools import mask as mask_utils

    masks = np.zeros((2, 7, 9), bool)
    masks[0, 1:4, 2:6] = True
    masks[1, 6, 8] = True
    rles = masks_to_rle(masks)
    assert rles[0]["size"] == [7, 9] and isinstance(rles[0]["counts"], str)
    assert mask_utils.area([{"size": r["size"], "counts": r["counts"].encode()} for r in rles]).tolist() == [12, 1]
    np.testing.assert_array_equal(rle_to_masks(rles), masks)
    assert masks_to_rle(np.zeros((0, 7, 9), bool)) == []
