"""Pipeline configuration: a pydantic schema (`pipeline`, with one class per model type in `roles`), loaded
from YAML files plus `--set` overrides (`loading`)."""

from __future__ import annotations

from streamvis.config.loading import BUILTIN_PIPELINES_DIR, apply_overrides, load_pipeline, parse_override
from streamvis.config.pipeline import (
    AnnotatorConfig,
    BatchingConfig,
    LatencyConfig,
    MotionConfig,
    OutputConfig,
    PipelineConfig,
    SourceConfig,
    TrackerConfig,
)
from streamvis.config.roles import (
    PROMPTED_TASKS,
    AnyDetectorConfig,
    AnyNarratorConfig,
    AnySegmenterConfig,
    EdgeTamConfig,
    Florence2Config,
    Florence2NarratorConfig,
    NoNarratorConfig,
    NoReaderConfig,
    NoSegmenterConfig,
    ObjectsNarratorConfig,
    OnnxSettings,
    OpenAINarratorConfig,
    Provider,
    RapidOcrReaderConfig,
    Sam2Config,
    Sam3Config,
    SamConfig,
    TorchSettings,
    VlmNarratorConfig,
    YoloxConfig,
)

__all__ = [
    "BUILTIN_PIPELINES_DIR", "PROMPTED_TASKS", "AnnotatorConfig", "AnyDetectorConfig", "AnyNarratorConfig",
    "AnySegmenterConfig", "BatchingConfig", "EdgeTamConfig", "Florence2Config", "Florence2NarratorConfig",
    "LatencyConfig", "MotionConfig", "NoNarratorConfig", "NoReaderConfig", "NoSegmenterConfig",
    "ObjectsNarratorConfig", "OnnxSettings", "OpenAINarratorConfig", "OutputConfig", "PipelineConfig", "Provider",
    "RapidOcrReaderConfig", "Sam2Config", "Sam3Config", "SamConfig", "SourceConfig", "TorchSettings",
    "TrackerConfig", "VlmNarratorConfig", "YoloxConfig", "apply_overrides", "load_pipeline", "parse_override",
]
