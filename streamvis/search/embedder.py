"""An image-text embedding model: CLIP, SigLIP or SigLIP 2 through transformers, by hub id or folder, loaded like
every transformers model here (`weights.hf.load_model`). Images and sentences come out as unit vectors in one
space, so a sentence is compared with a crop by their dot product.

Pre-processing is our own (no image processor: the default ones need torchvision): a crop is padded to a square
with the model's mean colour, resized to the model's input size, scaled to 0..1 and normalised with the model's
mean and standard deviation (read from its `preprocessor_config.json` through the PIL image processor, else
CLIP's). SigLIP 2's variable-resolution (NaFlex) checkpoints take each crop at its own aspect ratio, cut into
patches by their own image processor (its PIL backend needs no torchvision). SigLIP's text encoders were trained
on sentences padded to 64 tokens: the tokenizer pads to that length.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from streamvis.config import ClipEmbedderConfig
from streamvis.errors import ModelError
from streamvis.extras import require

if TYPE_CHECKING:
    from streamvis.batching import Batcher

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_TEXT_LENGTH = 64


def square_resized(image_bgr: np.ndarray, size: int, fill_rgb: tuple[int, int, int]) -> np.ndarray:
    """RGB uint8 (size, size, 3): `image_bgr` padded to a square (centred, `fill_rgb` around), then resized."""
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    height, width = rgb.shape[:2]
    side = max(height, width, 1)
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = fill_rgb
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top:top + height, left:left + width] = rgb
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)


class ImageTextEmbedder:
    """One model per process, shared by every stream; calls are serialised (one at a time)."""

    def __init__(self, config: ClipEmbedderConfig) -> None:
        require("embedder.type clip", "search")
        import torch
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, CLIPModel, Siglip2Model, SiglipModel

        from streamvis.weights.hf import load_model, load_pretrained

        self.config = config
        model, self.device, self.dtype, self.provider = load_model(AutoModel, config.model, "embedder.model",
                                                                   config.device, config.dtype, config.attention)
        if not isinstance(model, CLIPModel | SiglipModel | Siglip2Model):
            raise ModelError(f"embedder.model: '{config.model}' is a {type(model).__name__}, not an image-text "
                             "embedding model (a CLIP, SigLIP or SigLIP 2 checkpoint)")
        self.model = model
        self.siglip = isinstance(model, SiglipModel | Siglip2Model)
        vision: Any = model.config.vision_config
        self.size = int(getattr(vision, "image_size", 0) or 0)  # SigLIP 2 (NaFlex) has none: any size, any shape
        self.tokenizer = load_pretrained(AutoTokenizer, config.model, "embedder.model")
        self._naflex: Any = None
        try:
            processor = AutoImageProcessor.from_pretrained(config.model, backend="pil")
            mean, std = tuple(processor.image_mean), tuple(processor.image_std)
        except (OSError, ValueError, TypeError, AttributeError):  # no preprocessor_config.json: CLIP's values
            processor, (mean, std) = None, (CLIP_MEAN, CLIP_STD)
        if isinstance(model, Siglip2Model):
            if processor is None:
                raise ModelError(f"embedder.model: '{config.model}' is a SigLIP 2 checkpoint without its image "
                                 "processor (preprocessor_config.json): its patches cannot be made")
            # its own (PIL) processor: each crop at its own aspect ratio, cut into at most max_num_patches patches
            self._naflex = processor
        self._mean = np.array(mean, np.float32)
        self._std = np.array(std, np.float32)
        r, g, b = (round(v * 255) for v in mean[:3])
        self._fill = (r, g, b)
        self.name = config.model
        self._torch = torch
        self._lock = threading.Lock()
        self.batcher: Batcher[np.ndarray, np.ndarray] | None = None
        with self._lock:
            self.dim = int(self._run_text(["a photo"]).shape[1])

    def _unit(self, features: Any) -> np.ndarray:
        vectors = features.pooler_output.float().cpu().numpy()
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def _run_text(self, texts: list[str]) -> np.ndarray:
        padding: Any = "max_length" if self.siglip else True
        tokens = self.tokenizer(texts, padding=padding, truncation=True, return_tensors="pt",
                                **({"max_length": SIGLIP_TEXT_LENGTH} if self.siglip else {}))
        with self._torch.inference_mode():
            return self._unit(self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                           **({} if self.siglip else {
                                                               "attention_mask": tokens["attention_mask"].to(
                                                                   self.device)})))

    def texts(self, texts: list[str]) -> np.ndarray:
        """(N, dim) float32 unit vectors."""
        with self._lock:
            return self._run_text(texts)

    def images(self, images_bgr: list[np.ndarray]) -> np.ndarray:
        """(N, dim) float32 unit vectors, `batch_size` images a model call; across streams, through the shared
        batch when there is one (`batch_across_streams`)."""
        if self.batcher is not None:
            futures = [self.batcher.submit(image) for image in images_bgr]
            return np.stack([f.result() for f in futures]) if futures else np.zeros((0, self.dim), np.float32)
        out = []
        for start in range(0, len(images_bgr), self.config.batch_size):
            out.append(self._run_images(images_bgr[start:start + self.config.batch_size]))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def _run_images(self, images_bgr: list[np.ndarray]) -> np.ndarray:
        if self._naflex is not None:
            rgb = [cv2.cvtColor(im, cv2.COLOR_BGR2RGB) for im in images_bgr]
            inputs = self._naflex(images=rgb, return_tensors="pt")
            with self._lock, self._torch.inference_mode():
                return self._unit(self.model.get_image_features(
                    pixel_values=inputs["pixel_values"].to(self.device, self.dtype),
                    pixel_attention_mask=inputs["pixel_attention_mask"].to(self.device),
                    spatial_shapes=inputs["spatial_shapes"].to(self.device)))
        pixels = np.stack([square_resized(im, self.size, self._fill) for im in images_bgr]).astype(np.float32)
        pixels = (pixels / 255.0 - self._mean) / self._std
        with self._lock:
            tensor = self._torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()).to(self.device, self.dtype)
            with self._torch.inference_mode():
                return self._unit(self.model.get_image_features(pixel_values=tensor))

    def batch_across_streams(self, max_batch: int, batch_wait_ms: float) -> None:
        """From now on, the images of every stream's index writer join a shared batch (`batching.Batcher`: a GPU
        runs 8 crops in little more than the time of one); each stream's are taken in turn."""
        from streamvis.batching import Batcher

        self.batcher = Batcher(f"embed-{self.name}", lambda images: list(self._run_images(images)), max_batch,
                               batch_wait_ms, max_pending=10_000)  # an index writer never loses a view
