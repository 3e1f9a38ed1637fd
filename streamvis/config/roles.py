"""The model of each role (detector, segmenter, narrator, text reader, embedder): one class per model type, told
apart by `type` (`config.role_types` holds the union per role and the role -> type table).

A field belongs to the types that use it, so a field another type would read is an error that names it. Shared
settings live in small bases: `TorchSettings` (device, dtype), `OnnxSettings` (backend, precision, providers),
and `_ModelChoice`, whose one validator turns an explicit `model: null` into the type's default.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Provider = Literal["tensorrt", "cuda", "cpu"]
TorchDevice = Literal["auto", "cuda", "mps", "cpu"]
TorchDtype = Literal["auto", "float32", "float16", "bfloat16"]
FlorenceTask = Literal["<OD>", "<OPEN_VOCABULARY_DETECTION>", "<CAPTION_TO_PHRASE_GROUNDING>",
                       "<DENSE_REGION_CAPTION>", "<OCR_WITH_REGION>"]
PROMPTED_TASKS = ("<OPEN_VOCABULARY_DETECTION>", "<CAPTION_TO_PHRASE_GROUNDING>")
DEFAULT_PROVIDERS: tuple[Provider, ...] = ("tensorrt", "cuda", "cpu")
READER_PROVIDERS: tuple[Provider, ...] = ("cuda", "cpu")
HAZARDS = ["car", "bus", "truck", "motorbike", "motorcycle", "bicycle", "train", "dog"]


class Strict(BaseModel):
    """Unknown fields are errors; assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _ModelChoice(Strict):
    """A role's model: `model` left out or null is the type's default."""

    @field_validator("model", mode="before", check_fields=False)
    @classmethod
    def _default_model(cls, value: Any) -> Any:
        return cls.model_fields["model"].default if value is None else value


class TorchSettings(Strict):
    device: TorchDevice = Field("auto", description="cuda, then mps, then cpu when auto")
    dtype: TorchDtype = Field("auto", description="auto is bfloat16/float16 on a GPU, float32 on a CPU")
    attention: Literal["auto", "sdpa", "eager"] = Field(
        "auto", description="attention kernels: sdpa (torch's fused attention), eager (the reference "
                            "implementation); auto: sdpa where the model supports it, else eager")


class CompileSettings(Strict):
    """The fast torch path (`runtime.torch_compile`): compiled parts, CUDA graphs."""

    cuda_graphs: bool = Field(False, description="compiled parts replay as CUDA graphs (reduce-overhead; CUDA only)")


class OnnxSettings(Strict):
    """The onnxruntime backend of a transformers model (graphs exported on first use into the cache)."""

    role: ClassVar[str] = "model"  # the pipeline section the class fills, for messages

    backend: Literal["torch", "onnx"] = Field("torch", description="onnx: the heavy parts on onnxruntime")
    precision: Literal["fp32", "fp16", "int8"] = Field(
        "fp32", description="onnx backend: fp32; int8 (CPU, see the GPU and ONNX guide for its tolerance); fp16 (CUDA)")
    onnx_dir: str | None = Field(None, description="an export folder (streamvis export); default: the cache")
    providers: list[Provider] = Field(default_factory=lambda: list(DEFAULT_PROVIDERS), min_length=1,
                                      description="tried in order; the one really used is logged")

    @model_validator(mode="after")
    def _precision_needs_onnx(self) -> OnnxSettings:
        if self.precision != "fp32" and self.backend != "onnx":
            raise ValueError(f"{self.role}.precision: {self.precision} needs {self.role}.backend: onnx")
        return self


# -- detectors -----------------------------------------------------------------------------------------------
class _DetectorBase(_ModelChoice):
    role: ClassVar[str] = "detector"
    every_n_frames: int = Field(1, ge=1, description="run the detector on every Nth frame (a keyframe)")
    fps: float | None = Field(None, gt=0, le=240, description="detector runs per second per stream at most, "
                              "whatever the camera's frame rate (like Frigate's detect.fps); offline: a keyframe "
                              "every round(source fps / fps) frames. None: every_n_frames alone")
    class_filter: list[str] | None = Field(None, description="keep only these class names")


