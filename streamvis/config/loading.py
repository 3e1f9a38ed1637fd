"""Loading a pipeline: a YAML file (a path, or a name looked up in ./pipelines and the built-in pipelines) plus
`--set key=value` overrides, validated into a `PipelineConfig` with errors that name the field."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from streamvis.config.pipeline import PipelineConfig
from streamvis.config.role_types import DEFAULT_TYPES, ROLE_TYPES
from streamvis.errors import ConfigError

log = logging.getLogger(__name__)

BUILTIN_PIPELINES_DIR = Path(__file__).resolve().parent.parent / "pipelines"  # package data
DEFAULT_PIPELINE = "detect"


def builtin_pipelines() -> list[str]:
    return sorted(p.stem for p in BUILTIN_PIPELINES_DIR.glob("*.yaml"))


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
    raise ConfigError(f"unknown pipeline '{name_or_path}': no file pipelines/{name_or_path}.yaml here, and the "
                      f"built-in pipelines are {', '.join(builtin_pipelines())}")


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


def switch_types(data: dict[str, Any], overrides: list[str], origin: str) -> None:
    """`--set detector.type=yolox` on a Florence-2 pipeline: the file's fields that the new type does not have
    (task, num_beams, ...) and its model belong to the type it replaces, so they are dropped, and the log says
    which."""
    for item in overrides:
        path, new_type = parse_override(item)
        if len(path) != 2 or path[0] not in ROLE_TYPES or path[1] != "type":
            continue
        role = path[0]
        section = data.get(role)
        cls = ROLE_TYPES[role].get(str(new_type))
        if not isinstance(section, dict) or cls is None:
            continue
        old_type = section.get("type") or DEFAULT_TYPES[role]
        foreign = [key for key in section if key not in cls.model_fields or key == "model"]
        if old_type == new_type or not foreign:
            continue
        for key in foreign:
            del section[key]
        log.info("%s.type=%s: %s's %s fields left out (%s)", role, new_type, origin, old_type, ", ".join(foreign))


def _section_fields(loc: tuple[int | str, ...]) -> list[str]:
    """The fields a config section may hold (`type` and `model` first), following tags of role unions."""
    model: type[BaseModel] = PipelineConfig
    parts = list(loc)
    if parts and parts[0] in ROLE_TYPES:
        role = str(parts.pop(0))
        tag = str(parts.pop(0)) if parts else DEFAULT_TYPES[role]
        if tag not in ROLE_TYPES[role]:
            return []
        model = ROLE_TYPES[role][tag]
    for part in parts:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    first = [name for name in ("type", "model") if name in model.model_fields]
    return first + [name for name in model.model_fields if name not in first]


def _field_path(loc: tuple[int | str, ...]) -> tuple[str, tuple[int | str, ...]]:
    """`('detector', 'florence2', 'prompt')` -> ('detector.prompt', section loc with the tag kept)."""
    parts = list(loc)
    if len(parts) >= 2 and parts[0] in ROLE_TYPES and parts[1] in ROLE_TYPES[str(parts[0])]:
        return ".".join(str(p) for p in [parts[0], *parts[2:]]), tuple(parts[:2])
    return ".".join(str(p) for p in parts), tuple(parts[:1])


def format_validation_error(error: ValidationError, origin: str) -> str:
    """One line per problem, each naming the field, what was expected and what was found."""
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        field, _ = _field_path(loc)
        if item["type"] == "value_error":  # a model validator's message names its fields
            problems.append(str(item["msg"]).removeprefix("Value error, "))
        elif item["type"] == "extra_forbidden":
            known = ", ".join(_section_fields(loc[:-1]))
            problems.append(f"{field}: unknown field (expected one of: {known})")
        elif item["type"] == "union_tag_invalid":
            role = str(loc[0])
            problems.append(f"{field}.type: expected one of {', '.join(ROLE_TYPES[role])} "
                            f"(got {item['ctx'].get('tag')!r})")
        else:
            problems.append(f"{field}: {item['msg']} (got {item.get('input')!r})")
    return f"{origin}: " + "; ".join(problems)


def load_pipeline(name_or_path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Load and validate a pipeline; errors name the file and the field."""
    path = resolve_pipeline_path(name_or_path)
    origin = f"pipeline {path}"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{origin}: not readable YAML ({str(exc).splitlines()[0]})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, found {type(data).__name__}")
    if overrides:
        switch_types(data, overrides, origin)
        data = apply_overrides(data, overrides)
        origin += " with --set " + " ".join(overrides)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin)) from None
