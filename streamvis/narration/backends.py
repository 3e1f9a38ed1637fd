"""Narrator backends: Florence-2 captions / OCR, chat VLMs through `AutoModelForImageTextToText`, a VLM on an
OpenAI-compatible server (`openai_server`), and none at all (`objects`: the scene model's words alone).

Each maps (frame, what is in view in words, optional question) to a caption or an answer. Chat VLMs get what is
in view in the prompt, so their words match the boxes; Florence-2 cannot be prompted for captions. The narrator
says the scene model's news first and the caption after it. Processors used are the Pillow ones: no torchvision.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from streamvis.config import (
    AnyNarratorConfig,
    Florence2NarratorConfig,
    ObjectsNarratorConfig,
    OpenAINarratorConfig,
    VlmNarratorConfig,
)
from streamvis.narration.wording import clean_text
from streamvis.weights.hf import load_model, load_pretrained

if TYPE_CHECKING:
    from streamvis.detection.florence2 import Florence2Model

log = logging.getLogger(__name__)


class NarratorBackend(Protocol):
    name: str
    captions: bool  # True when it looks at the image (a caption or an answer); False: words from the objects only
    last_ms: float

    @property
    def provider(self) -> str: ...

    def describe(self, image_bgr: np.ndarray, objects: str, question: str | None = None) -> str: ...


@runtime_checkable
class ReportsHealth(Protocol):
    """A backend that can fail on its own (a model server elsewhere): its state, for `/streams`."""

    def health(self) -> dict[str, object]: ...


def _pil(image_bgr: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(image_bgr[:, :, ::-1]))


class FlorenceNarrator:
    """Florence-2 `<CAPTION>` / `<DETAILED_CAPTION>` / `<MORE_DETAILED_CAPTION>`, or `<OCR>` to read text.

    Florence-2 answers no free questions: a question about text ("what does the sign say?") is answered by OCR,
    any other by the detailed caption.
    """

    captions = True

    def __init__(self, config: Florence2NarratorConfig, model: Florence2Model | None = None) -> None:
        from streamvis.detection.florence2 import Florence2Model

        self.config = config
        # One Florence2Model owns loading and generation (and its ONNX backend); the detector's when it is the
        # same model, so Florence-2 is loaded once for both roles.
        self.runner = model or Florence2Model(config, "narrator.model")
        self.name = self.runner.name
        self.model = self.runner.model  # the torch module (its generation config, for benchmarks)
        self.processor = self.runner.processor
        self.last_ms = 0.0

    @property
    def provider(self) -> str:
        return self.runner.provider

    def _run(self, image_bgr: np.ndarray, task: str) -> str:
        text = self.runner.generate_text([image_bgr], task, self.config.max_new_tokens)[0]
        answer = self.processor.post_process_generation(text, task=task, image_size=image_bgr.shape[1::-1])
        return clean_text(str(answer.get(task, "")))

    def describe(self, image_bgr: np.ndarray, objects: str, question: str | None = None) -> str:
        start = time.perf_counter()
        task = self.config.task
        if question is not None:
            task = "<OCR>" if any(w in question.lower() for w in ("read", "say", "text", "written", "sign")) \
                else "<DETAILED_CAPTION>"
        text = self._run(image_bgr, task)
        if task == "<OCR>":
            text = f"The text reads: {text}" if text else "I cannot read any text."
        self.last_ms = (time.perf_counter() - start) * 1e3
        return text


class ChatVLMNarrator:
    """Any image-text-to-text model with a chat template (SmolVLM / Idefics3, Qwen2.5-VL, ...) or plain prompts
    (PaliGemma 2: `caption en`, `answer en ...`)."""

    captions = True

    def __init__(self, config: VlmNarratorConfig) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.config = config
        self.name = config.model
        self.processor = load_pretrained(AutoProcessor, self.name, "narrator.model")
        self.model, self.device, self.dtype, self.provider = load_model(
            AutoModelForImageTextToText, self.name, "narrator.model", config.device, config.dtype,
            config.attention)
        self._torch = torch
        self._chat = getattr(self.processor, "chat_template", None) is not None
        self.last_ms = 0.0

    def prompt_text(self, objects: str, question: str | None) -> str:
        """The instruction (or the question), grounded in the objects the detector sees."""
        ask = question or self.config.prompt
        if not self._chat:  # PaliGemma-style task prefixes
            return f"answer en {question}" if question else "caption en"
        return f"{ask}\nThe detector sees: {objects}" if objects else ask

    def describe(self, image_bgr: np.ndarray, objects: str, question: str | None = None) -> str:
        start = time.perf_counter()
        text = self.prompt_text(objects, question)
        if self._chat:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        else:
            text = "<image>" + text
        inputs = self.processor(text=text, images=[_pil(image_bgr)], return_tensors="pt")
        inputs.pop("labels", None)
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with self._torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        answer = self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]
        self.last_ms = (time.perf_counter() - start) * 1e3
        return clean_text(answer)


class ObjectsNarrator:
    """No model: the narration is the scene model's words (`narrator.type: objects`); a question is answered with
    what is in view, in detail."""

    captions = False
    name = "objects"
    provider = "cpu"
    last_ms = 0.0

    def describe(self, image_bgr: np.ndarray, objects: str, question: str | None = None) -> str:
        if question is None:
            return ""
        return objects or "I see no objects."


def load_narrator_backend(config: AnyNarratorConfig, florence: Florence2Model | None = None) -> NarratorBackend | None:
    """The configured narrator model, loaded (a Florence-2 narrator runs on `florence` when given: shared), or
    None when `type: none`."""
    if isinstance(config, Florence2NarratorConfig):
        return FlorenceNarrator(config, florence)
    if isinstance(config, VlmNarratorConfig):
        return ChatVLMNarrator(config)
    if isinstance(config, ObjectsNarratorConfig):
        return ObjectsNarrator()
    if isinstance(config, OpenAINarratorConfig):
        from streamvis.narration.openai_server import OpenAINarrator

        return OpenAINarrator(config)
    return None