class YoloxConfig(_DetectorBase):
    """YOLOX exported to ONNX, on onnxruntime."""

    type: Literal["yolox"] = "yolox"
    model: str = Field("yolox-nano", description="registry name or .onnx path")
    classes: str | None = Field(None, description="class-names file, one a line; default: COCO")
    confidence: float = Field(0.3, ge=0, le=1)
    nms_iou: float = Field(0.45, gt=0, le=1)
    providers: list[Provider] = Field(default_factory=lambda: list(DEFAULT_PROVIDERS), min_length=1)
    threads: int = Field(0, ge=0, le=256, description="onnxruntime intra-op threads (0: automatic: one per "
                         "physical core live, one per frame in flight offline)")
    spin_wait: bool = Field(False, description="let idle onnxruntime threads spin between frames (its own default): "
                            "a little lower latency, but it burns the cores the decoder and encoder need")
    fit_input: bool | Literal["auto"] = Field("auto", description="each frame goes in at its own shape (768x432 as "
                                              "416x256, not letterboxed into 416x416: 0.62 of the work), the graph "
                                              "loaded with a free input size; auto: on the CPU provider (TensorRT "
                                              "builds an engine per shape), where the graph allows it")
    max_upscale: float | None = Field(1.25, ge=1, description="with fit_input, a motion crop (motion.crop) is "
                                      "enlarged at most this much into the input: it then costs what the whole "
                                      "frame does; none: enlarged to fill the input (more small objects found, "
                                      "1.7 times the work)")


class Florence2Config(_DetectorBase, TorchSettings, CompileSettings, OnnxSettings):
    """Florence-2 through transformers (or its onnxruntime graphs)."""

    type: Literal["florence2"] = "florence2"
    model: str = Field("florence-community/Florence-2-base", description="hub id or folder")
    task: FlorenceTask = Field("<OD>", description="the task token")
    prompt: str = Field("", description="text for open-vocabulary and grounding tasks, e.g. 'person. dog. red car'")
    num_beams: int = Field(1, ge=1, description="1 is greedy decoding")
    max_new_tokens: int = Field(256, ge=1, le=4096, description="generation length cap")
    compile: list[Literal["vision_encoder", "decoder"]] = Field(
        default_factory=list, description="torch.compile these parts; decoder: the decode step over a static KV cache")
    batch_size: int = Field(8, ge=1, le=64, description="at most this many frames per generate() call when "
                            "several are detected together (cross-stream batching, `batching`)")

    @model_validator(mode="after")
    def _check(self) -> Florence2Config:
        if self.task in PROMPTED_TASKS and not self.prompt.strip():
            raise ValueError(f"detector.prompt: task {self.task} needs a text prompt (e.g. 'person. dog')")
        if self.backend == "onnx" and self.num_beams != 1:
            raise ValueError("detector.backend: onnx decodes greedily (detector.num_beams: 1)")
        if self.compile and self.backend == "onnx":
            raise ValueError("detector.compile: compiles torch parts; with detector.backend: onnx there are none")
        if "decoder" in self.compile and self.num_beams != 1:
            raise ValueError("detector.compile: decoder (a static KV cache) decodes greedily (detector.num_beams: 1)")
        return self


# -- segmenters ----------------------------------------------------------------------------------------------
class NoSegmenterConfig(Strict):
    type: Literal["none"] = "none"
    enabled: ClassVar[bool] = False
    finds_objects: ClassVar[bool] = False  # the segmenter finds objects itself: no detector is loaded or run


