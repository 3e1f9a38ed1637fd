"""Exporting model parts to ONNX with torch's dynamo exporter, with a manifest that loading checks.

Exported so far: the SAM 2.1 / EdgeTAM-free SAM 2 image encoder (the costliest stage: about 1.6 s of the
frame on a 2-core CPU in torch). The graph's outputs are exactly what `Sam2VideoModel.get_image_features`
returns (projected FPN features, flattened, and their position encodings), so they drop into a streaming
session's feature cache and the rest of the model runs unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from streamvis import __version__
from streamvis.errors import ModelError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SAM2_ENCODER = "sam2_image_encoder"
OPSET = 18


def cache_dir() -> Path:
    base = os.environ.get("STREAMVIS_CACHE_DIR") or Path.home() / ".cache" / "streamvis"
    return Path(base) / "onnx"


def export_folder(model_id: str) -> Path:
    """Where the export of `model_id` lives in the cache (`facebook/sam2.1-hiera-tiny` -> a safe name)."""
    return cache_dir() / re.sub(r"[^A-Za-z0-9._-]+", "--", model_id.strip("/"))


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest(folder: Path, kind: str, model_id: str | None = None) -> dict[str, Any]:
    """The manifest of an export, checked: the part it holds, and (when given) the model it came from."""
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
    if not (folder / part["file"]).is_file():
        raise ModelError(f"{folder / part['file']} is missing: export again")
    return manifest


def sam2_encoder_module(model: Any) -> Any:
    """`get_image_features` as a module with plain tensor outputs (what the exporter needs)."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.model.get_image_features(pixel_values, return_dict=True)
            return (*out.fpn_hidden_states, *out.fpn_position_encoding)

    return Encoder().eval()


def export_sam2_encoder(model: Any, model_id: str, folder: Path) -> Path:
    """Export a loaded `Sam2VideoModel`'s image encoder (fp32) into `folder`, with its manifest."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    size = model.config.image_size
    size = int(size[0] if isinstance(size, (list, tuple)) else size)
    encoder = sam2_encoder_module(model.float().cpu())
    example = torch.zeros(1, 3, size, size)
    with torch.inference_mode():
        levels = len(encoder(example)) // 2
    outputs = [f"vision_feats_{i}" for i in range(levels)] + [f"vision_pos_embeds_{i}" for i in range(levels)]
    target = folder / f"{SAM2_ENCODER}.onnx"
    start = time.perf_counter()
    log.info("exporting the SAM 2 image encoder of %s to ONNX (takes a minute at real size)...", model_id)
    try:
        torch.onnx.export(encoder, (example,), str(target), dynamo=True, opset_version=OPSET,
                          input_names=["pixel_values"], output_names=outputs, verbose=False)
    except Exception as exc:  # the exporter raises many kinds; the user needs the first line
        raise ModelError(f"exporting {model_id} to ONNX failed: {str(exc).splitlines()[0]}") from exc
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.update(model_id=model_id, streamvis=__version__, torch=torch.__version__, opset=OPSET)
    manifest.setdefault("parts", {})[SAM2_ENCODER] = {
        "file": target.name, "precision": "fp32", "image_size": size, "inputs": ["pixel_values"],
        "outputs": outputs}
    _write_manifest(folder, manifest)
    log.info("exported %s in %.1f s", target, time.perf_counter() - start)
    return folder
