"""mkdocs hook: the references that must not drift from the code are written from it at every build.

- `reference/pipeline-fields.md`: every section and model type of a pipeline file, each field with its type,
  default and description, from the pydantic schema (`streamvis.config`);
- `reference/cli.md`: every command's help, from the typer app (`streamvis.cli`).

Both files are generated (git ignores them); `mkdocs build --strict` fails on a link to a page that is missing.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent


def _type_name(annotation: Any) -> str:
    text = str(annotation) if not isinstance(annotation, type) else annotation.__name__
    for noise in ("typing.", "Annotated[", "streamvis.config.roles.", "streamvis.config.role_types.",
                  "streamvis.config.pipeline.", "<class '", "'>"):
        text = text.replace(noise, "")
    return text.replace("|", "or").replace("Literal", "one of")


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return f"`{value!r}`" if not hasattr(value, "model_fields") else "(its section's defaults)"
    if field.is_required():
        return "required"
    return f"`{field.default!r}`"


def _table(model: type[Any]) -> list[str]:
    rows = ["| field | type | default | what it does |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name == "type":
            continue
        description = (field.description or "").replace("|", "/").replace("\n", " ")
        rows.append(f"| `{name}` | {_type_name(field.annotation).replace('|', '/')} | {_default(field)} | "
                    f"{description} |")
    return rows


def pipeline_reference() -> str:
    from streamvis.config import PipelineConfig
    from streamvis.config.role_types import DEFAULT_TYPES, ROLE_TYPES

    out = ["# Pipeline-file reference", "",
           "Generated from the schema (`streamvis.config`) at every docs build, so it says what the code accepts. "
           "A pipeline file is YAML with these sections; `--set section.field=value` overrides any field, and "
           "`--set detector.type=...` (or `segmenter.type`, `narrator.type`) switches a role's model type.", ""]
    for section, field in PipelineConfig.model_fields.items():
        if section in ("name", "description"):
            continue
        out += [f"## `{section}`", ""]
        if section in ROLE_TYPES:
            out += [f"`{section}.type`: one of {', '.join(f'`{t}`' for t in ROLE_TYPES[section])} "
                    f"(default `{DEFAULT_TYPES[section]}`). Each type has its own fields:", ""]
            for type_name, model in ROLE_TYPES[section].items():
                doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
                out += [f"### `{section}.type: {type_name}`", "", doc, ""]
                out += _table(model) if len(model.model_fields) > 1 else ["(no fields)"]
                out.append("")
        else:
            model = typing.get_args(field.annotation)[0] if typing.get_args(field.annotation) else field.annotation
            doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
            out += [doc, "", *_table(model), ""]
    return "\n".join(out) + "\n"


def cli_reference() -> str:
    import typer.main

    from streamvis.cli import app

    group: Any = typer.main.get_command(app)
    out = ["# CLI reference", "", "Generated from the `streamvis` command (`streamvis.cli`) at every docs build. "
           "Exit codes: 0 done, 1 an input or run failed, 2 nothing could start (usage, pipeline file, a missing "
           "model or extra), 130 interrupted.", ""]
    for name, command in group.commands.items():
        out += [f"## `streamvis {name}`", "", (command.help or "").strip(), "",
                "| argument or option | default | what it does |", "|---|---|---|"]
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            names = " / ".join(f"`{o}`" for o in [*param.opts, *getattr(param, "secondary_opts", [])])
            default = param.default
            shown = "" if default in (None, (), []) or param.required else f"`{default}`"
            if param.required:
                shown = "required"
            text = (getattr(param, "help", "") or "").replace("|", "/").replace("\n", " ")
            out.append(f"| {names} | {shown} | {text} |")
        out.append("")
    return "\n".join(out) + "\n"


def on_pre_build(config: Any) -> None:
    reference = DOCS / "reference"
    reference.mkdir(exist_ok=True)
    (reference / "pipeline-fields.md").write_text(pipeline_reference())
    (reference / "cli.md").write_text(cli_reference())
