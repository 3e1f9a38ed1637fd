"""Pipeline files: parsing of --set, validation errors that name the field, the shipped pipelines."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streamvis.config import PipelineConfig, apply_overrides, load_pipeline, parse_override
from streamvis.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("item", "path", "value"),
    [
        ("detector.confidence=0.5", ["detector", "confidence"], 0.5),
        ("detector.model=/tmp/m.onnx", ["detector", "model"], "/tmp/m.onnx"),
        ("tracker.enabled=false", ["tracker", "enabled"], False),
        ("detector.every_n_frames=3", ["detector", "every_n_frames"], 3),
        ("detector.providers=[cpu]", ["detector", "providers"], ["cpu"]),
        ("name=a=b", ["name"], "a=b"),
        ("description=", ["description"], ""),
        ("detector.class_filter=[person, car]", ["detector", "class_filter"], ["person", "car"]),
    ],
)
def test_parse_override(item: str, path: list[str], value: object) -> None:
    assert parse_override(item) == (path, value)


@pytest.mark.parametrize("item", ["detector.confidence", "=3", ""])
def test_parse_override_rejects(item: str) -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_override(item)


def test_apply_overrides_creates_sections_and_refuses_to_descend_into_values() -> None:
    assert apply_overrides({}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}
    with pytest.raises(ConfigError, match="'name' is a value"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["detector.modle=x"], r"detector\.modle: unknown field \(expected one of: type, model,"),
        (["detectr.model=x"], r"detectr: unknown field \(expected one of: name, description, source, detector"),
        (["detector.confidence=high"], r"detector\.confidence: .*number.*'high'"),
        (["detector.confidence=1.5"], r"detector\.confidence: .*less than or equal to 1"),
        (["detector.providers=[gpu]"], r"detector\.providers\.0: .*'tensorrt', 'cuda' or 'cpu'"),
        (["output.preset=turbo"], r"output\.preset"),
        (["source.open_timeout_s=0"], r"source\.open_timeout_s: .*greater than 0"),
    ],
)
def test_errors_name_the_field(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_pipeline("detect", overrides)


def test_set_overrides_any_field() -> None:
    config = load_pipeline("detect", ["detector.model=/path/to/model.onnx", "tracker.enabled=false",
                                      "output.crf=30"])
    assert config.detector.model == "/path/to/model.onnx"
    assert config.tracker.enabled is False
    assert config.output.crf == 30


def test_detect_yaml_is_the_schema_default() -> None:
    """A pipeline section left out takes the schema defaults: those of detect.yaml, the default pipeline."""
    data = yaml.safe_load((ROOT / "streamvis" / "pipelines" / "detect.yaml").read_text())
    loaded = PipelineConfig.model_validate(data).model_dump(exclude={"description"})
    assert loaded == PipelineConfig().model_dump(exclude={"description"})


@pytest.mark.parametrize("path", sorted((ROOT / "streamvis" / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_pipelines_validate(path: Path) -> None:
    assert isinstance(load_pipeline(path), PipelineConfig)


@pytest.mark.parametrize(
    ("content", "expected"),
    [("- a\n- b\n", "expected a mapping of sections, found list"),
     ("detector: [unclosed\n", "not readable YAML"),
     ("detector:\n  every_n_frames: 0\n", "detector.every_n_frames")],
)
def test_bad_pipeline_files(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")) as info:
        load_pipeline(path)
    assert str(path) in str(info.value)


def test_missing_pipeline_file() -> None:
    with pytest.raises(ConfigError, match=r"pipeline file not found: nowhere/x\.yaml"):
        load_pipeline("nowhere/x.yaml")


@pytest.mark.parametrize(
    ("pipeline", "overrides", "expected"),
    [
        ("detect", ["detector.type=foo"], r"detector\.type: expected one of yolox, florence2 \(got 'foo'\)"),
        ("detect", ["detector.task=<OD>"], r"detector\.task: unknown field .*confidence"),  # a Florence-2 field
        ("segment", ["segmenter.type=edgetam", "segmenter.backend=onnx"], r"segmenter\.backend: unknown field"),
        ("segment", ["detector.precision=int8"], r"detector\.precision: int8 needs detector\.backend: onnx"),
    ],
)
def test_each_model_type_has_its_own_fields(pipeline: str, overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_pipeline(pipeline, overrides)


def test_switching_a_model_type_with_set_leaves_out_the_old_types_fields(caplog) -> None:
    from streamvis.config import VlmNarratorConfig, YoloxConfig

    caplog.set_level("INFO", logger="streamvis")
    config = load_pipeline("segment", ["detector.type=yolox"])
    assert isinstance(config.detector, YoloxConfig) and config.detector.model == "yolox-nano"
    assert "task" in caplog.text and "num_beams" in caplog.text  # the log says what was left out
    narrate = load_pipeline("narrate", ["narrator.type=vlm"])
    assert isinstance(narrate.narrator, VlmNarratorConfig)
    assert narrate.narrator.model == "HuggingFaceTB/SmolVLM-256M-Instruct"  # the type's own default model
    assert narrate.narrator.period_s == 20  # the narration policy is every type's
    assert load_pipeline("detect", ["detector.model=null"]).detector.model == "yolox-nano"
