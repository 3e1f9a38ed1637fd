"""The fast torch path: `torch.compile` of a model's parts, CUDA graphs, and Florence-2's compiled decode step over
a static KV cache. Each is a pipeline setting (`compile`, `cuda_graphs`), off by default: compiling takes tens of
seconds per part on the first frames, which only pays on a GPU or a long run.

Compiled parts give what eager gives within the tolerances `tests/test_fast_path.py` states and checks on the CPU
(inductor runs there too); CUDA graphs (`mode="reduce-overhead"`) exist only on CUDA, where
`benchmarks/gpu/check.py` measures them.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

#: part name -> the attribute of the model that holds it, and whether its input shapes change from call to call
SAM2_PARTS: dict[str, tuple[str, bool]] = {
    "image_encoder": ("vision_encoder", False),  # fixed (batch, 3, S, S); the batch changes with cross-stream batches
    "memory_attention": ("memory_attention", True),  # memory tokens grow with the memory window and pointers
    "mask_decoder": ("mask_decoder", False),
    "memory_encoder": ("memory_encoder", False),
}
FLORENCE_PARTS: dict[str, tuple[str, bool]] = {
    "vision_encoder": ("model.vision_tower", False),
}


def compile_mode(device: str, cuda_graphs: bool) -> str:
    """`reduce-overhead` (CUDA graphs) on CUDA when asked for; `default` elsewhere."""
    if cuda_graphs and device != "cuda":
        log.warning("cuda_graphs: CUDA graphs need a CUDA device (this model is on %s); compiling without them",
                    device)
    return "reduce-overhead" if cuda_graphs and device == "cuda" else "default"


def _cloned(value: Any) -> Any:
    """Copies of the tensors in a part's output (tuples, lists, transformers `ModelOutput`s kept as they are)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_cloned(v) for v in value)
    if isinstance(value, list):
        return [_cloned(v) for v in value]
    if isinstance(value, dict):  # ModelOutput is an ordered dict of its fields
        return type(value)(**{k: _cloned(v) for k, v in value.items()})
    return value


def compile_parts(model: Any, parts: list[str], table: dict[str, tuple[str, bool]], device: str,
                  cuda_graphs: bool, label: str) -> list[str]:
    """Compile the named parts of `model` in place (their `forward`: weights, hooks and attributes unchanged).
    Returns the parts compiled; compilation itself happens on each part's first call.

    With CUDA graphs a part's outputs live in the graph's memory and the next replay overwrites them, while the
    SAM 2 session keeps memory features and masks for later frames: so each output is copied out of the graph.
    """
    if not parts:
        return []
    import torch

    mode = compile_mode(device, cuda_graphs)
    done = []
    for part in parts:
        path, dynamic = table[part]
        module = model
        for attribute in path.split("."):
            module = getattr(module, attribute, None)
        if module is None:
            log.warning("%s: has no %s to compile; left eager", label, part)
            continue
        compiled = torch.compile(module.forward, mode=mode, dynamic=True if dynamic else None)
        if mode == "reduce-overhead":
            def forward(*args: Any, _compiled: Any = compiled, **kwargs: Any) -> Any:
                return _cloned(_compiled(*args, **kwargs))

            module.forward = forward
        else:
            module.forward = compiled
        module.streamvis_compiled = mode
        done.append(part)
    log.info("%s: compiling %s (mode %s; the first frames take longer)", label, ", ".join(done), mode)
    return done


def static_decoding(model: Any, device: str, cuda_graphs: bool) -> None:
    """Florence-2's decode step compiled over a static KV cache: `generate` then runs the prefill eagerly and every
    later token through one compiled graph of fixed shapes (transformers' automatic compilation)."""
    from transformers import CompileConfig

    config = CompileConfig(mode=compile_mode(device, cuda_graphs), dynamic=False)
    # transformers compiles automatically on GPUs only; this flag is its documented way to do it on any device
    config._compile_all_devices = True  # type: ignore[assignment]
    model.generation_config.cache_implementation = "static"
    model.generation_config.compile_config = config