class _VideoSegmenterBase(_ModelChoice, TorchSettings, CompileSettings):
    role: ClassVar[str] = "segmenter"
    enabled: ClassVar[bool] = True
    finds_objects: ClassVar[bool] = False
    compile: list[Literal["image_encoder", "memory_attention", "mask_decoder", "memory_encoder"]] = Field(
        default_factory=list, description="torch.compile these parts (the first frames take longer)")
    preprocess: Literal["auto", "host", "device"] = Field(
        "auto", description="resize and normalise frames on the host (OpenCV) or on the model's device (one copy "
                            "of the uint8 frame, then torch); auto: device on a GPU")
    match_iou: float = Field(0.3, gt=0, le=1, description="keyframe detection to tracked object: least box IoU")
    reprompt_iou: float = Field(0.5, ge=0, le=1, description="re-prompt a matched object whose propagated box "
                                                             "overlaps its detection less than this (0: never)")
    max_missed_keyframes: int = Field(3, ge=1, description="remove an object unmatched at this many keyframes")
    max_objects: int = Field(32, ge=1, description="objects tracked at once; new ones beyond are ignored")
    max_conditioning_frames: int = Field(4, ge=1, description="prompted frames kept in memory per object")
    mask_threshold: float = Field(0.0, description="mask logit threshold")


class Sam2Config(_VideoSegmenterBase, OnnxSettings):
    """SAM 2.1: one streaming session per stream, masks propagated to every frame."""

    type: Literal["sam2"] = "sam2"
    model: str = Field("facebook/sam2.1-hiera-tiny", description="hub id or local folder")
    onnx_parts: list[Literal["image_encoder", "memory_attention", "memory_encoder"]] | None = Field(
        None, description="onnx backend: the graphs run on onnxruntime (the image encoder always); default: all "
                          "three on cuda/tensorrt, the image encoder alone on cpu, where torch is faster for the rest")
    batch_objects: bool | Literal["auto"] = Field(
        "auto", description="run memory attention and the mask decoder once for all tracked objects that share a "
                            "memory layout, not once per object (the same masks); auto: on a GPU, where it pays "
                            "(on a CPU it costs about a tenth more: benchmarks/sam2_objects.py)")

    @model_validator(mode="after")
    def _compiled_parts_run_on_torch(self) -> Sam2Config:
        if self.backend == "onnx" and "image_encoder" in self.compile:
            raise ValueError("segmenter.compile: with segmenter.backend: onnx the image encoder runs on onnxruntime")
        return self


class EdgeTamConfig(_VideoSegmenterBase):
    """EdgeTAM: SAM 2's streaming session with a lighter image encoder."""

    type: Literal["edgetam"] = "edgetam"
    model: str = Field("yonigozlan/EdgeTAM-hf", description="hub id or local folder")


class Sam3Config(_ModelChoice, TorchSettings):
    """SAM 3: every instance of the concepts named in words, found on every frame and tracked with stable ids
    (the pipeline's detector is not run: SAM 3 detects by itself)."""

    type: Literal["sam3"] = "sam3"
    role: ClassVar[str] = "segmenter"
    enabled: ClassVar[bool] = True
    finds_objects: ClassVar[bool] = True
    model: str = Field("facebook/sam3", description="hub id or local folder")
    prompt: str = Field("", description="the concepts to find, separated by full stops: 'person. red car' "
                                        "(viewers can add more)")
    max_objects: int = Field(32, ge=1, description="instances tracked at once")
    mask_threshold: float = Field(0.0, description="mask logit threshold")


class SamConfig(_ModelChoice, TorchSettings):
    """SAM (v1): image-only box-to-mask on keyframes."""

    type: Literal["sam"] = "sam"
    enabled: ClassVar[bool] = True
    finds_objects: ClassVar[bool] = False
    model: str = Field("facebook/sam-vit-base", description="hub id or local folder")
    mask_threshold: float = Field(0.0, description="mask logit threshold")


