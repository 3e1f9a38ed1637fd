"""Graph rewrites: exact ones applied to every exported graph, and the fused variant CPU and CUDA sessions use.

`simplify_transposes`: a Transpose whose input shape is known is rewritten to the lowest-rank transpose that
moves the same memory: axes of size 1 are dropped and axes that stay neighbours are merged, between two
Reshapes. onnxruntime's CPU Transpose is fast for 2-D and 3-D permutations and slow on the 5-D ones the
exporter writes for attention heads: in Florence-2's DaViT vision tower, (1, 2304, 1, 16, 32) -> heads-first
transposes took 31% of the graph's time. The results are bit-identical (only data movement changes).

`fused_variant`: onnxruntime's own Gelu/LayerNorm fusions, kept in a separate file because TensorRT cannot
run the contrib operators they produce (SAM 2.1 encoder on 2 CPUs: 1540 -> 1450 ms fp32).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from pathlib import Path
from typing import Any

from streamvis.errors import ModelError
from streamvis.runtime.quiet import quiet_tools

log = logging.getLogger(__name__)


def reduced_transpose(shape: list[int], perm: list[int]) -> tuple[list[int], list[int]] | None:
    """The (input shape, perm) of the lowest-rank transpose equal to `perm` on `shape`, or None when the
    transpose cannot be reduced."""
    kept = [axis for axis in perm if shape[axis] != 1]
    groups: list[list[int]] = []  # runs of input axes that stay adjacent and in order in the output
    for axis in kept:
        if groups and _next_kept(groups[-1][-1], shape) == axis:
            groups[-1].append(axis)
        else:
            groups.append([axis])
    if len(groups) == len(perm):
        return None
    by_input = sorted(groups, key=lambda group: group[0])
    reduced_shape = [math.prod(shape[axis] for axis in group) for group in by_input]
    reduced_perm = [by_input.index(group) for group in groups]
    return reduced_shape, reduced_perm


def _next_kept(axis: int, shape: list[int]) -> int | None:
    """The next input axis after `axis` with a size other than 1."""
    for candidate in range(axis + 1, len(shape)):
        if shape[candidate] != 1:
            return candidate
    return None


def _static_shapes(model: Any) -> dict[str, list[int]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    graph = inferred.graph
    for info in [*graph.value_info, *graph.input, *graph.output]:
        dims = info.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = [d.dim_value for d in dims]
    return shapes


def simplify_transposes(path: Path) -> int:
    """Rewrite reducible Transposes of the graph at `path` in place; returns how many were rewritten."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    shapes = _static_shapes(model)
    nodes, rewritten = [], 0
    for node in model.graph.node:
        shape = shapes.get(node.input[0]) if node.op_type == "Transpose" else None
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        reduced = reduced_transpose(shape, perm) if shape and perm else None
        if reduced is None:
            nodes.append(node)
            continue
        assert shape is not None and perm is not None
        reduced_shape, reduced_perm = reduced
        base = f"{node.name or node.output[0]}_reduced"
        out_shape = [shape[axis] for axis in perm]
        model.graph.initializer.extend([numpy_helper.from_array(np.array(reduced_shape, np.int64), f"{base}_in"),
                                        numpy_helper.from_array(np.array(out_shape, np.int64), f"{base}_out")])
        nodes.append(helper.make_node("Reshape", [node.input[0], f"{base}_in"], [f"{base}_a"], name=f"{base}_a"))
        if reduced_perm == sorted(reduced_perm):  # only size-1 axes moved: a reshape is enough
            nodes.append(helper.make_node("Reshape", [f"{base}_a", f"{base}_out"], list(node.output), name=base))
        else:
            nodes.append(helper.make_node("Transpose", [f"{base}_a"], [f"{base}_t"], name=f"{base}_t",
                                          perm=reduced_perm))
            nodes.append(helper.make_node("Reshape", [f"{base}_t", f"{base}_out"], list(node.output), name=base))
        rewritten += 1
    if rewritten:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        onnx.save(model, str(path))  # the weights stay in the external data file beside it
        log.debug("%s: %d transposes reduced", path.name, rewritten)
    return rewritten


def fused_variant(path: Path) -> Path:
    """`path` with onnxruntime's operator fusions (Gelu, LayerNormalization and their bias/skip forms, from
    `onnxruntime.transformers`), made once beside it as `<name>.fused.onnx`. The fused operators are
    onnxruntime contrib ops that the CPU and CUDA providers run and TensorRT does not, so sessions on TensorRT
    keep the plain graph. Attention is not fused (onnxruntime's CPU MultiHeadAttention was slower than the
    plain graph on SAM 2.1's memory attention). Parity with the plain graph is within 1e-5."""
    import os

    import onnx

    target = path.with_name(f"{path.stem}.fused.onnx")
    if target.is_file() and target.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        return target  # made from this very graph (an export made later replaces it)
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("sam2")
    options.enable_attention = False
    partial = path.with_name(f"{path.stem}.fusing-{os.getpid()}.onnx")
    try:  # the fusion passes draw tqdm bars on stderr: kept off it
        with quiet_tools(), contextlib.redirect_stderr(io.StringIO()):
            model = optimize_model(str(path), model_type="sam2", optimization_options=options, opt_level=0)
            model.save_model_to_file(str(partial), use_external_data_format=True)
    except Exception as exc:  # onnx and the optimizer raise many kinds for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"cannot load {path.name} from {path}: {first}") from exc
    data = partial.with_name(partial.name + ".data")
    # the graph names its weights file: keep that name, then move both into place (another process may race)
    graph = onnx.load(str(partial), load_external_data=False)
    for tensor in graph.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = f"{target.name}.data"
    onnx.save(graph, str(partial))
    if data.is_file():
        data.replace(target.with_name(f"{target.name}.data"))
    partial.replace(target)
    log.debug("%s: fused operators into %s", path.name, target.name)
    return target
