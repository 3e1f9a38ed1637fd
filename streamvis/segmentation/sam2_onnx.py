"""SAM 2.1 on ONNX Runtime: four graphs exported with the dynamo exporter, up to three of them run in the stream.

- `sam2_image_encoder`: pixels -> the projected FPN features and their position encodings, exactly what
  `Sam2VideoModel.get_image_features` returns, so they drop into a streaming session's feature cache;
- `sam2_memory_attention`: the current frame's features attend to the memory bank (spatial memories of any
  number of frames and any number of object pointers, both dynamic);
- `sam2_memory_encoder`: features + predicted masks -> the memory written for the next frames (any number of
  objects);
- `sam2_box_decoder`: prompt encoder + mask decoder for a dynamic number of boxes on one image (what a first
  keyframe sees: no memory), from the encoder's outputs to low-res mask logits, IoU and object scores. It is
  the graph to deploy for box-to-mask without torch; the stream runs the mask decoder in torch, since inside
  the video model it is called with the model's own prompt tokens and multimask switching (a few ms a frame).

With backend `onnx` the encoder's outputs go into the session's cache, and (per `stream_parts`: by default on
GPU providers only) the model's memory attention and memory encoder are replaced by modules that run their
graphs; the rest of the video model runs unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from streamvis.runtime.export import export_parts, has_parts, read_parts
from streamvis.runtime.precision import Int8Range, Precision
from streamvis.runtime.session import OrtRunner

log = logging.getLogger(__name__)

ENCODER = "sam2_image_encoder"
BOX_DECODER = "sam2_box_decoder"
MEMORY_ATTENTION = "sam2_memory_attention"
MEMORY_ENCODER = "sam2_memory_encoder"
PARTS = (ENCODER, MEMORY_ATTENTION, MEMORY_ENCODER, BOX_DECODER)


def part_precision(part: str, precision: Precision) -> Precision:
    """int8 leaves the box decoder fp32: quantized, its object score flips on borderline objects (a flipped
    object's logits jump to -1024), and it is a small share of the time."""
    return "fp32" if part == BOX_DECODER and precision == "int8" else precision


def _precisions(precision: Precision) -> dict[str, Precision]:
    return {part: part_precision(part, precision) for part in PARTS}


def image_size(model: Any) -> int:
    size = model.config.image_size
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def encoder_module(model: Any) -> Any:
    """`get_image_features` as a module with plain tensor outputs (what the exporter needs)."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.model.get_image_features(pixel_values, return_dict=True)
            return (*out.fpn_hidden_states, *out.fpn_position_encoding)

    return Encoder().eval()


def box_decoder_module(model: Any) -> Any:
    """Encoder features (as the encoder graph outputs them) + boxes (1, N, 4) in model input pixels -> low-res
    mask logits (N, 1, h, w), IoU (N, 1, 1) and object score logits (N, 1, 1); boxes are a batch of objects."""
    import torch

    class BoxDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, feats_0: torch.Tensor, feats_1: torch.Tensor, feats_2: torch.Tensor,
                    boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
            count = boxes.shape[1]
            maps = []
            for i, (feat, size) in enumerate(zip((feats_0, feats_1, feats_2), self.model.backbone_feature_sizes,
                                                 strict=True)):
                if i == 2:  # a frame with no memory gets the no-memory embedding, as the video model does
                    feat = feat + self.model.no_memory_embedding
                maps.append(feat.permute(1, 2, 0).reshape(1, -1, *size).expand(count, -1, -1, -1))
            out = self.model._single_frame_forward(image_embeddings=maps, input_boxes=boxes.reshape(count, 1, 4),
                                                   multimask_output=False)
            return out.pred_masks, out.iou_scores, out.object_score_logits

    return BoxDecoder().eval()


def memory_attention_module(model: Any) -> Any:
    """The memory attention with the memory split into spatial memories and object pointers (their count is
    a dynamic dimension of the graph, not an integer argument)."""
    import torch

    class MemoryAttention(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = model.memory_attention

        def forward(self, current: torch.Tensor, current_pos: torch.Tensor, spatial: torch.Tensor,
                    spatial_pos: torch.Tensor, pointers: torch.Tensor, pointers_pos: torch.Tensor) -> torch.Tensor:
            attended: torch.Tensor = self.attention(
                current_vision_features=current, current_vision_position_embeddings=current_pos,
                memory=torch.cat([spatial, pointers]),
                memory_posision_embeddings=torch.cat([spatial_pos, pointers_pos]),
                num_object_pointer_tokens=pointers.shape[0])
            return attended

    return MemoryAttention().eval()


def _examples(model: Any) -> dict[str, tuple[Any, ...]]:
    import torch

    size = image_size(model)
    with torch.inference_mode():
        features = encoder_module(model)(torch.zeros(1, 3, size, size))
    (height, width), channels = model.backbone_feature_sizes[-1], model.hidden_dim
    tokens, memory_dim = height * width, int(model.config.memory_encoder_output_channels)
    return {
        ENCODER: (torch.zeros(1, 3, size, size),),
        BOX_DECODER: (*features[:3], torch.tensor([[[0.1, 0.1, 0.6, 0.7], [0.3, 0.2, 0.9, 0.8]]]) * size),
        # the video model attends one object at a time (batch 1)
        MEMORY_ATTENTION: (torch.randn(tokens, 1, channels), torch.randn(tokens, 1, channels),
                           torch.randn(2 * tokens, 1, memory_dim), torch.randn(2 * tokens, 1, memory_dim),
                           torch.randn(4, 1, memory_dim), torch.randn(4, 1, memory_dim)),
        MEMORY_ENCODER: (torch.randn(2, channels, height, width), torch.randn(2, 1, size, size)),
    }


def _signatures(levels: int) -> dict[str, tuple[list[str], list[str], Any]]:
    """Per part: input names, output names, dynamic shapes."""
    objects = {0: "objects"}
    return {
        ENCODER: (["pixel_values"], [f"vision_feats_{i}" for i in range(levels)]
                  + [f"vision_pos_embeds_{i}" for i in range(levels)], None),
        BOX_DECODER: (["vision_feats_0", "vision_feats_1", "vision_feats_2", "boxes"],
                      ["mask_logits", "iou_scores", "object_score_logits"],
                      {"feats_0": None, "feats_1": None, "feats_2": None, "boxes": {1: "boxes"}}),
        MEMORY_ATTENTION: (["current", "current_pos", "spatial", "spatial_pos", "pointers", "pointers_pos"],
                           ["conditioned"],
                           {"current": None, "current_pos": None, "spatial": {0: "memory"},
                            "spatial_pos": {0: "memory"}, "pointers": {0: "pointers"},
                            "pointers_pos": {0: "pointers"}}),
        MEMORY_ENCODER: (["vision_features", "masks"], ["maskmem_features", "maskmem_pos_enc"],
                         {"vision_features": objects, "masks": objects}),
    }


def export_sam2(model: Any, model_id: str, folder: Path, precision: Precision = "fp32",
                int8_range: Int8Range = "auto", fp32_from: Path | None = None) -> Path:
    """Export the four graphs of a loaded `Sam2VideoModel` into `folder`, in `precision`, with the manifest
    (the image encoder takes about a minute at real size on a 2-core CPU); a lower precision starts from the
    graphs of an fp32 export in `fp32_from` where it has them."""
    model = model.float().cpu().eval()
    modules = {ENCODER: encoder_module(model), BOX_DECODER: box_decoder_module(model),
               MEMORY_ATTENTION: memory_attention_module(model), MEMORY_ENCODER: model.memory_encoder}
    examples = _examples(model)
    signatures = _signatures(len(examples[BOX_DECODER]) - 1)
    graphs = {part: (modules[part], examples[part], *signatures[part]) for part in PARTS}
    return export_parts(folder, model_id, graphs, _precisions(precision),
                        {"image_size": image_size(model)}, label="SAM 2.1", int8_range=int8_range,
                        fp32_from=fp32_from)


def is_exported(folder: Path, model_id: str, precision: Precision) -> bool:
    return has_parts(folder, model_id, _precisions(precision))


class OnnxMemoryAttention:
    """Stands in for the model's memory attention (same call) and runs its graph."""

    def __init__(self, runner: OrtRunner) -> None:
        self.runner = runner

    def __call__(self, current_vision_features: Any, memory: Any, current_vision_position_embeddings: Any = None,
                 memory_posision_embeddings: Any = None, num_object_pointer_tokens: int = 0) -> Any:
        """Inputs are sequence-first (tokens, objects, channels); the graph takes one object, so a batch of
        objects (`segmentation.propagation`) runs one by one."""
        import torch

        split = memory.shape[0] - num_object_pointer_tokens
        outputs = []
        for i in range(current_vision_features.shape[1]):
            one = slice(i, i + 1)
            mem, mem_pos = memory[:, one].float(), memory_posision_embeddings[:, one].float()
            (out,) = self.runner.run_torch({
                "current": current_vision_features[:, one].float(),
                "current_pos": current_vision_position_embeddings[:, one].float(),
                "spatial": mem[:split], "spatial_pos": mem_pos[:split],
                "pointers": mem[split:], "pointers_pos": mem_pos[split:]})
            outputs.append(out)
        joined = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)
        return joined.to(current_vision_features.device, current_vision_features.dtype)