# -- narrators -----------------------------------------------------------------------------------------------
class _NarrationSettings(Strict):
    """Speaking policy and voice, shared by every narrator type (and unused without one)."""

    verbosity: Literal["brief", "normal", "detailed"] = Field(
        "normal", description="brief: hazards and arrivals; normal: also departures, approaches and summaries; "
                              "detailed: also distances and motion of everything")
    period_s: float = Field(20.0, ge=0, description="a summary at least this often, when it has news (0: never)")
    min_gap_s: float = Field(2.0, ge=0, description="at least this long between utterances (hazards: 1 s)")
    max_per_minute: int = Field(12, ge=1, description="at most this many utterances in any minute (hazards and "
                                                      "answers are not held back)")
    trigger_classes: list[str] | None = Field(None, description="the classes narrated (None: all)")
    hazard_classes: list[str] = Field(default_factory=lambda: list(HAZARDS),
                                      description="named first, and as warnings when near or approaching")
    scene_change: float = Field(0.35, ge=0, le=1, description="histogram distance that counts as a new scene")
    dedup_similarity: float = Field(0.75, ge=0, le=1, description="a caption this similar to the last is not "
                                                                  "repeated")
    objects_in_text: bool = Field(True, description="say the scene model's news and counts with a caption model")
    speech: bool = Field(True, description="server-side speech (espeak-ng) for audio tracks")
    voice: str = Field("en", description="espeak-ng voice")
    speech_rate_wpm: int = Field(165, ge=80, le=450)


class NoNarratorConfig(_NarrationSettings):
    type: Literal["none"] = "none"
    enabled: ClassVar[bool] = False


class ObjectsNarratorConfig(_NarrationSettings):
    """Words from the detector and tracker alone (arrivals, departures, approaching, counts, positions): no model
    to download, real time on a CPU."""

    type: Literal["objects"] = "objects"
    enabled: ClassVar[bool] = True


class _NarratorModel(_NarrationSettings, _ModelChoice, TorchSettings):
    enabled: ClassVar[bool] = True
    max_new_tokens: int = Field(40, ge=1, le=1024)


class Florence2NarratorConfig(_NarratorModel):
    """Florence-2 captions, or OCR to read text aloud (the detector's Florence-2 when it is the same model)."""

    type: Literal["florence2"] = "florence2"
    model: str = Field("florence-community/Florence-2-base", description="hub id or folder")
    task: Literal["<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<OCR>"] = Field(
        "<CAPTION>", description="the caption task (or <OCR> to read text aloud)")


class VlmNarratorConfig(_NarratorModel):
    """Any image-text-to-text model (SmolVLM/Idefics3, PaliGemma 2, ...)."""

    type: Literal["vlm"] = "vlm"
    model: str = Field("HuggingFaceTB/SmolVLM-256M-Instruct", description="hub id or folder")
    prompt: str = Field("Describe what is in front of the camera in one short sentence, for a blind person. "
                        "Mention obstacles and hazards first.", description="the instruction")


