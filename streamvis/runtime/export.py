"""Exporting model parts to ONNX with torch's dynamo exporter: where exports live, and the manifest that
loading checks (model id, opset, precision, and per part its file, inputs and outputs).

The models' own graphs live beside them (`segmentation.sam2_onnx`, `detection.florence2_onnx`); lower
precisions are in `runtime.precision`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streamvis import __version__, env
from streamvis.errors import ModelError
from streamvis.runtime.optimize import simplify_transposes
from streamvis.runtime.precision import (
    Int8Range,
    Precision,
    data_file,
    lower_precision,
    reduce_range_for,
    warn_if_int8_saturates,
)
from streamvis.runtime.quiet import quiet_tools

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
OPSET = 18


def cache_dir() -> Path:
    return env.cache_dir() / "onnx"


def export_folder(model_id: str, precision: Precision = "fp32") -> Path:
    """Where the export of `model_id` lives in the cache: `<cache>/onnx/<safe id>/<precision>`."""
    return cache_dir() / re.sub(r"[^A-Za-z0-9._-]+", "--", model_id.strip("/")) / precision


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest(folder: Path, kind: str, model_id: str | None = None,
                  precision: Precision | None = None) -> dict[str, Any]:
    """The manifest of an export, checked: the part it holds, and (when given) the model and precision."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{folder} is not a streamvis ONNX export (no readable {MANIFEST}: {exc})") from None
    part = manifest.get("parts", {}).get(kind)
    if part is None:
        raise ModelError(f"{folder} holds no {kind} (it has: {', '.join(manifest.get('parts', {})) or 'nothing'})")
    if model_id is not None and manifest.get("model_id") != model_id:
        raise ModelError(f"{folder} was exported from {manifest.get('model_id')}, not {model_id}: export again")
    if precision is not None and part.get("precision") != precision:
        flag = f"with --{precision}" if precision != "fp32" else "without --fp16/--int8"
        raise ModelError(f"{folder} holds a {part.get('precision')} {kind}, not {precision}: export again {flag}")
    if not (folder / part["file"]).is_file():
        raise ModelError(f"{folder / part['file']} is missing: export again")
    warn_if_int8_saturates(part, f"{folder.name}/{part['file']}")
    return manifest


def read_parts(folder: Path, model_id: str, parts: Mapping[str, Precision | None]) -> dict[str, Any]:
    """The manifest, checked for every one of `parts` of `model_id`, each in its precision (None: any)."""
    manifest: dict[str, Any] = {}
    for part, precision in parts.items():
        manifest = read_manifest(folder, part, model_id, precision)
    return manifest


def has_parts(folder: Path, model_id: str, parts: Mapping[str, Precision | None]) -> bool:
    """Whether `folder` holds every one of `parts` of `model_id`, each in its precision (else: export again)."""
    try:
        read_parts(folder, model_id, parts)
    except (ModelError, KeyError, TypeError):
        return False
    return True


def record_parts(folder: Path, model_id: str, parts: dict[str, dict[str, Any]]) -> None:
    """Add exported parts to the folder's manifest (kept: the parts exported before)."""
    import torch

    path = folder / MANIFEST
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    manifest.update(model_id=model_id, streamvis=__version__, torch=torch.__version__, opset=OPSET)
    manifest.setdefault("parts", {}).update(parts)
    _write_manifest(folder, manifest)


def export_graph(module: Any, args: tuple[Any, ...], target: Path, model_id: str, input_names: list[str],
                 output_names: list[str], dynamic_shapes: Any = None) -> None:
    """One graph through the dynamo exporter (then exact rewrites: `onnx_optimize`); its many kinds of failure
    become one ModelError line."""
    import torch

    try:
        with quiet_tools():
            torch.onnx.export(module, args, str(target), dynamo=True, opset_version=OPSET, input_names=input_names,
                              output_names=output_names, dynamic_shapes=dynamic_shapes, verbose=False)
            simplify_transposes(target)
    except Exception as exc:  # the exporter raises many kinds; the user needs the first line
        raise ModelError(f"exporting {model_id} ({target.stem}) to ONNX failed: {str(exc).splitlines()[0]}") from exc


# part -> (module, example inputs, input names, output names, dynamic shapes)
Graphs = dict[str, tuple[Any, tuple[Any, ...], list[str], list[str], Any]]


def _copy_fp32_graph(source: Path | None, model_id: str, part: str, target: Path) -> bool:
    """Copy `part`'s graph from the fp32 export in `source` to `target`, if there is one of `model_id`."""
    import shutil

    if source is None or source.resolve() == target.parent.resolve() or not has_parts(source, model_id,
                                                                                       {part: "fp32"}):
        return False
    graph = source / read_manifest(source, part)["parts"][part]["file"]
    shutil.copyfile(graph, target)
    if data_file(graph).is_file():
        shutil.copyfile(data_file(graph), data_file(target))
    log.info("%s: the fp32 graph of %s", part, source)
    return True


def export_parts(folder: Path, model_id: str, graphs: Graphs, precisions: dict[str, Precision],
                 extra: dict[str, Any], label: str = "", int8_range: Int8Range = "auto",
                 fp32_from: Path | None = None) -> Path:
    """Export each graph, lower it to its precision and record it in the manifest (with `extra` fields), with
    progress: a bar on a terminal, a log line per graph otherwise. Where `fp32_from` holds an fp32 export of
    the same model (the cache's, when a lower precision is asked), its graphs are lowered instead of exported
    again."""
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    folder.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    progress = Progress(TextColumn("[bold]exporting {task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=True,
                        disable=not sys.stderr.isatty())
    name = f"{label} {model_id}".strip()
    with progress:
        task = progress.add_task(name, total=len(graphs))
        for number, (part, (module, args, input_names, output_names, dynamic)) in enumerate(graphs.items(), 1):
            progress.update(task, description=f"{name}: {part}")
            target = folder / f"{part}.onnx"
            if not _copy_fp32_graph(fp32_from, model_id, part, target):
                log.info("exporting %s part %d/%d: %s...", name, number, len(graphs), part)
                with torch.inference_mode():
                    export_graph(module, args, target, model_id, input_names, output_names, dynamic)
            reduce_range = precisions[part] == "int8" and reduce_range_for(int8_range)
            record_parts(folder, model_id, {part: {
                "file": lower_precision(folder, target.name, precisions[part], reduce_range),
                "precision": precisions[part], **({"int8_reduce_range": reduce_range} if precisions[part] == "int8"
                                                  else {}),
                **extra, "inputs": input_names, "outputs": output_names}})
            progress.advance(task)
    log.info("exported %s to %s in %.1f s", name, folder, time.perf_counter() - began)
    return folder
