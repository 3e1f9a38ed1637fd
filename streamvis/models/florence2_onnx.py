"""Florence-2 on ONNX Runtime: three graphs exported with the dynamo exporter, and a greedy decoding loop with
the KV cache that reproduces `generate`'s tokens.

- `florence2_encoder`: input ids + pixels -> encoder states (vision tower, projector, image-token merge, BART
  encoder);
- `florence2_decoder_init`: the first step -> logits, the self-attention cache and the cross-attention K/V;
- `florence2_decoder_with_past`: each next step -> logits and the grown self-attention cache; cross-attention
  K/V come from the cache (the encoder states passed alongside are a placeholder: a BART decoder given none
  would skip cross-attention altogether).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamvis import __version__
from streamvis.errors import ModelError
from streamvis.models.onnx_export import MANIFEST, OPSET, read_manifest
from streamvis.models.onnx_session import create_session

log = logging.getLogger(__name__)

PARTS = ("florence2_encoder", "florence2_decoder_init", "florence2_decoder_with_past")


def _modules(model: Any) -> tuple[Any, Any, Any, int]:
    """The three graphs as modules that hold the model (the exporter traces registered submodules only)."""
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

    class Encoder(Part):
        def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor,
                    attention_mask: torch.Tensor) -> torch.Tensor:
            embeds = self.model.get_input_embeddings()(input_ids)
            features = self.model.model.get_image_features(pixel_values).pooler_output.to(embeds.dtype)
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

    return Encoder().eval(), DecoderInit().eval(), DecoderWithPast().eval(), layers


def export_florence2(model: Any, processor: Any, model_id: str, folder: Path) -> Path:
    """Export the three graphs (fp32) of a loaded Florence-2 into `folder` and record them in its manifest."""
    import torch
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    model = model.float().cpu().eval()
    encoder, init, with_past, layers = _modules(model)
    size = processor.image_processor.size
    image = Image.new("RGB", (int(size.get("width", 768)), int(size.get("height", 768))))
    inputs = processor(text=["<OD>"], images=[image], return_tensors="pt")
    ids, pixels, mask = inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"]
    start = torch.tensor([[int(model.generation_config.decoder_start_token_id)]])
    names = [f"self_{kv}_{i}" for i in range(layers) for kv in ("key", "value")]
    cross_names = [f"cross_{kv}_{i}" for i in range(layers) for kv in ("key", "value")]
    log.info("exporting Florence-2 %s to ONNX (three graphs; a few minutes at real size)...", model_id)
    began = time.perf_counter()
    try:
        with torch.inference_mode():
            states = encoder(ids, pixels, mask)
            first = init(start, states, mask)
        torch.onnx.export(encoder, (ids, pixels, mask), str(folder / f"{PARTS[0]}.onnx"), dynamo=True,
                          opset_version=OPSET, input_names=["input_ids", "pixel_values", "attention_mask"],
                          output_names=["encoder_hidden_states"],
                          dynamic_shapes={"input_ids": {1: "text"}, "pixel_values": None,
                                          "attention_mask": {1: "text"}})
        torch.onnx.export(init, (start, states, mask), str(folder / f"{PARTS[1]}.onnx"), dynamo=True,
                          opset_version=OPSET,
                          input_names=["input_ids", "encoder_hidden_states", "encoder_attention_mask"],
                          output_names=["logits", *names, *cross_names],
                          dynamic_shapes={"input_ids": None, "encoder_hidden_states": {1: "source"},
                                          "encoder_attention_mask": {1: "source"}})
        past = tuple(first[1:])
        dynamic = {"input_ids": None, "encoder_hidden_states": {1: "source"},
                   "encoder_attention_mask": {1: "source"},
                   "past": tuple({2: "past"} for _ in names) + tuple({2: "source"} for _ in cross_names)}
        torch.onnx.export(with_past, (start, states, mask, *past), str(folder / f"{PARTS[2]}.onnx"), dynamo=True,
                          opset_version=OPSET,
                          input_names=["input_ids", "encoder_hidden_states", "encoder_attention_mask",
                                       *names, *cross_names],
                          output_names=["logits", *[f"present_{n}" for n in names]], dynamic_shapes=dynamic)
    except Exception as exc:  # the exporter raises many kinds; the user needs the first line
        raise ModelError(f"exporting {model_id} to ONNX failed: {str(exc).splitlines()[0]}") from exc
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.update(model_id=model_id, streamvis=__version__, torch=torch.__version__, opset=OPSET)
    for part in PARTS:
        manifest.setdefault("parts", {})[part] = {"file": f"{part}.onnx", "precision": "fp32",
                                                  "decoder_layers": layers}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("exported Florence-2 in %.1f s", time.perf_counter() - began)
    return folder


class OnnxFlorence2:
    """Greedy decoding over onnxruntime with the KV cache, following the model's generation config
    (decoder start, forced BOS/EOS, minimum length, EOS stop)."""

    def __init__(self, folder: Path, model_id: str, generation_config: Any, providers: list[str]) -> None:
        manifest = None
        for part in PARTS:
            manifest = read_manifest(folder, part, model_id)
        assert manifest is not None
        self.layers = int(manifest["parts"][PARTS[0]]["decoder_layers"])
        self.sessions = []
        self.provider = ""
        for part in PARTS:
            session, self.provider = create_session(folder / manifest["parts"][part]["file"], providers,
                                                    f"{model_id} {part}")
            self.sessions.append(session)
        self.config = generation_config
        eos = generation_config.eos_token_id
        self.eos = int(eos if isinstance(eos, int) else eos[0])

    def generate(self, input_ids: np.ndarray, pixel_values: np.ndarray, attention_mask: np.ndarray,
                 max_new_tokens: int) -> list[list[int]]:
        """Token ids (decoder start first) for each image, as `model.generate(..., num_beams=1)` gives them."""
        return [self._one(input_ids[i:i + 1], pixel_values[i:i + 1], attention_mask[i:i + 1], max_new_tokens)
                for i in range(len(input_ids))]

    def _one(self, ids: np.ndarray, pixels: np.ndarray, mask: np.ndarray, max_new: int) -> list[int]:
        encoder, init, with_past = self.sessions
        states = encoder.run(None, {"input_ids": ids.astype(np.int64), "pixel_values": pixels.astype(np.float32),
                                    "attention_mask": mask.astype(np.int64)})[0]
        mask = mask.astype(np.int64)
        token = int(self.config.decoder_start_token_id)
        sequence = [token]
        min_new = int(self.config.min_new_tokens or 0)
        forced_bos, forced_eos = self.config.forced_bos_token_id, self.config.forced_eos_token_id
        cache: list[np.ndarray] = []
        cross: list[np.ndarray] = []
        for step in range(max_new):
            feed = {"input_ids": np.array([[token]], np.int64), "encoder_hidden_states": states,
                    "encoder_attention_mask": mask}
            if step == 0:
                out = init.run(None, feed)
                cache, cross = list(out[1:1 + 2 * self.layers]), list(out[1 + 2 * self.layers:])
            else:
                for i in range(self.layers):
                    feed[f"self_key_{i}"], feed[f"self_value_{i}"] = cache[2 * i], cache[2 * i + 1]
                    feed[f"cross_key_{i}"], feed[f"cross_value_{i}"] = cross[2 * i], cross[2 * i + 1]
                out = with_past.run(None, feed)
                cache = list(out[1:])
            logits = out[0][0, -1].astype(np.float64)
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
