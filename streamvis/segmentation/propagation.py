"""One streaming SAM 2 step with the tracked objects batched: memory attention and the mask decoder run once for
every group of objects that share a memory layout, instead of once per object.

transformers' `Sam2VideoModel.forward` loops over objects and runs memory attention and the mask decoder with a
batch of one, because objects prompted on this frame take other inputs. Objects that are only being tracked
(no new prompt on this frame) differ only in their memory bank: when two banks hold as many tokens and as many
object pointers, the objects can share one call. `propagate` does that and leaves everything else to the
model's own code: prompted objects take the model's per-object path, and memories are encoded in one batch as
the model does (`_batch_encode_memories`). The masks equal the per-object path's (fp32 logits within 1e-4,
`tests/test_propagation.py`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

NO_OBJ_SCORE = -1024.0  # transformers' placeholder logit for an object that is not in the frame


@dataclass(frozen=True, slots=True)
class StepOutput:
    """What `Sam2VideoModel.forward` returns, for the fields streamvis reads."""

    object_ids: list[int]
    pred_masks: Any  # (N, 1, h, w) low-resolution mask logits, in session order
    object_score_logits: Any  # (N, 1)
    frame_idx: int


@dataclass(slots=True)
class _Tracked:
    obj_idx: int
    memory: Any  # (tokens, 1, mem_dim)
    memory_pos: Any  # (tokens, 1, mem_dim)
    pointer_tokens: int


def supports_batching(model: Any) -> bool:
    """SAM 2's video model (and its subclasses) only: EdgeTAM's memory attention takes other inputs."""
    from transformers import Sam2VideoModel

    return isinstance(model, Sam2VideoModel)


def _memory_of(model: Any, session: Any, obj_idx: int, frame_idx: int, device: Any) -> _Tracked:
    """An object's memory bank for this frame: its memory frames' features, then its object pointers (as in
    `_prepare_memory_conditioned_features`)."""
    import torch

    outputs = model._gather_memory_frame_outputs(session, obj_idx, frame_idx, False)
    memories, positions = model._build_memory_attention_inputs(outputs, device)
    offsets, pointers, max_pointers = model._get_object_pointers(
        session, obj_idx, frame_idx, session.num_frames, device, False, True)
    pointer_tokens = 0
    if pointers:
        object_pointers, pointer_pos = model._process_object_pointers(
            offsets, pointers, max_pointers, 1, model.hidden_dim, device)
        if object_pointers is not None:
            memories.append(object_pointers)
            positions.append(pointer_pos)
            pointer_tokens = int(object_pointers.shape[0])
    return _Tracked(obj_idx, torch.cat(memories, dim=0).to(dtype=session.dtype), torch.cat(positions, dim=0),
                    pointer_tokens)


def _decode(model: Any, pix_feat: Any, high_res: list[Any], multimask: bool) -> dict[str, Any]:
    """The mask decoder for B tracked objects with no prompt (`_single_frame_forward` with image embeddings),
    choosing each object's best mask by its own IoU estimate."""
    import torch
    import torch.nn.functional as F

    batch = pix_feat.shape[0]
    device, dtype = pix_feat.device, pix_feat.dtype
    image_pe = model.get_image_wide_positional_embeddings().repeat(batch, 1, 1, 1)
    points = torch.zeros(batch, 1, 1, 2, dtype=dtype, device=device)
    labels = -torch.ones(batch, 1, 1, dtype=torch.int32, device=device)
    sparse, dense = model.prompt_encoder(input_points=points, input_labels=labels, input_boxes=None, input_masks=None)
    low, iou, tokens, score_logits = model.mask_decoder(
        image_embeddings=pix_feat, image_positional_embeddings=image_pe, sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense, multimask_output=multimask, high_resolution_features=high_res)
    appearing = score_logits > 0
    low = torch.where(appearing[:, None, None], low, NO_OBJ_SCORE)
    high = F.interpolate(low.squeeze(1).float(), size=(model.image_size, model.image_size), mode="bilinear",
                         align_corners=False).unsqueeze(1).to(low.dtype)
    rows = torch.arange(batch, device=device)
    if multimask:
        best = torch.argmax(iou, dim=-1)[:, 0]  # (B,): each object's best of the three masks
        low_masks, high_masks = low[rows, 0, best][:, None], high[rows, 0, best][:, None]
        token = tokens[rows, 0, best][:, None] if tokens.size(2) > 1 else tokens[:, :, 0]
    else:
        low_masks, high_masks, token = low[:, :, 0], high[:, :, 0], tokens[:, :, 0]
    pointer = model.object_pointer_proj(token)
    weight = appearing.to(pointer.dtype)
    pointer = weight * pointer + (1 - weight) * model.no_object_pointer
    return {"pred_masks": low_masks, "object_pointer": pointer, "high_res_masks": high_masks,
            "object_score_logits": score_logits}


