"""Batched multi-object propagation (`segmentation.propagation`) against transformers' per-object forward, on a
tiny random SAM 2.1: the same objects and masks (fp32 logits within 1e-4) through prompts, late objects,
re-prompts, removals and pruning, with fewer memory-attention calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import TinyModels

from streamvis.config import Sam2Config
from streamvis.segmentation.propagation import propagate, supports_batching
from streamvis.segmentation.session import add_box_prompts, prune_session, remove_objects
from streamvis.segmentation.video import VideoSegmenterModel
from streamvis.sources import open_source

LOGIT_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def sam2(tiny_models: TinyModels):
    from transformers import Sam2VideoModel

    return Sam2VideoModel.from_pretrained(tiny_models.sam2).eval()


def _session(model):
    from transformers import Sam2VideoInferenceSession

    session = Sam2VideoInferenceSession(inference_device="cpu", inference_state_device="cpu",
                                        video_storage_device="cpu", dtype=torch.float32)
    session.video_height = session.video_width = model.image_size
    return session


# frame -> what happens on it (before the step), the same to both sessions
SCRIPT = {
    0: ("prompt", [1, 2, 3], [[10, 10, 100, 100], [120, 120, 200, 220], [30, 150, 90, 240]]),
    9: ("prompt", [4], [[50, 50, 150, 150]]),  # a late object: another memory layout for a few frames
    14: ("prompt", [2], [[110, 120, 200, 230]]),  # a re-prompt: object 2 takes the per-object path once
    20: ("remove", [1], None),
}


class CountingAttention(torch.nn.Module):
    """Wraps the model's memory attention and counts calls and the objects they carried."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[int] = []

    def forward(self, **kwargs):
        self.calls.append(int(kwargs["current_vision_features"].shape[1]))
        return self.inner(**kwargs)


def test_batched_step_equals_the_per_object_forward(sam2) -> None:
    per_object, batched = _session(sam2), _session(sam2)
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for t in range(28):
        frame = torch.randn(3, sam2.image_size, sam2.image_size, generator=generator)
        if t in SCRIPT:
            action, ids, boxes = SCRIPT[t]
            for session in (per_object, batched):
                if action == "prompt":
                    add_box_prompts(session, t, ids, np.array(boxes, np.float32))
                else:
                    remove_objects(session, ids)
        with torch.inference_mode():
            expected = sam2(inference_session=per_object, frame_idx=t, frame=frame)
            got = propagate(sam2, batched, t, frame, batch_objects=True)
        assert got.object_ids == list(expected.object_ids)
        assert got.pred_masks.shape == expected.pred_masks.shape
        worst = max(worst, float((got.pred_masks - expected.pred_masks).abs().max()),
                    float((got.object_score_logits - expected.object_score_logits).abs().max()))
        decided = expected.pred_masks.abs() > LOGIT_TOLERANCE  # pixels not within rounding of the threshold
        assert torch.equal((got.pred_masks > 0)[decided], (expected.pred_masks > 0)[decided]), f"frame {t}"
        for session in (per_object, batched):
            prune_session(session, t, sam2.num_maskmem, sam2.config.max_object_pointers_in_encoder, 4)
    assert worst <= LOGIT_TOLERANCE


def test_objects_with_one_memory_layout_share_one_call(sam2) -> None:
    session = _session(sam2)
    counter = CountingAttention(sam2.memory_attention)
    original = sam2.memory_attention
    sam2.memory_attention = counter
    try:
        generator = torch.Generator().manual_seed(1)
        boxes = np.array([[10, 10, 100, 100], [120, 120, 200, 220], [30, 150, 90, 240], [140, 20, 230, 90]],
                         np.float32)
        add_box_prompts(session, 0, [1, 2, 3, 4], boxes)
        for t in range(10):
            with torch.inference_mode():
                propagate(sam2, session, t, torch.randn(3, 256, 256, generator=generator), batch_objects=True)
    finally:
        sam2.memory_attention = original
    # frame 0 is every object's prompt (no memory attention); then one call carrying all four objects a frame
    assert counter.calls == [4] * 9


def test_per_object_switch_and_other_models_take_the_model_forward(sam2, tiny_models: TinyModels) -> None:
    from transformers import EdgeTamVideoModel

    assert supports_batching(sam2)
    assert not supports_batching(EdgeTamVideoModel.from_pretrained(tiny_models.edgetam))
    off = VideoSegmenterModel(Sam2Config(model=str(tiny_models.sam2), device="cpu", batch_objects=False))
    assert not off.batch_objects
    auto = VideoSegmenterModel(Sam2Config(model=str(tiny_models.sam2), device="cpu"))
    assert not auto.batch_objects  # auto: batched on a GPU only (on a CPU it costs more than it saves)
    on = VideoSegmenterModel(Sam2Config(model=str(tiny_models.sam2), device="cpu", batch_objects=True))
    assert on.batch_objects


def test_segmenter_outputs_are_the_same_batched_or_not(tiny_models: TinyModels) -> None:
    """The stream-level segmenter (matching, pruning, masks at frame size) with the switch on and off."""
    streams = [VideoSegmenterModel(Sam2Config(model=str(tiny_models.sam2), device="cpu",
                                              batch_objects=flag)).new_stream() for flag in (False, True)]
    source = open_source("synthetic:?w=320&h=192&frames=24&objects=4&enter=10&seed=5")
    compared = 0
    for frame in source.frames():
        given = source.boxes_at(frame.index) if frame.index % 6 == 0 else None
        a, b = (stream.update(frame.image, given) for stream in streams)
        assert a.tracker_id.tolist() == b.tracker_id.tolist()
        for m1, m2 in zip(a.mask, b.mask, strict=True):  # a pixel whose logit rounds across 0 may flip
            assert (m1 != m2).sum() <= 0.001 * max(1, m1.sum())
        compared += len(a)
    assert compared >= 60
