"""Pipeline configuration: a pydantic schema, loaded from YAML files in `pipelines/` plus `--set` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streamvis.errors import ConfigError

Provider = Literal["tensorrt", "cuda", "cpu"]
TorchDevice = Literal["auto", "cuda", "mps", "cpu"]
TorchDtype = Literal["auto", "float32", "float16", "bfloat16"]
FlorenceTask = Literal["<OD>", "<OPEN_VOCABULARY_DETECTION>", "<CAPTION_TO_PHRASE_GROUNDING>",
                       "<DENSE_REGION_CAPTION>", "<OCR_WITH_REGION>"]
PROMPTED_TASKS = ("<OPEN_VOCABULARY_DETECTION>", "<CAPTION_TO_PHRASE_GROUNDING>")
DEFAULT_MODELS = {
    "yolox": "yolox-nano",
    "florence2": "florence-community/Florence-2-base",
    "sam2": "facebook/sam2.1-hiera-tiny",
    "edgetam": "yonigozlan/EdgeTAM-hf",
    "sam": "facebook/sam-vit-base",
    "vlm": "HuggingFaceTB/SmolVLM-256M-Instruct",
}
DEFAULT_PROVIDERS: tuple[Provider, ...] = ("tensorrt", "cuda", "cpu")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourceConfig(_Strict):
    """How sources are opened and kept alive."""

    open_timeout_s: float = Field(10.0, gt=0, description="give up connecting after this long")
    read_timeout_s: float = Field(10.0, gt=0, description="a live source silent this long has dropped")
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    reconnect_attempts: int = Field(10, ge=0, description="live sources: reconnects after a drop (0: none)")
    reconnect_initial_delay_s: float = Field(0.5, gt=0)
    reconnect_max_delay_s: float = Field(10.0, gt=0)
    image_fps: float = Field(30.0, gt=0, description="frame rate given to image folders and globs")
    max_decode_errors: int = Field(25, ge=0, description="consecutive undecodable packets before giving up")
    options: dict[str, str] = Field(default_factory=dict, description="extra FFmpeg demuxer options")


def _fill_default_model(data: Any, default_type: str) -> Any:
    """`model` left out (or null) becomes the default model of the chosen `type`."""
    if isinstance(data, dict) and data.get("model") is None:
        kind = data.get("type", default_type)
        if kind in DEFAULT_MODELS:
            data = {**data, "model": DEFAULT_MODELS[kind]}
    return data


class DetectorConfig(_Strict):
    """The object detector run on keyframes: YOLOX (ONNX Runtime) or Florence-2 (transformers)."""

    type: Literal["yolox", "florence2"] = "yolox"
    model: str | None = Field(None, description="yolox: registry name or .onnx path; florence2: hub id or folder "
                                                "(default: yolox-nano / florence-community/Florence-2-base)")
    classes: str | None = Field(None, description="yolox: class-names file, one a line; default: COCO")
    confidence: float = Field(0.3, ge=0, le=1)
    nms_iou: float = Field(0.45, gt=0, le=1)
    every_n_frames: int = Field(1, ge=1, description="run the detector on every Nth frame (a keyframe)")
    providers: list[Provider] = Field(default_factory=lambda: list(DEFAULT_PROVIDERS), min_length=1)
    class_filter: list[str] | None = Field(None, description="keep only these class names")
    task: FlorenceTask = Field("<OD>", description="florence2: the task token")
    prompt: str = Field("", description="florence2: text for open-vocabulary and grounding tasks, "
                                        "e.g. 'person. dog. red car'")
    num_beams: int = Field(1, ge=1, description="florence2: 1 is greedy decoding")
    max_new_tokens: int = Field(256, ge=1, le=4096, description="florence2: generation length cap")
    batch_size: int = Field(1, ge=1, le=64, description="florence2: frames per generate() call")
    device: TorchDevice = Field("auto", description="florence2: cuda, then mps, then cpu when auto")
    dtype: TorchDtype = Field("auto", description="florence2: auto is float16/bfloat16 on GPU, float32 on CPU")
    backend: Literal["torch", "onnx"] = Field("torch", description="florence2: onnx decodes greedily over "
                                              "onnxruntime with the KV cache (exported on first use)")
    precision: Literal["fp32", "fp16", "int8"] = Field("fp32", description="florence2 onnx backend: fp32; int8 "
                                                       "(CPU); fp16 (CUDA)")
    onnx_dir: str | None = Field(None, description="florence2: an export folder (streamvis export)")

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data: Any) -> Any:
        return _fill_default_model(data, "yolox")

    @model_validator(mode="after")
    def _check(self) -> DetectorConfig:
        if self.type == "florence2" and self.task in PROMPTED_TASKS and not self.prompt.strip():
            raise ValueError(f"detector.prompt: task {self.task} needs a text prompt (e.g. 'person. dog')")
        if self.backend == "onnx" and (self.type != "florence2" or self.num_beams != 1):
            raise ValueError("detector.backend: onnx is for florence2 with greedy decoding (num_beams: 1); "
                             "yolox always runs on onnxruntime")
        if self.precision != "fp32" and self.backend != "onnx":
            raise ValueError(f"detector.precision: {self.precision} needs detector.backend: onnx")
        return self

    @property
    def model_id(self) -> str:
        return self.model or DEFAULT_MODELS[self.type]


class SegmenterConfig(_Strict):
    """Box-prompted masks: SAM 2.1 / EdgeTAM streaming video sessions, or SAM (v1) image-only."""

    type: Literal["none", "sam2", "edgetam", "sam"] = "none"
    model: str | None = Field(None, description="hub id or local folder (default per type: "
                                                "facebook/sam2.1-hiera-tiny, yonigozlan/EdgeTAM-hf, "
                                                "facebook/sam-vit-base)")
    device: TorchDevice = "auto"
    dtype: TorchDtype = "auto"
    match_iou: float = Field(0.3, gt=0, le=1, description="keyframe detection to tracked object: least box IoU")
    reprompt_iou: float = Field(0.5, ge=0, le=1, description="re-prompt a matched object whose propagated box "
                                                             "overlaps its detection less than this (0: never)")
    max_missed_keyframes: int = Field(3, ge=1, description="remove an object unmatched at this many keyframes")
    max_objects: int = Field(32, ge=1, description="objects tracked at once; new ones beyond are ignored")
    max_conditioning_frames: int = Field(4, ge=1, description="prompted frames kept in memory per object")
    mask_threshold: float = Field(0.0, description="mask logit threshold")
    backend: Literal["torch", "onnx"] = Field("torch", description="sam2: onnx runs the image encoder, memory "
                                              "attention and memory encoder in onnxruntime (exported on first "
                                              "use into the cache)")
    precision: Literal["fp32", "fp16", "int8"] = Field("fp32", description="onnx backend: fp32; int8 (CPU, "
                                                       "about 1.5x faster, see README); fp16 (CUDA)")
    onnx_dir: str | None = Field(None, description="an export folder (streamvis export); default: the cache")
    onnx_parts: list[Literal["image_encoder", "memory_attention", "memory_encoder"]] | None = Field(
        None, description="onnx backend: the graphs run on onnxruntime (the image encoder always); default: all "
                          "three on cuda/tensorrt, the image encoder alone on cpu, where torch is faster for the rest")
    providers: list[Provider] = Field(default_factory=lambda: list(DEFAULT_PROVIDERS), min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data: Any) -> Any:
        return _fill_default_model(data, "none")

    @model_validator(mode="after")
    def _check_backend(self) -> SegmenterConfig:
        if self.backend == "onnx" and self.type != "sam2":
            raise ValueError(f"segmenter.backend: onnx is available for sam2, not {self.type}")
        if self.precision != "fp32" and self.backend != "onnx":
            raise ValueError(f"segmenter.precision: {self.precision} needs segmenter.backend: onnx")
        return self

    @property
    def enabled(self) -> bool:
        return self.type != "none"

    @property
    def model_id(self) -> str:
        return self.model or DEFAULT_MODELS[self.type]


HAZARDS = ["car", "bus", "truck", "motorbike", "motorcycle", "bicycle", "train", "dog"]


class NarratorConfig(_Strict):
    """Spoken scene descriptions: which model, when to speak, how to speak."""

    type: Literal["none", "florence2", "vlm"] = "none"
    model: str | None = Field(None, description="florence2: Florence-2 hub id or folder; vlm: an image-text-to-text "
                                                "model (SmolVLM/Idefics3, PaliGemma 2, ...)")
    task: Literal["<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<OCR>"] = Field(
        "<CAPTION>", description="florence2: the caption task (or <OCR> to read text aloud)")
    prompt: str = Field("Describe what is in front of the camera in one short sentence, for a blind person. "
                        "Mention obstacles and hazards first.", description="vlm: the instruction")
    max_new_tokens: int = Field(40, ge=1, le=1024)
    device: TorchDevice = "auto"
    dtype: TorchDtype = "auto"
    period_s: float = Field(20.0, ge=0, description="speak at least this often (0: only on changes)")
    min_gap_s: float = Field(4.0, ge=0, description="at least this long between descriptions")
    trigger_classes: list[str] | None = Field(None, description="new or lost tracks of these trigger (None: all)")
    hazard_classes: list[str] = Field(default_factory=lambda: list(HAZARDS),
                                      description="these jump the queue and are named first")
    scene_change: float = Field(0.35, ge=0, le=1, description="histogram distance that counts as a new scene")
    dedup_similarity: float = Field(0.75, ge=0, le=1, description="do not repeat a text this similar to the last")
    objects_in_text: bool = Field(True, description="append what the detector sees, with positions")
    speech: bool = Field(True, description="server-side speech (espeak-ng) for audio tracks")
    voice: str = Field("en", description="espeak-ng voice")
    speech_rate_wpm: int = Field(165, ge=80, le=450)

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data: Any) -> Any:
        return _fill_default_model(data, "none")

    @property
    def enabled(self) -> bool:
        return self.type != "none"


class TrackerConfig(_Strict):
    """Multi-object tracking (the `trackers` library)."""

    enabled: bool = True
    type: Literal["bytetrack", "sort", "ocsort"] = "bytetrack"
    lost_track_buffer: int = Field(30, ge=0, description="frames (at 30 fps) a lost track is kept")
    track_activation_threshold: float = Field(0.4, ge=0, le=1)
    minimum_consecutive_frames: int = Field(2, ge=1)
    minimum_iou_threshold: float = Field(0.1, ge=0, le=1)


class AnnotatorConfig(_Strict):
    """What is burnt into the output video."""

    boxes: bool = True
    labels: bool = True
    masks: bool = True
    caption: bool = True
    show_score: bool = True
    show_track_id: bool = True
    mask_opacity: float = Field(0.45, ge=0, le=1)


class OutputConfig(_Strict):
    """Encoding of the annotated MP4."""

    crf: int = Field(23, ge=0, le=51)
    preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
    ] = "veryfast"
    copy_audio: bool = True


class PipelineConfig(_Strict):
    """A whole pipeline: one file in `pipelines/`."""

    name: str = "detect"
    description: str = ""
    source: SourceConfig = Field(default_factory=SourceConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    segmenter: SegmenterConfig = Field(default_factory=SegmenterConfig)
    narrator: NarratorConfig = Field(default_factory=NarratorConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    annotator: AnnotatorConfig = Field(default_factory=AnnotatorConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)


BUILTIN_PIPELINES_DIR = Path(__file__).resolve().parent / "pipelines"  # package data
DEFAULT_PIPELINE = "detect"


def resolve_pipeline_path(name_or_path: str | Path | None) -> Path:
    """A path as given; a bare name (`detect`) looked up in ./pipelines, then the built-in pipelines."""
    if name_or_path is None:
        name_or_path = DEFAULT_PIPELINE
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.parent != Path("."):
        if not path.is_file():
            raise ConfigError(f"pipeline file not found: {path}")
        return path
    for folder in (Path("pipelines"), BUILTIN_PIPELINES_DIR):
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    builtin = ", ".join(sorted(p.stem for p in BUILTIN_PIPELINES_DIR.glob("*.yaml")))
    raise ConfigError(f"unknown pipeline '{name_or_path}': no file pipelines/{name_or_path}.yaml here, and the "
                      f"built-in pipelines are {builtin}")


def parse_override(item: str) -> tuple[list[str], Any]:
    """`detector.confidence=0.5` -> (["detector", "confidence"], 0.5); the value is read as YAML."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value (for example detector.confidence=0.5), got '{item}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted key in a nested dict (creating sections as needed)."""
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise ConfigError(f"--set {item}: '{where}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def _field_names(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = PipelineConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return list(model.model_fields)


def format_validation_error(error: ValidationError, origin: str) -> str:
    """One line per problem, each naming the field, what was expected and what was found."""
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        field = ".".join(str(p) for p in loc)
        if item["type"] == "value_error":
            problems.append(str(item["msg"]).removeprefix("Value error, "))
        elif item["type"] == "extra_forbidden":
            known = ", ".join(_field_names(loc[:-1]))
            problems.append(f"{field}: unknown field (expected one of: {known})")
        else:
            problems.append(f"{field}: {item['msg']} (got {item.get('input')!r})")
    return f"{origin}: " + "; ".join(problems)


def load_pipeline(name_or_path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Load and validate a pipeline; errors name the file and the field."""
    path = resolve_pipeline_path(name_or_path)
    data: dict[str, Any] = {}
    origin = "default pipeline"
    if path is not None:
        origin = f"pipeline {path}"
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{origin}: not readable YAML ({str(exc).splitlines()[0]})") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{origin}: expected a mapping of sections, found {type(loaded).__name__}")
        data = loaded
    if overrides:
        data = apply_overrides(data, overrides)
        origin += " with --set " + " ".join(overrides)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin)) from None
