"""Florence-2 on ONNX Runtime: four graphs exported with the dynamo exporter, and a greedy decoding loop with
the KV cache that reproduces `generate`'s tokens. Runs go through IO binding: the KV cache stays where the
provider keeps it (GPU memory on CUDA) from one step to the next; only the logits come back to the host.

- `florence2_vision_encoder`: pixels -> image features (DaViT vision tower and projector), computed once per
  image whatever the task;
- `florence2_text_encoder`: input ids + image features -> encoder states (token embeddings, image-token merge,
  BART encoder);
- `florence2_decoder_init`: the first step -> logits, the self-attention cache and the cross-attention K/V;
- `florence2_decoder_with_past`: each next step -> logits and the grown self-attention cache; cross-attention
  K/V come from the cache (the encoder states passed alongside are a placeholder: a BART decoder given none
  would skip cross-attention altogether).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from streamvis.runtime.export import Graphs, export_parts, has_parts, read_parts
from streamvis.runtime.precision import Int8Range, Precision
from streamvis.runtime.session import OrtRunner

log = logging.getLogger(__name__)

PARTS = ("florence2_vision_encoder", "florence2_text_encoder", "florence2_decoder_init",
         "florence2_decoder_with_past")


def _modules(model: Any) -> tuple[Any, Any, Any, Any, int]:
    """The four graphs as modules that hold the model (the exporter traces registered submodules only)."""
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    layers = int(model.config.text_config.decoder_layers)

    class Part(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def step(self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 encoder_attention_mask: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
            out = self.model.model.language_model.decoder(
                input_ids=input_ids, encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask, past_key_values=cache, use_cache=True)
            return self.model.lm_head(out.last_hidden_state[:, -1:]), out.past_key_values

    class VisionEncoder(Part):
        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.model.model.get_image_features(pixel_values).pooler_output

    class TextEncoder(Part):
        def forward(self, input_ids: torch.Tensor, image_features: torch.Tensor,
                    attention_mask: torch.Tensor) -> torch.Tensor:
            embeds = self.model.get_input_embeddings()(input_ids)
            features = image_features.to(embeds.dtype)
            mask = (input_ids == self.model.config.image_token_id).unsqueeze(-1).expand_as(embeds)
            embeds = embeds.masked_scatter(mask, features)
            encoder = self.model.model.language_model.encoder
            return encoder(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state

    class DecoderInit(Part):
        def forward(self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
                    encoder_attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
            logits, cache = self.step(input_ids, encoder_hidden_states, encoder_attention_mask,
                                      EncoderDecoderCache(DynamicCache(), DynamicCache()))
            selfs = cache.self_attention_cache.layers
            cross = cache.cross_attention_cache.layers
            return (logits, *[t for i in range(layers) for t in (selfs[i].keys, selfs[i].values)],
                    *[t for i in range(layers) for t in (cross[i].keys, cross[i].values)])

    class DecoderWithPast(Part):
        def forward(self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
                    encoder_attention_mask: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
            self_cache, cross_cache = DynamicCache(), DynamicCache()
            for i in range(layers):
                self_cache.update(past[2 * i], past[2 * i + 1], i)
                cross_cache.update(past[2 * layers + 2 * i], past[2 * layers + 2 * i + 1], i)
            logits, cache = self.step(input_ids, encoder_hidden_states, encoder_attention_mask,
                                      EncoderDecoderCache(self_cache, cross_cache))
            selfs = cache.self_attention_cache.layers
            return (logits, *[t for i in range(layers) for t in (selfs[i].keys, selfs[i].values)])

    return VisionEncoder().eval(), TextEncoder().eval(), DecoderInit().eval(), DecoderWithPast().eval(), layers


def export_florence2(model: Any, processor: Any, model_id: str, folder: Path, precision: Precision = "fp32",
                     int8_range: Int8Range = "auto") -> Path:
    """Export the four graphs of a loaded Florence-2 into `folder`, in `precision`, with the manifest."""
    import torch
    from PIL import Image

    model = model.float().cpu().eval()
    vision, text, init, with_past, layers = _modules(model)
    size = processor.image_processor.size
    image = Image.new("RGB", (int(size.get("width", 768)), int(size.get("height", 768))))
    inputs = processor(text=["<OD>"], images=[image], return_tensors="pt")
    ids, pixels, mask = inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"]
    start = torch.tensor([[int(model.generation_config.decoder_start_token_id)]])
    names = [f"self_{kv}_{i}" for i in range(layers) for kv in ("key", "value")]
    cross_names = [f"cross_{kv}_{i}" for i in range(layers) for kv in ("key", "value")]
    with torch.inference_mode():
        features = vision(pixels)
        states = text(ids, features, mask)
        past = tuple(init(start, states, mask)[1:])
    source = {1: "source"}
    graphs: Graphs = {
        PARTS[0]: (vision, (pixels,), ["pixel_values"], ["image_features"], None),
        PARTS[1]: (text, (ids, features, mask), ["input_ids", "image_features", "attention_mask"],
                   ["encoder_hidden_states"],
                   {"input_ids": {1: "text"}, "image_features": None, "attention_mask": {1: "text"}}),
        PARTS[2]: (init, (start, states, mask), ["input_ids", "encoder_hidden_states", "encoder_attention_mask"],
                   ["logits", *names, *cross_names],
                   {"input_ids": None, "encoder_hidden_states": source, "encoder_attention_mask": source}),
        PARTS[3]: (with_past, (start, states, mask, *past),
                   ["input_ids", "encoder_hidden_states", "encoder_attention_mask", *names, *cross_names],
                   ["logits", *[f"present_{n}" for n in names]],
                   {"input_ids": None, "encoder_hidden_states": source, "encoder_attention_mask": source,
                    "past": tuple({2: "past"} for _ in names) + tuple({2: "source"} for _ in cross_names)}),
    }
    return export_parts(folder, model_id, graphs, dict.fromkeys(PARTS, precision), {"decoder_layers": layers},
                        label="Florence-2", int8_range=int8_range)


def is_exported(folder: Path, model_id: str, precision: Precision) -> bool:
    return has_parts(folder, model_id, dict.fromkeys(PARTS, precision))


class OnnxFlorence2:
    """Greedy decoding over onnxruntime with the KV cache, following the model's generation config
    (decoder start, forced BOS/EOS, minimum length, EOS stop)."""

    def __init__(self, folder: Path, model_id: str, generation_config: Any, providers: list[str],
                 precision: Precision | None = None) -> None:
        manifest = read_parts(folder, model_id, dict.fromkeys(PARTS, precision))
        self.layers = int(manifest["parts"][PARTS[0]]["decoder_layers"])
        self.runners = [OrtRunner(folder / manifest["parts"][part]["file"], providers,
                                  f"{model_id} {part.removeprefix('florence2_').replace('_', ' ')}")
                        for part in PARTS]
        self.provider = self.runners[0].provider
        self.config = generation_config
        eos = generation_config.eos_token_id
        self.eos = int(eos if isinstance(eos, int) else eos[0])

    def generate(self, input_ids: np.ndarray, pixel_values: np.ndarray, attention_mask: np.ndarray,
                 max_new_tokens: int) -> list[list[int]]:
        """Token ids (decoder start first) for each image, as `model.generate(..., num_beams=1)` gives them."""
        return [self._one(input_ids[i:i + 1], pixel_values[i:i + 1], attention_mask[i:i + 1], max_new_tokens)
                for i in range(len(input_ids))]

    def _one(self, ids: np.ndarray, pixels: np.ndarray, mask: np.ndarray, max_new: int) -> list[int]:
        vision, text, init, with_past = self.runners
        mask = mask.astype(np.int64)
        (features,) = vision.run({"pixel_values": pixels.astype(np.float32)})
        (states,) = text.run({"input_ids": ids.astype(np.int64), "image_features": features,
                              "attention_mask": mask})
        token = int(self.config.decoder_start_token_id)
        sequence = [token]
        min_new = int(self.config.min_new_tokens or 0)
        forced_bos, forced_eos = self.config.forced_bos_token_id, self.config.forced_eos_token_id
        cache: list[Any] = []  # OrtValues, left where the provider keeps them
        cross: list[Any] = []
        for step in range(max_new):
            feed = {"input_ids": np.array([[token]], np.int64), "encoder_hidden_states": states,
                    "encoder_attention_mask": mask}
            if step == 0:
                out = init.run(feed)
                cache, cross = list(out[1:1 + 2 * self.layers]), list(out[1 + 2 * self.layers:])
            else:
                for i in range(self.layers):
                    feed[f"self_key_{i}"], feed[f"self_value_{i}"] = cache[2 * i], cache[2 * i + 1]
                    feed[f"cross_key_{i}"], feed[f"cross_value_{i}"] = cross[2 * i], cross[2 * i + 1]
                out = with_past.run(feed)
                cache = list(out[1:])
            logits = out[0].numpy()[0, -1].astype(np.float64)
            if step < min_new:
                logits[self.eos] = -np.inf
            if step == 0 and forced_bos is not None:
                token = int(forced_bos)
            elif step == max_new - 1 and forced_eos is not None:
                token = int(forced_eos)
            else:
                token = int(logits.argmax())
            sequence.append(token)
            if token == self.eos:
                break
        return sequence