def _track_group(model: Any, session: Any, frame_idx: int, group: list[_Tracked]) -> list[dict[str, Any]]:
    """Memory attention and the mask decoder once for objects whose memory banks have one layout."""
    import torch

    feats, pos = model._prepare_vision_features(session, frame_idx, 1)
    batch = len(group)
    height, width = model.backbone_feature_sizes[-1]
    current = feats[-1].expand(-1, batch, -1)
    current_pos = pos[-1].expand(-1, batch, -1)
    memory = torch.cat([t.memory for t in group], dim=1)
    memory_pos = torch.cat([t.memory_pos for t in group], dim=1)
    flat = model.memory_attention(current_vision_features=current, current_vision_position_embeddings=current_pos,
                                  memory=memory, memory_posision_embeddings=memory_pos,
                                  num_object_pointer_tokens=group[0].pointer_tokens)
    pix_feat = flat.reshape(batch, height * width, model.hidden_dim).transpose(1, 2).reshape(
        batch, model.hidden_dim, height, width)
    high_res = [x.permute(1, 2, 0).view(x.size(1), x.size(2), *s).expand(batch, -1, -1, -1)
                for x, s in zip(feats[:-1], model.backbone_feature_sizes[:-1], strict=True)]
    out = _decode(model, pix_feat, high_res, model._use_multimask(False, None))
    return [{key: value[i:i + 1] for key, value in out.items()} for i in range(batch)]


def propagate(model: Any, session: Any, frame_idx: int, frame: Any, batch_objects: bool = True) -> StepOutput:
    """Add `frame` to the streaming `session` as `frame_idx` and segment every object on it.

    Equivalent to `model(inference_session=session, frame_idx=frame_idx, frame=frame)`; with `batch_objects`,
    tracked objects that share a memory layout run in one batch.
    """
    if not batch_objects or not supports_batching(model):
        out = model(inference_session=session, frame_idx=frame_idx, frame=frame)
        return StepOutput(list(out.object_ids), out.pred_masks, out.object_score_logits, int(out.frame_idx))
    import torch

    frame_idx = session.add_new_frame(frame, frame_idx)
    count = session.get_obj_num()
    if count == 0:
        raise ValueError("No objects are provided for tracking; please add inputs first.")
    device = session.inference_device
    masks: list[Any] = [None] * count
    scores: list[Any] = [None] * count
    fresh: dict[int, dict[str, Any]] = {}  # obj_idx -> output computed on this frame
    from_points: dict[int, bool] = {}
    groups: dict[tuple[int, int], list[_Tracked]] = defaultdict(list)
    for obj_idx in range(count):
        obj_id = session.obj_idx_to_id(obj_idx)
        new_inputs = obj_id in session.obj_with_new_inputs
        cond = session.output_dict_per_obj[obj_idx]["cond_frame_outputs"]
        if not new_inputs and frame_idx in cond:  # prompted earlier on this very frame: the stored answer
            masks[obj_idx] = session.get_output(obj_idx, frame_idx, "pred_masks", is_conditioning_frame=True)
            scores[obj_idx] = session.get_output(obj_idx, frame_idx, "object_score_logits",
                                                 is_conditioning_frame=True)
            continue
        if new_inputs:  # the model's own per-object path, exactly as its forward takes it
            initial = frame_idx not in session.frames_tracked_per_obj[obj_idx]
            points = session.point_inputs_per_obj[obj_idx].get(frame_idx)
            mask_inputs = session.mask_inputs_per_obj[obj_idx].get(frame_idx)
            if points is not None or mask_inputs is not None:
                session.obj_with_new_inputs.remove(obj_id)
            out = model._run_single_frame_inference(
                inference_session=session, obj_idx=obj_idx, frame_idx=frame_idx, batch_size=1,
                is_init_cond_frame=initial, point_inputs=points, mask_inputs=mask_inputs, reverse=False,
                streaming=True)
            session.store_output(obj_idx, frame_idx, output_value=out, is_conditioning_frame=initial)
            fresh[obj_idx] = out
            from_points[obj_idx] = points is not None or mask_inputs is not None
            if not initial:
                session.frames_tracked_per_obj[obj_idx][frame_idx] = {"reverse": False}
            continue
        tracked = _memory_of(model, session, obj_idx, frame_idx, device)
        groups[(int(tracked.memory.shape[0]), tracked.pointer_tokens)].append(tracked)
    for group in groups.values():
        for tracked, out in zip(group, _track_group(model, session, frame_idx, group), strict=True):
            session.store_output(tracked.obj_idx, frame_idx, output_value=out, is_conditioning_frame=False)
            session.frames_tracked_per_obj[tracked.obj_idx][frame_idx] = {"reverse": False}
            fresh[tracked.obj_idx] = out
            from_points[tracked.obj_idx] = False
    for obj_idx, out in fresh.items():
        masks[obj_idx] = out["pred_masks"]
        scores[obj_idx] = out["object_score_logits"]
    order = sorted(fresh)
    if order and model.num_maskmem > 0:
        model._batch_encode_memories(
            inference_session=session, frame_idx=frame_idx, objects_needing_memory_encoding=order,
            high_res_masks_for_memory=[fresh[i]["high_res_masks"] for i in order],
            object_score_logits_for_memory=[fresh[i]["object_score_logits"] for i in order],
            is_mask_from_pts_per_obj=[from_points[i] for i in order])
    return StepOutput(list(session.obj_ids), torch.cat(masks, dim=0),
                      torch.cat([s.squeeze(-1) for s in scores], dim=0), frame_idx)
