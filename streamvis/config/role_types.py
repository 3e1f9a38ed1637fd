"""Which class a pipeline section holds: one field per role, its `type` picking the class (left out: the role's
default type), and the role -> type -> class table that `--set ROLE.type=...` and error messages read. The
classes themselves are `config.roles`'."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Tag

from streamvis.config.roles import (
    ClipEmbedderConfig,
    EdgeTamConfig,
    Florence2Config,
    Florence2NarratorConfig,
    NoEmbedderConfig,
    NoNarratorConfig,
    NoReaderConfig,
    NoSegmenterConfig,
    ObjectsNarratorConfig,
    OpenAINarratorConfig,
    RapidOcrReaderConfig,
    Sam2Config,
    Sam3Config,
    SamConfig,
    Strict,
    VlmNarratorConfig,
    YoloxConfig,
)


def _type_of(default: str) -> Any:
    def tag(value: Any) -> Any:
        if isinstance(value, dict):
            return value.get("type") or default
        return getattr(value, "type", default)

    return Discriminator(tag)


DetectorConfig = Annotated[
    Annotated[YoloxConfig, Tag("yolox")] | Annotated[Florence2Config, Tag("florence2")],
    _type_of("yolox")]
SegmenterConfig = Annotated[
    Annotated[NoSegmenterConfig, Tag("none")] | Annotated[Sam2Config, Tag("sam2")]
    | Annotated[EdgeTamConfig, Tag("edgetam")] | Annotated[Sam3Config, Tag("sam3")]
    | Annotated[SamConfig, Tag("sam")],
    _type_of("none")]
NarratorConfig = Annotated[
    Annotated[NoNarratorConfig, Tag("none")] | Annotated[ObjectsNarratorConfig, Tag("objects")]
    | Annotated[Florence2NarratorConfig, Tag("florence2")] | Annotated[VlmNarratorConfig, Tag("vlm")]
    | Annotated[OpenAINarratorConfig, Tag("openai")],
    _type_of("none")]
ReaderConfig = Annotated[
    Annotated[NoReaderConfig, Tag("none")] | Annotated[RapidOcrReaderConfig, Tag("rapidocr")],
    _type_of("none")]
EmbedderConfig = Annotated[
    Annotated[NoEmbedderConfig, Tag("none")] | Annotated[ClipEmbedderConfig, Tag("clip")],
    _type_of("none")]
AnyNarratorConfig = (NoNarratorConfig | ObjectsNarratorConfig | Florence2NarratorConfig | VlmNarratorConfig
                     | OpenAINarratorConfig)
AnyDetectorConfig = YoloxConfig | Florence2Config
AnySegmenterConfig = NoSegmenterConfig | Sam2Config | EdgeTamConfig | Sam3Config | SamConfig

# role -> type -> class: what a section may hold, for error messages and for switching types with --set
ROLE_TYPES: dict[str, dict[str, type[Strict]]] = {
    "detector": {"yolox": YoloxConfig, "florence2": Florence2Config},
    "segmenter": {"none": NoSegmenterConfig, "sam2": Sam2Config, "edgetam": EdgeTamConfig, "sam3": Sam3Config,
                  "sam": SamConfig},
    "narrator": {"none": NoNarratorConfig, "objects": ObjectsNarratorConfig, "florence2": Florence2NarratorConfig,
                 "vlm": VlmNarratorConfig, "openai": OpenAINarratorConfig},
    "reader": {"none": NoReaderConfig, "rapidocr": RapidOcrReaderConfig},
    "embedder": {"none": NoEmbedderConfig, "clip": ClipEmbedderConfig},
}
DEFAULT_TYPES = {"detector": "yolox", "segmenter": "none", "narrator": "none", "reader": "none", "embedder": "none"}
