"""Keeping a streaming SAM 2 / EdgeTAM inference session bounded, and editing its objects mid-stream.

transformers' `Sam2VideoInferenceSession` keeps every frame and every per-frame output forever. The model only
ever reads back the last `num_maskmem - 1` frames' memory features, the object pointers of the last
`max_object_pointers_in_encoder` frames, and the conditioning (prompted) frames. `prune_session` drops the rest,
so a session's size is flat over hours of video while its masks stay identical to an unpruned session's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

POINTER_KEYS = ("object_pointer", "object_score_logits")
PER_FRAME_ONLY = ("pred_masks", "high_res_masks")  # read only on the frame that produced them


def add_box_prompts(session: Any, frame_idx: int, object_ids: list[int], boxes_square: np.ndarray) -> None:
    """Prompt objects with boxes (already in the model's square input coordinates) on `frame_idx`.

    A box is two points labelled 2 (top-left) and 3 (bottom-right), as in SAM 2; an object id new to the
    session is added to it, an existing one gets a new conditioning frame.
    """
    import torch

    labels = torch.tensor([[[2, 3]]], dtype=torch.int32)
    for object_id, box in zip(object_ids, np.asarray(boxes_square, dtype=np.float32).reshape(-1, 4), strict=True):
        obj_idx = session.obj_id_to_idx(int(object_id))
        coords = torch.from_numpy(box.reshape(1, 1, 2, 2).copy())
        session.add_point_inputs(obj_idx, frame_idx, {"point_coords": coords, "point_labels": labels})
        session.remove_mask_inputs(obj_idx, frame_idx)
    session.obj_with_new_inputs = [int(i) for i in object_ids]


def set_point_prompt(session: Any, frame_idx: int, object_id: int, points_square: np.ndarray, labels: list[int],
                     add: bool) -> None:
    """Points (labels 1 positive, 0 negative, 2 and 3 a box's corners), already in the model's square input
    coordinates, for one object on `frame_idx`; with `add`, after the points it already has on that frame (clicks
    that refine it), else instead of them."""
    import torch

    obj_idx = session.obj_id_to_idx(int(object_id))
    coords = torch.from_numpy(np.asarray(points_square, np.float32).reshape(1, 1, -1, 2).copy())
    values = torch.tensor([[labels]], dtype=torch.int32)
    previous = session.point_inputs_per_obj[obj_idx].get(frame_idx) if add else None
    if previous is not None:
        coords = torch.cat([previous["point_coords"].cpu(), coords], dim=2)
        values = torch.cat([previous["point_labels"].cpu(), values], dim=2)
    session.add_point_inputs(obj_idx, frame_idx, {"point_coords": coords, "point_labels": values})
    session.remove_mask_inputs(obj_idx, frame_idx)


def prompt_on_frame(model: Any, session: Any, frame_idx: int, object_id: int) -> None:
    """Run the model for one object on `frame_idx` with the inputs it has there, outside the frame-by-frame loop:
    a prompt on a frame already processed (the one a viewer saw). The output becomes a conditioning frame of that
    object (as SAM 2.1 keeps corrections), and its memory is encoded, so from the next frame on the object is
    tracked like any other. The frame's pixels must be in the session (`add_new_frame`)."""
    import inspect

    obj_idx = session.obj_id_to_idx(int(object_id))
    initial = frame_idx not in session.frames_tracked_per_obj[obj_idx]
    points = session.point_inputs_per_obj[obj_idx].get(frame_idx)
    extra = {"run_mem_encoder": True} if "run_mem_encoder" in inspect.signature(
        model._run_single_frame_inference).parameters else {}  # EdgeTAM encodes memory itself
    out = model._run_single_frame_inference(
        inference_session=session, frame_idx=frame_idx, obj_idx=obj_idx, batch_size=1, is_init_cond_frame=initial,
        point_inputs=points, mask_inputs=None, reverse=False, streaming=True, **extra)
    session.store_output(obj_idx, frame_idx, output_value=out, is_conditioning_frame=True)
    if not extra and model.num_maskmem > 0:
        model._batch_encode_memories(inference_session=session, frame_idx=frame_idx,
                                     objects_needing_memory_encoding=[obj_idx],
                                     high_res_masks_for_memory=[out["high_res_masks"]],
                                     object_score_logits_for_memory=[out["object_score_logits"]],
                                     is_mask_from_pts_per_obj=[True])
    session.obj_with_new_inputs = [i for i in session.obj_with_new_inputs if i != int(object_id)]


def remove_objects(session: Any, object_ids: list[int]) -> None:
    """Drop objects from a session and re-index the rest (the session stores objects by dense index)."""
    doomed = {int(i) for i in object_ids}
    keep = [obj_id for obj_id in session.obj_ids if obj_id not in doomed]
    if len(keep) == len(session.obj_ids):
        return
    per_index = ("point_inputs_per_obj", "mask_inputs_per_obj", "output_dict_per_obj", "frames_tracked_per_obj")
    old = {name: getattr(session, name) for name in per_index}
    old_idx = dict(session._obj_id_to_idx)
    session._obj_id_to_idx.clear()
    session._obj_idx_to_id.clear()
    for name in per_index:
        setattr(session, name, {})
    for new_idx, obj_id in enumerate(keep):
        session._obj_id_to_idx[obj_id] = new_idx
        session._obj_idx_to_id[new_idx] = obj_id
        for name in per_index:
            getattr(session, name)[new_idx] = old[name][old_idx[obj_id]]
    session.obj_ids = list(keep)
    session.obj_with_new_inputs = [i for i in session.obj_with_new_inputs if i not in doomed]


def prune_session(session: Any, frame_idx: int, num_maskmem: int, max_object_pointers: int,
                  max_conditioning_frames: int) -> None:
    """Forget everything the model can no longer read after processing `frame_idx`.

    - frames: only the current one is kept (its vision features are cached separately);
    - non-conditioning outputs: full memory for the last `num_maskmem - 1` frames, only the object pointer for
      frames up to `max_object_pointers - 1` back, nothing older;
    - conditioning outputs: the newest `max_conditioning_frames` per object;
    - per-frame masks are dropped from every stored output once the frame is done.
    """
    if session.processed_frames:
        for t in [t for t in session.processed_frames if t != frame_idx]:
            del session.processed_frames[t]
    memory_from = frame_idx - (num_maskmem - 1)
    pointers_from = frame_idx - (max_object_pointers - 1)
    for obj_idx, outputs in session.output_dict_per_obj.items():
        cond = outputs["cond_frame_outputs"]
        for t in sorted(cond)[:-max_conditioning_frames]:
            del cond[t]
        for t in list(session.point_inputs_per_obj.get(obj_idx, {})):
            if t not in cond:
                del session.point_inputs_per_obj[obj_idx][t]
        for t in list(session.mask_inputs_per_obj.get(obj_idx, {})):
            if t not in cond:
                del session.mask_inputs_per_obj[obj_idx][t]
        non_cond = outputs["non_cond_frame_outputs"]
        for t in list(non_cond):
            if t < pointers_from:
                del non_cond[t]
            elif t < memory_from:
                non_cond[t] = {key: non_cond[t][key] for key in POINTER_KEYS if key in non_cond[t]}
        for store in (cond, non_cond):
            for out in store.values():
                for key in PER_FRAME_ONLY:
                    out.pop(key, None)
        tracked = session.frames_tracked_per_obj.get(obj_idx, {})
        for t in [t for t in tracked if t < pointers_from]:
            del tracked[t]


def session_nbytes(session: Any) -> int:
    """Bytes held in a session's tensors (frames, outputs, prompts): what pruning keeps flat."""
    import torch

    seen: set[int] = set()

    def walk(node: Any) -> int:
        if isinstance(node, torch.Tensor):
            if id(node) in seen:
                return 0
            seen.add(id(node))
            return node.numel() * node.element_size()
        if isinstance(node, dict):
            return sum(walk(v) for v in node.values())
        if isinstance(node, (list, tuple)):
            return sum(walk(v) for v in node)
        return 0

    parts = (session.processed_frames or {}, session.output_dict_per_obj, session.point_inputs_per_obj,
             session.mask_inputs_per_obj, session.cache._vision_features)
    return sum(walk(part) for part in parts)