class OpenAINarratorConfig(_NarrationSettings):
    """A vision-language model served elsewhere, over the OpenAI chat-completions protocol: Ollama, vLLM,
    llama.cpp's server, Gemini's OpenAI-compatible endpoint (`streamvis.narration.openai_server`)."""

    type: Literal["openai"] = "openai"
    enabled: ClassVar[bool] = True
    base_url: str = Field("http://127.0.0.1:11434/v1", description="the server's OpenAI-compatible root: .../v1 "
                          "for Ollama (this default), vLLM and llama.cpp; Gemini's ends in /v1beta/openai")
    model: str = Field(min_length=1, description="the server's model name, e.g. llava, qwen2.5vl:7b, "
                       "gemini-2.0-flash")
    api_key_env: str | None = Field(None, description="the name of the environment variable that holds the API "
                                    "key (never the key itself); none: no key sent")
    timeout_s: float = Field(15.0, gt=0, le=300, description="a request's deadline; past it the narrator speaks "
                             "the objects alone")
    max_tokens: int = Field(60, ge=1, le=4096)
    temperature: float = Field(0.2, ge=0, le=2)
    image_max_px: int = Field(512, ge=64, le=4096, description="the frame sent is scaled so its longer side is "
                              "at most this")
    jpeg_quality: int = Field(80, ge=10, le=100)
    retry_max_s: float = Field(60.0, gt=0, description="after failures, requests wait 1 s, then twice as long "
                               "each time, up to this")
    prompt: str = Field("Describe what is in front of the camera in one short sentence, for a blind person. "
                        "Mention obstacles and hazards first.", description="the instruction")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL (the server's OpenAI-compatible root), got '{url}'")
        return url

    @field_validator("api_key_env")
    @classmethod
    def _a_variable_name(cls, name: str | None) -> str | None:
        if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError("expected the name of an environment variable (e.g. OPENAI_API_KEY), not a key: keys "
                             "stay out of pipeline files")
        return name


# -- text readers --------------------------------------------------------------------------------------------
TEXT_CLASSES = ["stop sign", "bus", "train", "truck", "car", "book", "laptop", "tv", "tvmonitor", "cell phone",
                "clock", "parking meter", "traffic light", "bottle", "cup", "remote", "keyboard", "suitcase"]


class NoReaderConfig(Strict):
    type: Literal["none"] = "none"
    enabled: ClassVar[bool] = False


class RapidOcrReaderConfig(Strict):
    """Text read with PP-OCR's detection and recognition models (the ones the `rapidocr` wheel carries, on
    onnxruntime): signs, labels, bus numbers, read once and tracked by position (`streamvis.reading`)."""

    type: Literal["rapidocr"] = "rapidocr"
    role: ClassVar[str] = "reader"
    enabled: ClassVar[bool] = True
    every_s: float = Field(1.0, gt=0, description="a look at most this often, in stream time (live: also only when "
                           "the last look is done)")
    full_frame_every_s: float = Field(10.0, gt=0, description="between whole-frame looks, only what changed and "
                                      "objects likely to carry text (text_classes) are read")
    text_classes: list[str] = Field(default_factory=lambda: list(TEXT_CLASSES), description="detected objects "
                                    "worth a look when they appear (signs, buses, books, screens)")
    min_score: float = Field(0.75, ge=0, le=1, description="readings below this recognition score are dropped")
    min_chars: int = Field(2, ge=1, description="readings with fewer letters or digits are dropped")
    repeat_after_s: float = Field(60.0, ge=0, description="the same text is said again only after this long away")
    max_side_px: int = Field(960, ge=160, le=4096, description="the text detector sees an image at most this "
                             "long on its longer side (PP-OCR's limit_side_len; larger reads smaller text, slower)")
    orientation: bool = Field(False, description="also run the 180-degree orientation classifier (upside-down text)")
    threads: int = Field(0, ge=0, le=256, description="onnxruntime intra-op threads (0: onnxruntime's default)")
    providers: list[Provider] = Field(default_factory=lambda: list(READER_PROVIDERS), min_length=1,
                                      description="tried in order (tensorrt is not used for the reader)")
    speak: bool = Field(True, description="the narrator says new text (after hazards and near arrivals)")
    burn_in: bool = Field(False, description="draw the text read, and its box, into the output video")


# -- embedders -----------------------------------------------------------------------------------------------
class NoEmbedderConfig(Strict):
    type: Literal["none"] = "none"
    enabled: ClassVar[bool] = False


class ClipEmbedderConfig(_ModelChoice, TorchSettings):
    """An image-text embedding model through transformers (CLIP, SigLIP or SigLIP 2 by hub id or folder): crops
    along each track and scene keyframes in, vectors a sentence can be compared with (`streamvis.search`)."""

    type: Literal["clip"] = "clip"
    role: ClassVar[str] = "embedder"
    enabled: ClassVar[bool] = True
    model: str = Field("openai/clip-vit-base-patch32",
                       description="hub id or folder of a CLIP, SigLIP or SigLIP 2 model")
    scene_every_s: float = Field(5.0, gt=0, description="a scene keyframe (the whole frame) embedded at most this "
                                 "often, in stream time")
    min_track_s: float = Field(0.5, ge=0, description="tracks followed for less than this are not indexed")
    batch_size: int = Field(16, ge=1, le=256, description="crops embedded in one model call at most")