class OnnxMemoryEncoder:
    """Stands in for the model's memory encoder (same call) and runs its graph."""

    def __init__(self, runner: OrtRunner) -> None:
        self.runner = runner

    def __call__(self, vision_features: Any, masks: Any) -> tuple[Any, Any]:
        features, position = self.runner.run_torch({"vision_features": vision_features.float(),
                                                    "masks": masks.float()})
        return (features.to(vision_features.device, vision_features.dtype),
                position.to(vision_features.device, vision_features.dtype))


STREAM_PARTS = (ENCODER, MEMORY_ATTENTION, MEMORY_ENCODER)


def stream_parts(wanted: list[str] | None, provider: str) -> list[str]:
    """The graphs the stream runs on onnxruntime. Auto (None): all three on a GPU provider; on the CPU provider
    only the image encoder, because torch's fused attention and oneDNN convolutions beat onnxruntime's CPU
    kernels on the memory attention (0.77x) and the memory encoder (0.74x) at real size (benchmarks/runtime.py)."""
    if wanted is not None:
        return [ENCODER, *[f"sam2_{name}" for name in wanted if f"sam2_{name}" != ENCODER]]
    return list(STREAM_PARTS) if provider in ("cuda", "tensorrt") else [ENCODER]


def attach(model: Any, folder: Path, model_id: str, providers: list[str], precision: Precision,
           parts: list[str] | None = None) -> tuple[OrtRunner, list[str]]:
    """Run `model`'s image encoder, and per `stream_parts` its memory attention and memory encoder, on
    onnxruntime; returns the image encoder's runner and the graphs in use."""
    manifest = read_parts(folder, model_id, _precisions(precision))

    def runner(part: str) -> OrtRunner:
        return OrtRunner(folder / manifest["parts"][part]["file"], providers,
                         f"{model_id} {part.removeprefix('sam2_').replace('_', ' ')}")

    encoder = runner(ENCODER)
    in_use = stream_parts(parts, encoder.provider)
    standins = {MEMORY_ATTENTION: ("memory_attention", OnnxMemoryAttention),
                MEMORY_ENCODER: ("memory_encoder", OnnxMemoryEncoder)}
    for part in in_use[1:]:
        # the video model calls these as functions; the torch module (and its weights) is dropped
        name, standin = standins[part]
        model._modules.pop(name, None)
        object.__setattr__(model, name, standin(runner(part)))
    return encoder, in_use
