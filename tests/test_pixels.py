"""Decoded frames to BGR: OpenCV's fast I420 conversion where its colours are swscale's (BT.601, limited range),
swscale everywhere else."""

from __future__ import annotations

import av
import numpy as np
import pytest

from streamvis.sources.pixels import to_bgr


def _yuv_frame(colorspace: int | None = None, color_range: int | None = None, fmt: str = "yuv420p",
               size_wh: tuple[int, int] = (320, 180)) -> av.VideoFrame:
    rng = np.random.default_rng(3)
    width, height = size_wh
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.dstack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 128)]).astype(np.uint8)
    image[40:90, 60:160] = rng.integers(0, 255, (50, 100, 3), dtype=np.uint8)  # sharp colour edges
    frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format=fmt)
    if colorspace is not None:
        frame.colorspace = colorspace
    if color_range is not None:
        frame.color_range = color_range
    return frame


@pytest.mark.parametrize(("colorspace", "color_range"), [(None, None), (5, 1), (6, 1), (2, 0)])
def test_bt601_limited_range_frames_come_out_as_swscale_makes_them(colorspace, color_range) -> None:
    frame = _yuv_frame(colorspace, color_range)
    fast, reference = to_bgr(frame).astype(int), frame.to_ndarray(format="bgr24").astype(int)
    assert fast.shape == reference.shape == (180, 320, 3)
    diff = np.abs(fast - reference)
    assert diff.mean() < 1.5 and np.mean(diff <= 8) > 0.99  # the same picture; chroma edges interpolated apart


@pytest.mark.parametrize(("colorspace", "color_range", "fmt", "size_wh"), [
    (1, 1, "yuv420p", (320, 180)),   # BT.709 (HD): OpenCV has no such matrix
    (6, 2, "yuv420p", (320, 180)),   # full range (JPEG)
    (6, 1, "yuv422p", (320, 180)),   # 4:2:2
    (6, 1, "yuv420p", (321, 181)),   # odd sizes
])
def test_every_other_frame_goes_through_swscale(colorspace, color_range, fmt, size_wh) -> None:
    frame = _yuv_frame(colorspace, color_range, fmt, size_wh)
    assert np.array_equal(to_bgr(frame), frame.to_ndarray(format="bgr24"))
